"""The ``resihmr-dr synth`` subcommand: write the synthetic amputee benchmark.

The lead wires it into ``cli.py`` with ``add_synth_parser(sub)``; the handler is set as the
parser's ``func`` (``args.func(args)`` returns the exit status).
"""

from __future__ import annotations

import argparse
import math

__all__ = ["add_synth_parser", "run_synth"]

# resihmr_dr.eval.synth.RESIDUAL_TYPES, for the help text: that package imports torch and the
# renderer, which ``--help`` must not load (tests/test_cli_startup.py checks that they agree).
RESIDUAL_TYPES: tuple[str, ...] = tuple(
    f"{side}_{status}"
    for status in ("transhumeral", "transradial", "transfemoral", "transtibial")
    for side in ("left", "right")
)
# resihmr_dr.eval.synth.views.VIEW_POSES, for the same reason.
VIEW_POSES: tuple[str, ...] = ("same", "vary")


def add_synth_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``synth`` on an ``argparse`` subparsers object; returns the new parser."""
    parser = subparsers.add_parser(
        "synth",
        help="generate the synthetic amputee benchmark (Anny renders with true stumps)",
        description=(
            "Write LDpose-format annotations.json, images/, masks/ and ground truth gt/ "
            "(mesh.ply, gt.json per person, gt/index.json). Deterministic for a seed."
        ),
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--count", type=int, default=40, help="number of people (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--types",
        default="all",
        help="comma-separated residual types: 'all', a status (transtibial = both sides) or "
        f"side_status names ({', '.join(RESIDUAL_TYPES)})",
    )
    parser.add_argument(
        "--noise-px",
        type=_noise_levels,
        default=(0.0,),
        help="keypoint noise std in pixels (default 0); several levels as a list, e.g. 0,2,5: "
        "each round of residual types gets the next level",
    )
    parser.add_argument(
        "--drop-prob",
        type=float,
        default=0.0,
        help="chance of dropping each face / intact-limb keypoint (v=0; default 0)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=512,
        help="square image side in pixels (default 512)",
    )
    parser.add_argument(
        "--image-noise",
        type=float,
        default=0.0,
        help="image intensity noise std in [0, 1] units",
    )
    parser.add_argument(
        "--views",
        type=int,
        default=1,
        help="images per person (default 1): one body seen by cameras turned --view-yaw-step apart about its "
        "vertical axis; the annotations share a person_id and the cameras carry extrinsics R, t",
    )
    parser.add_argument(
        "--view-yaw-step",
        type=float,
        default=90.0,
        metavar="DEG",
        help="degrees between neighbouring views (default 90)",
    )
    parser.add_argument(
        "--view-pose",
        choices=VIEW_POSES,
        default="same",
        help="same: one pose in every view (simultaneous cameras; default); vary: the pose perturbed per view "
        "(shape and stumps the same)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_synth)
    return parser


def _noise_levels(text: str) -> tuple[float, ...]:
    """'0,2,5' -> (0.0, 2.0, 5.0)."""
    try:
        levels = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or a comma-separated list, got {text!r}") from None
    if not all(math.isfinite(v) for v in levels):
        raise argparse.ArgumentTypeError(f"noise levels must be finite, got {text!r}")
    return levels


def run_synth(args: argparse.Namespace) -> int:
    """Handler of ``synth``: validates the options and writes the dataset; returns 0."""
    if args.count < 1:
        raise SystemExit("synth: --count must be >= 1")
    if min(args.noise_px) < 0 or args.image_noise < 0:
        raise SystemExit("synth: --noise-px and --image-noise must be >= 0")
    if not 0.0 <= args.drop_prob <= 1.0:
        raise SystemExit("synth: --drop-prob must lie in [0, 1]")
    if args.image_size < 64:
        raise SystemExit("synth: --image-size must be >= 64")
    if args.views < 1:
        raise SystemExit("synth: --views must be >= 1")
    # Imports torch and the renderer: only once the options are checked.
    from resihmr_dr.eval.synth import generate_dataset, parse_types, view_yaws

    try:
        types = parse_types(args.types)
        view_yaws(args.views, args.view_yaw_step)
    except ValueError as err:
        raise SystemExit(f"synth: {err}") from None
    path = generate_dataset(
        args.out,
        count=args.count,
        seed=args.seed,
        types=types,
        noise_px=args.noise_px,
        drop_prob=args.drop_prob,
        image_size=args.image_size,
        image_noise=args.image_noise,
        views=args.views,
        view_yaw_step_deg=args.view_yaw_step,
        view_pose=args.view_pose,
        progress=not args.no_progress,
    )
    views = f" ({args.views} views each)" if args.views > 1 else ""
    print(f"wrote {args.count} people{views} to {path}")
    return 0
