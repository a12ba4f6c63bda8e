"""The configuration arguments every command that takes a config shares: ``--config FILE`` and the
repeatable ``--set KEY=VALUE``, and their resolution into a ``config.ResihmrConfig``.

Used by ``cli`` (``demo``, ``fit``, ``print-config``) and by ``eval.eval_cli`` and
``eval.sweep_cli``. Building the parser imports nothing heavy (``resihmr-dr --help`` stays fast,
``tests/test_cli_startup.py``): the configuration module, which loads the fit settings and with
them torch, is imported only when the arguments are resolved.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resihmr_dr.config import ResihmrConfig

__all__ = ["CONFIG_HELP", "add_config_args", "config_argv", "config_from_args"]

CONFIG_HELP = "YAML configuration (default: the packaged configs/default.yaml; `resihmr-dr print-config` prints it)"
SET_HELP = (
    "override one config key, e.g. --set fit.refine.iterations=80 (repeatable; applied after --config, "
    "in order; the value is read as YAML; a bad key or value is exit code 2)"
)


def add_config_args(parser: argparse.ArgumentParser, *, config_help: str = CONFIG_HELP) -> None:
    """Add ``--config`` (``args.config``: a Path or None) and ``--set`` (``args.overrides``: the list
    of ``KEY=VALUE`` strings, in order) to ``parser``; ``config_help`` is ``--config``'s help text."""
    parser.add_argument("--config", type=Path, default=None, help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)


def config_from_args(args: argparse.Namespace) -> ResihmrConfig:
    """The configuration of ``args.config`` (the packaged default when None) with every ``--set``
    of ``args.overrides`` applied in order.

    Raises ``config.ConfigError`` naming the file and key, or the ``--set`` item and key, that is
    wrong; every command turns it into ``error: ...`` on stderr and exit code 2.
    """
    from resihmr_dr.config import apply_overrides, load_config

    return apply_overrides(load_config(args.config), args.overrides)


def config_argv(args: argparse.Namespace) -> list[str]:
    """The ``--config`` / ``--set`` words that reproduce ``args``' configuration (for a command line
    recorded with a result); ``[]`` for the defaults."""
    words = [] if args.config is None else ["--config", str(args.config)]
    for item in args.overrides:
        words += ["--set", item]
    return words
