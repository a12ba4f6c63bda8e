"""Command-line interface: ``resihmr-dr <command> --help`` explains each command."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from resihmr_dr import __version__

DESCRIPTION = """\
resihmr-dr recovers an anatomically faithful 3D body mesh of a person with limb loss from a
single image: an intact-body fit, RAFO residual-limb endpoints (ResiHMR), a watertight stump
cap, and a differentiable soft-silhouette refinement against the person mask.

Inputs are LDpose-LimbLoss annotations: COCO-style JSON with 25 keypoints per person (the 17
COCO keypoints plus 8 residual-limb endpoints) and a person mask.
"""


def _add_body_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML configuration (see configs/default.yaml); flags below override it")
    parser.add_argument("--body", choices=("anny", "smplx"), default=None,
                        help="body model: 'anny' (default, ships with the package, offline) or 'smplx' "
                             "(your own SMPL-X files, see --smplx-dir); config key body.model")  # fmt: skip
    parser.add_argument("--smplx-dir", type=Path, default=None,
                        help="folder with SMPLX_NEUTRAL.npz (or smplx/SMPLX_NEUTRAL.npz); "
                             "config key body.smplx_dir; default: $RESIHMR_SMPLX_DIR")  # fmt: skip
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu); config key body.device")


def _body_from_args(args: argparse.Namespace):
    """Build the body model from --config with the command-line flags taking precedence."""
    from resihmr_dr.body.factory import build_body_model
    from resihmr_dr.config import load_config

    cfg = load_config(args.config).body
    return build_body_model(
        args.body or cfg.model,
        smplx_dir=args.smplx_dir or cfg.smplx_dir,
        device=args.device or cfg.device,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resihmr-dr", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="run the pipeline on the built-in sample person (left transtibial residual limb)",
        description="Load the built-in sample (an image, its person mask and LDpose keypoints of a "
        "person with a left transtibial residual limb), validate it, build the body model and write "
        "an overview to --out. Runs offline with the embedded Anny body model.",
    )
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    _add_body_args(demo)
    demo.set_defaults(func=_cmd_demo)

    validate = sub.add_parser(
        "validate",
        help="check an LDpose annotation file and list each person's limb status",
        description="Load an LDpose-LimbLoss annotation file, check every image and person (keypoint "
        "count, coordinates, contradictory residual endpoints, masks and their sizes, intrinsics), and "
        "print each person's limb statuses. Exit code 1 if any person is invalid.",
    )
    validate.add_argument("--annotations", type=Path, required=True, help="LDpose COCO-style JSON file")
    validate.add_argument("--images", type=Path, default=None, help="image folder (default: the JSON's folder)")
    validate.set_defaults(func=_cmd_validate)
    return parser


def _status_line(person) -> str:
    residual = [f"{limb.name}={status.value}" for limb, status in person.residual_limbs]
    return f"annotation {person.ann_id} (image {person.image_id}): " + (", ".join(residual) or "no residual limb")


def _cmd_validate(args: argparse.Namespace) -> int:
    from resihmr_dr.data.annotations import load_annotations

    dataset = load_annotations(args.annotations, images_dir=args.images, on_error="collect")
    for person in dataset:
        dataset.mask(person)  # decode to check the size against the image
        print("ok   " + _status_line(person))
    for err in dataset.errors:
        print(f"BAD  {err}", file=sys.stderr)
    print(f"{len(dataset)} valid, {len(dataset.errors)} invalid")
    return 1 if dataset.errors else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import trimesh

    from resihmr_dr.atomic import atomic_directory
    from resihmr_dr.body.base import SEGMENT_NAMES
    from resihmr_dr.data.annotations import load_annotations
    from resihmr_dr.data.sample import sample_annotations_path
    from resihmr_dr.render.figures import save_annotation_overview

    dataset = load_annotations(sample_annotations_path())
    print(f"sample: {dataset.path}")
    t0 = time.perf_counter()
    body = _body_from_args(args)
    print(f"body model: {body.name} ({body.num_verts} vertices, {body.faces.shape[0]} faces) "
          f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    summary = {"body_model": body.name, "people": []}
    with atomic_directory(args.out) as tmp:
        for person in dataset:
            image = dataset.image_of(person)
            print(_status_line(person))
            save_annotation_overview(
                tmp / f"person_{person.ann_id}_input.png",
                image_rgb=dataset.load_image(image),
                keypoints_px=person.keypoints_px,
                mask=dataset.mask(person),
                title=_status_line(person),
            )
            summary["people"].append({
                "ann_id": person.ann_id,
                "image": image.file_name,
                "limb_status": {name: status.value for name, status in person.limb_status.items()},
            })  # fmt: skip
        # The body model in the T-pose, coloured by limb segment (the labels the cut relies on).
        params = body.default_params(1)
        tpose = body.tpose(params)
        palette = (_segment_palette(len(SEGMENT_NAMES)) * 255).astype("uint8")
        mesh = trimesh.Trimesh(
            vertices=tpose.verts[0].detach().cpu().numpy(),
            faces=body.faces.cpu().numpy(),
            vertex_colors=palette[body.vertex_segment.cpu().numpy()],
            process=False,
        )
        mesh.export(tmp / "body_tpose_segments.ply")
        summary["fit"] = "not run: the fitting pipeline is not implemented yet"
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/ (input overview, body_tpose_segments.ply, summary.json)")
    print("note: fitting is not implemented yet; this demo loads the sample and builds the body model.")
    return 0


def _segment_palette(n: int):
    import matplotlib

    colors = matplotlib.colormaps["tab20"](range(n))[:, :3]
    colors[0] = (0.75, 0.75, 0.75)  # "other": grey
    return colors


def main(argv: Sequence[str] | None = None) -> int:
    from resihmr_dr.body.errors import BodyModelError
    from resihmr_dr.config import ConfigError
    from resihmr_dr.data.errors import DataError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (DataError, BodyModelError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
