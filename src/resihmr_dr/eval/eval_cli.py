"""The ``resihmr-dr eval`` subcommand: score fitted people against the synthetic ground truth,
next to the baselines (``resihmr_dr.eval.benchmark``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from resihmr_dr.cli_config import add_config_args, config_argv, config_from_args

__all__ = ["add_eval_parser", "run_eval_command"]

# resihmr_dr.eval.baselines.METHODS, for the parser's default and help text: that module imports
# torch and the fit stack, which ``--help`` must not load (tests/test_cli_startup.py checks that
# they agree).
METHODS: tuple[str, ...] = ("intact", "joint", "resihmr", "ours")


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``eval`` on an ``argparse`` subparsers object; returns the new parser."""
    parser = subparsers.add_parser(
        "eval",
        help="score a `fit` output against the synthetic benchmark's ground truth, with the baselines",
        description=(
            "Read every person's folder written by `resihmr-dr fit` (ours), build the baselines from the "
            "same intact-body fit (intact: the hallucinated limb; joint: the limb collapsed at the nearest "
            "joint, AJAHR-style; resihmr: RAFO + convex cap), and score all of them against the ground "
            "truth of a `resihmr-dr synth` folder: 2D keypoint error and mask IoU (the paper's Table 1), "
            "endpoint, residual length, stump volume and stump surface errors, and the Procrustes-aligned "
            "body vertex error. Writes eval.csv, eval.md and eval_by_{type,shape,noise}.png. Exit code 1 "
            "if a person or method could not be scored, 2 on bad input."
        ),
    )
    parser.add_argument("--pred", required=True, type=Path, help="the --out folder of `resihmr-dr fit`")
    parser.add_argument(
        "--gt", required=True, type=Path, help="the folder written by `resihmr-dr synth` (annotations.json, gt/)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: PRED_eval next to --pred)")
    add_config_args(
        parser,
        config_help="the config YAML the fit used (default: the packaged configs/default.yaml); the refitted "
        "baselines and the sweep use it, with the --set overrides the fit had",
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated methods to score (default: {','.join(METHODS)})"
    )
    parser.add_argument(
        "--sweep",
        type=Path,
        default=None,
        help="also refit ours once per value of a sweep YAML, e.g. configs/ablations/mask_weight.yaml",
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N people")
    parser.add_argument(
        "--ann-ids",
        type=_ann_ids,
        default=None,
        help="score only these comma-separated annotation ids (e.g. view 0 of every multi-view person)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_eval_command)
    return parser


def run_eval_command(args: argparse.Namespace) -> int:
    """Handler of ``resihmr-dr eval``; returns the exit status (1 if anything failed, 2 on bad input)."""
    from resihmr_dr.config import ConfigError
    from resihmr_dr.data.errors import DataError
    from resihmr_dr.eval.benchmark import evaluate, write_outputs
    from resihmr_dr.eval.sweep import expand_sweep, load_sweep

    out = args.out or args.pred.with_name(f"{args.pred.name}_eval")
    try:
        config = config_from_args(args)
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        sweep = None
        if args.sweep is not None:
            sweep = load_sweep(args.sweep)
            expand_sweep(sweep, config)  # unknown keys and bad values fail before any fitting
        result = evaluate(
            pred_dir=args.pred,
            gt_dir=args.gt,
            config=config,
            methods=methods,
            sweep=sweep,
            limit=args.limit,
            ann_ids=args.ann_ids,
            progress=not args.no_progress,
            partial_csv=out / "eval.csv",
        )
    except (ConfigError, DataError, FileNotFoundError, ValueError) as err:  # DataError: GroundTruthError too
        print(f"resihmr-dr eval: error: {err}", file=sys.stderr)
        return 2
    paths = write_outputs(out, result, command=_command_line(args))
    print(paths["md"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({result.seconds:.0f} s)")
    for failure in result.failures:
        print(f"FAILED {failure['method']}, annotation {failure['ann_id']}: {failure['reason']}", file=sys.stderr)
    return 1 if result.failures else 0


def _ann_ids(text: str) -> tuple[int, ...]:
    """'1,3,5' -> (1, 3, 5)."""
    try:
        ids = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated annotation ids, got {text!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError("expected at least one annotation id")
    return ids


def _command_line(args: argparse.Namespace) -> str:
    """The ``resihmr-dr eval`` command that reproduces this run (for the table's caption)."""
    parts = ["resihmr-dr", "eval", "--pred", str(args.pred), "--gt", str(args.gt), *config_argv(args)]
    for flag, value in (("--sweep", args.sweep), ("--limit", args.limit)):
        if value is not None:
            parts += [flag, str(value)]
    if args.ann_ids is not None:
        parts += ["--ann-ids", ",".join(str(i) for i in args.ann_ids)]
    from resihmr_dr.eval.baselines import METHODS

    if args.methods != ",".join(METHODS):
        parts += ["--methods", args.methods]
    return " ".join(shlex.quote(p) for p in parts)
