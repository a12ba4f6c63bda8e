"""The ``resihmr-dr sweep`` subcommand: run an ablation sweep over a synthetic set with ground truth.

The lead wires it into ``cli.py`` with ``add_sweep_parser(sub)``; the handler is set as the
parser's ``func`` (``args.func(args)`` returns the exit status).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resihmr_dr.cli_config import add_config_args, config_from_args

__all__ = ["add_sweep_parser", "run_sweep_command"]


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``sweep`` on an ``argparse`` subparsers object; returns the new parser."""
    parser = subparsers.add_parser(
        "sweep",
        help="run an ablation sweep (e.g. the mask-loss weight) on a synthetic set with ground truth",
        description=(
            "Fit every person of a `resihmr-dr synth` folder once per sweep value and write "
            "sweep.csv (per person), sweep.md (mean per value) and sweep.png (metrics against the value)."
        ),
    )
    parser.add_argument("--data", required=True, help="folder written by `resihmr-dr synth` (annotations.json, gt/)")
    parser.add_argument("--sweep", required=True, help="sweep YAML, e.g. configs/ablations/mask_weight.yaml")
    parser.add_argument("--out", required=True, help="output folder")
    add_config_args(
        parser,
        config_help="base config YAML (default: the packaged configs/default.yaml); the --set overrides "
        "apply to it, and each sweep value on top",
    )
    parser.add_argument("--limit", type=int, default=None, help="fit only the first N people")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_sweep_command)
    return parser


def run_sweep_command(args: argparse.Namespace) -> int:
    """Handler of ``resihmr-dr sweep``; returns the exit status (2 on bad input)."""
    from resihmr_dr.config import ConfigError
    from resihmr_dr.eval.sweep import expand_sweep, load_sweep, run_sweep, write_outputs

    try:
        base = config_from_args(args)
        spec = load_sweep(args.sweep)
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        expand_sweep(spec, base)  # unknown keys and bad values fail before anything is written
        out = Path(args.out)
        if not (Path(args.data) / "gt" / "index.json").is_file():
            raise FileNotFoundError(
                f"{args.data}: no gt/index.json; --data must be a folder written by `resihmr-dr synth`"
            )
        out.mkdir(parents=True, exist_ok=True)
        result = run_sweep(
            data_dir=args.data,
            spec=spec,
            base=base,
            limit=args.limit,
            progress=not args.no_progress,
            partial_csv=out / "sweep.csv",
        )
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"resihmr-dr sweep: error: {err}", file=sys.stderr)
        return 2
    paths = write_outputs(args.out, result)
    print(paths["md"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({result.seconds:.0f} s)")
    return 0
