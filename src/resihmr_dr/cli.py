"""Command-line interface: ``resihmr-dr <command> --help`` explains each command."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from resihmr_dr import __version__
from resihmr_dr.cli_config import CONFIG_HELP, add_config_args, config_from_args

if TYPE_CHECKING:
    from resihmr_dr.config import OutputConfig
    from resihmr_dr.failures import Failure

DESCRIPTION = """\
resihmr-dr recovers an anatomically faithful 3D body mesh of a person with limb loss from a
single image: an intact-body fit, RAFO residual-limb endpoints (ResiHMR), a watertight stump
cap, and a differentiable soft-silhouette refinement against the person mask.

Inputs are LDpose-LimbLoss annotations: COCO-style JSON with 25 keypoints per person (the 17
COCO keypoints plus 8 residual-limb endpoints) and a person mask.
"""


def _add_body_args(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser, config_help=CONFIG_HELP + "; the flags below override it")
    parser.add_argument(
        "--body",
        choices=("anny", "smplx"),
        default=None,
        help="body model: 'anny' (default, ships with the package, offline) or 'smplx' "
        "(your own SMPL-X files, see --smplx-dir); config key body.model",
    )
    parser.add_argument(
        "--smplx-dir",
        type=Path,
        default=None,
        help="folder with SMPLX_NEUTRAL.npz (or smplx/SMPLX_NEUTRAL.npz), or a model file such as "
        "SMPLX_FEMALE.npz (its gender is fitted and recorded); config key body.smplx_dir; default: $RESIHMR_SMPLX_DIR",
    )
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu); config key body.device"
    )


def _body_from_args(args: argparse.Namespace):
    """Build the body model from --config with the command-line flags taking precedence."""
    from resihmr_dr.body.factory import build_body_model

    cfg = config_from_args(args).body
    return build_body_model(
        args.body or cfg.model,
        smplx_dir=args.smplx_dir or cfg.smplx_dir,
        device=args.device or cfg.device,
    )


def _add_output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mesh-format",
        choices=("ply", "obj", "stl", "glb"),
        default=None,
        help="also write the meshes as mesh_export.<format> and mesh_tpose_export.<format> "
        "(mesh.ply and mesh_tpose.ply are always written); config key output.mesh_format, "
        "default ply",
    )
    parser.add_argument(
        "--mesh-frame",
        choices=("camera", "y-up"),
        default=None,
        help="frame of the posed export: camera (OpenCV, y down, as mesh.ply) or y-up (the body "
        "model's frame: Y up, facing +Z, as Blender/MeshLab expect); the T-pose export is "
        "always y-up; config key output.mesh_frame, default camera",
    )
    parser.add_argument(
        "--units",
        choices=("m", "mm"),
        default=None,
        help="units of the exports: m or mm (prosthetics CAD); config key output.units, default m",
    )


def _output_from_args(args: argparse.Namespace, config: OutputConfig) -> OutputConfig:
    """The config's ``output`` section with the --mesh-format/--mesh-frame/--units flags taking precedence."""
    import dataclasses

    flags = {"mesh_format": args.mesh_format, "mesh_frame": args.mesh_frame, "units": args.units}
    return dataclasses.replace(config, **{k: v for k, v in flags.items() if v is not None})


def build_parser() -> argparse.ArgumentParser:
    """The ``resihmr-dr`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="resihmr-dr", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="run the pipeline on the built-in sample person (left transtibial residual limb)",
        description="Fit the built-in sample (an image, its person mask and LDpose keypoints of a "
        "person with a left transtibial residual limb) with the whole pipeline and write its folder "
        "(report.png, meshes, parameters, stump measurements, metrics) to --out, as `fit` does. Runs "
        "offline with the embedded Anny body model.",
    )
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)")
    _add_body_args(demo)
    _add_output_args(demo)
    demo.set_defaults(func=_cmd_demo)

    fit = sub.add_parser(
        "fit",
        help="fit every annotated person: intact body, RAFO residual endpoints, capped stump, measurements",
        description="Fit every person of an LDpose annotation file and write one folder per person to "
        "--out: params.json (body parameters, camera, each residual limb's lambda, endpoint, anchor and "
        "acceptance), params.npz (the body parameters; smplx-loadable for SMPL-X fits), mesh.ply and "
        "mesh_tpose.ply (residual limb in red; other formats, frames and units with --mesh-format, "
        "--mesh-frame, --units), residual_mask.npy, stump.json and cross_sections.png (residual length, "
        "volume, cross-sections), metrics.json (2D keypoint error, mask IoU, quality) and report.png; "
        "and OUT/keypoints_results.json, the fitted keypoints of every finished person in the COCO "
        "results format (docs/outputs.md). Folders appear only when complete, so an interrupted "
        "run (Ctrl-C, kill) is resumed by rerunning the same command: finished people are skipped "
        "(unless --overwrite). People that fail (bad annotation, image or mask; a fit that raised) get "
        "no folder; fits that did not converge (non-finite loss, keypoint error above "
        "fit.quality's threshold, cap not watertight) get their folder with quality.ok = false in "
        "metrics.json. Both are listed with the reason in failures.json and make the exit code 1; "
        "2 is a bad file or option, 130 an interruption.",
    )
    fit.add_argument("--annotations", type=Path, required=True, help="LDpose COCO-style JSON file")
    fit.add_argument("--images", type=Path, default=None, help="image folder (default: the JSON's folder)")
    fit.add_argument("--out", type=Path, required=True, help="output folder")
    fit.add_argument("--overwrite", action="store_true", help="refit people whose output folder exists")
    fit.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed (config key fit.seed, default 0): same inputs, config and seed give "
        "the same outputs on the same machine",
    )
    fit.add_argument(
        "--accelerator", default="cpu", help="Lightning accelerator: cpu (default), gpu, cuda, mps or auto"
    )
    fit.add_argument(
        "--devices",
        type=_devices_arg,
        default=1,
        help="Lightning devices per node: a count (default 1), a list like 0,1, or auto",
    )
    fit.add_argument(
        "--strategy",
        default="auto",
        help="Lightning strategy: auto (default), ddp (one process per device: each fits "
        "different people), ddp_spawn, ...",
    )
    fit.add_argument("--num-nodes", type=_positive_int, default=1, help="number of machines for DDP (default 1)")
    views = fit.add_argument_group(
        "several images of one person",
        "annotations sharing a person_id are one person, fitted together (one shape, residual-limb end "
        "and stump); one output folder subject_<person_id>/",
    )
    views.add_argument(
        "--same-pose",
        action="store_true",
        default=None,
        help="the images show one pose (simultaneous, uncalibrated cameras; config fit.views.same_pose)",
    )
    views.add_argument(
        "--ignore-extrinsics",
        action="store_true",
        default=None,
        help="do not use the cameras' R, t even when every image gives them (config fit.views.use_extrinsics)",
    )
    views.add_argument(
        "--max-views",
        type=_positive_int,
        default=None,
        help="fit at most this many images of one person, the first in file order (config fit.views.max_views)",
    )
    fit.add_argument(
        "--logger-dir",
        type=Path,
        default=None,
        help="folder for the per-stage loss logs (CSV; TensorBoard too when installed); default: OUT/.logs",
    )
    _add_body_args(fit)
    _add_output_args(fit)
    fit.set_defaults(func=_cmd_fit)

    from resihmr_dr.eval.synth_cli import add_synth_parser

    add_synth_parser(sub)

    from resihmr_dr.eval.eval_cli import add_eval_parser

    add_eval_parser(sub)

    from resihmr_dr.eval.sweep_cli import add_sweep_parser

    add_sweep_parser(sub)

    validate = sub.add_parser(
        "validate",
        help="check an LDpose annotation file and list each person's limb status",
        description="Load an LDpose-LimbLoss annotation file, check it and every file it names, and print "
        "each valid person's limb statuses (one 'ok' line per person on stdout, one 'BAD' line per problem "
        "on stderr, naming the file, the image or annotation id and the field). Checked per image and "
        "person: keypoint count, coordinates and visibilities, contradictory residual endpoints, "
        "intrinsics, the image file (exists, decodes, has the stated width/height), the mask (decodes, "
        "has the image's size) and the init_fit file (loads). Checked for the whole file: the JSON reads, "
        "its top-level structure, and the categories' keypoint names (the 25 LDpose names in LDpose "
        "order; common spellings such as 'Left Eye' or 'l_eye' are accepted, another order or an unknown "
        "name is an error naming the category, the position and the names). Exit code 0 if everything is "
        "valid, 1 if any image or person is invalid (the others are still checked), 2 if the file itself "
        "cannot be used (unreadable or malformed JSON, wrong structure, wrong keypoint names).",
    )
    validate.add_argument("--annotations", type=Path, required=True, help="LDpose COCO-style JSON file")
    validate.add_argument("--images", type=Path, default=None, help="image folder (default: the JSON's folder)")
    validate.set_defaults(func=_cmd_validate)

    print_config = sub.add_parser(
        "print-config",
        help="print the resolved configuration (defaults, --config, --set) as YAML",
        description="Print every configuration key with its value after --config and the --set overrides, "
        "as YAML that --config reads back. Exit code 2 for an unknown key or a wrong type.",
    )
    add_config_args(print_config)
    print_config.set_defaults(func=_cmd_print_config)
    return parser


def _cmd_print_config(args: argparse.Namespace) -> int:
    from resihmr_dr.config import config_yaml

    print(config_yaml(config_from_args(args)), end="")
    return 0


def _status_line(person) -> str:
    residual = [f"{limb.name}={status.value}" for limb, status in person.residual_limbs]
    return f"annotation {person.ann_id} (image {person.image_id}): " + (", ".join(residual) or "no residual limb")


def _cmd_validate(args: argparse.Namespace) -> int:
    """Check an annotation file and every file it names (images, masks, initial fits).

    Returns 0 if all is valid, 1 if any image or person is invalid (per-image and per-person problems:
    keypoints, intrinsics, an image file that is missing or does not decode, a mask, an init_fit that
    does not load). File-level problems (unreadable JSON, wrong structure, keypoint names not the 25
    LDpose names in order) raise DataError, which ``main`` turns into exit code 2.
    """
    from resihmr_dr.data.annotations import load_annotations
    from resihmr_dr.data.validate import check_files

    dataset = load_annotations(args.annotations, images_dir=args.images, on_error="collect")
    check = check_files(dataset)
    for person in check.valid:
        print("ok   " + _status_line(person))
    for err in check.errors:
        print(f"BAD  {err}", file=sys.stderr)
    print(f"{len(check.valid)} valid, {len(check.errors)} invalid")
    return 1 if check.errors else 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _devices_arg(text: str) -> int | str:
    text = text.strip()
    if text.isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError("must be at least 1")
        return int(text)
    if text == "auto" or all(part.strip().isdigit() for part in text.split(",")):
        return text
    raise argparse.ArgumentTypeError(f"expected a count, a list like 0,1, or auto; got {text!r}")


def _views_from_args(args: argparse.Namespace, views):
    """``fit.views`` with the command line's --same-pose / --ignore-extrinsics / --max-views on top."""
    import dataclasses

    flags = {
        "same_pose": args.same_pose,
        "use_extrinsics": None if args.ignore_extrinsics is None else False,
        "max_views": args.max_views,
    }
    return dataclasses.replace(views, **{k: v for k, v in flags.items() if v is not None})


def _cmd_fit(args: argparse.Namespace) -> int:
    import contextlib
    import dataclasses

    from resihmr_dr.atomic import exclusive_lock, remove_stale_partials
    from resihmr_dr.data.annotations import load_annotations
    from resihmr_dr.failures import FAILURES_FILE
    from resihmr_dr.lightning import LDposeDataModule, env_global_rank

    config = config_from_args(args)
    fit_config = config.fit if args.seed is None else dataclasses.replace(config.fit, seed=args.seed)
    fit_config = dataclasses.replace(fit_config, views=_views_from_args(args, fit_config.views))
    dataset = load_annotations(args.annotations, images_dir=args.images, on_error="collect")
    body = _body_from_args(args)
    start = time.perf_counter()
    out = Path(args.out)
    rank_zero = env_global_rank() == 0  # DDP's other ranks rerun this command: no lock, no cleanup
    if rank_zero:
        out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out) if rank_zero else contextlib.nullcontext():
        if rank_zero:
            remove_stale_partials(out)
        data = LDposeDataModule(
            dataset,
            body=body,
            out_dir=out,
            overwrite=args.overwrite,
            output=_output_from_args(args, config.output),
            fit_config=fit_config,
        )
        summary = _predict(args, data=data, fit_config=fit_config)
    if summary is None:  # not global rank 0: rank 0 reports
        return 0
    summary = dataclasses.replace(summary, seconds=time.perf_counter() - start)
    print(
        f"{len(summary.written)} fitted, {len(summary.skipped)} skipped (already done), "
        f"{len(summary.failures)} failed in {summary.seconds:.1f} s -> {args.out}"
    )
    _print_failures(summary.failures)
    if summary.failures:
        print(f"see {args.out / FAILURES_FILE}", file=sys.stderr)
    return 0 if summary.ok else 1


def _print_failures(failures: Sequence[Failure]) -> None:
    """One ``FAILED`` line per ``failures.Failure`` on stderr."""
    for failure in failures:
        print(f"FAILED annotation {failure.ann_id} ({failure.stage.value}): {failure.reason}", file=sys.stderr)


def _predict(args: argparse.Namespace, *, data, fit_config):
    """Run ``Trainer.predict`` over the planned people; the merged summary on global rank 0,
    None on the other ranks."""
    import logging
    import signal
    import warnings

    from resihmr_dr.lightning import PersonWriter, ResihmrFitModule, make_loggers

    writer = PersonWriter(data.out_dir, plan=data.plan)
    if not data.plan.todo:  # nothing to fit: no processes to start
        return writer.merge(world_size=1)
    import lightning.pytorch as pl
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from resihmr_dr.config import ConfigError

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for message in (
            r".*does not have many workers.*",
            r".*`srun` command is available.*",
            r".*isinstance\(treespec, LeafSpec\).*",
        ):
            warnings.filterwarnings("ignore", message=message)
        log_dir = args.logger_dir or data.out_dir / ".logs"
        try:
            trainer = pl.Trainer(
                accelerator=args.accelerator,
                devices=args.devices,
                strategy=args.strategy,
                num_nodes=args.num_nodes,
                logger=make_loggers(log_dir),
                callbacks=[writer],
                enable_model_summary=False,
                enable_checkpointing=False,
                inference_mode=False,
                use_distributed_sampler=False,
                default_root_dir=str(log_dir),
            )
        except (MisconfigurationException, ValueError, RuntimeError) as err:  # e.g. --accelerator gpu without one
            raise ConfigError(f"--accelerator/--devices/--strategy/--num-nodes: {err}") from None
        try:
            trainer.predict(ResihmrFitModule(data.body, fit_config), datamodule=data, return_predictions=False)
        except SystemExit:
            if trainer.interrupted:  # Lightning turns Ctrl-C into exit(1) (ignoring SIGINT): report it as ours
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt from None
            raise
    return writer.summary if trainer.is_global_zero else None


def _cmd_demo(args: argparse.Namespace) -> int:
    from resihmr_dr.batch import fit_dataset
    from resihmr_dr.data.annotations import load_annotations
    from resihmr_dr.data.sample import sample_annotations_path

    config = config_from_args(args)
    dataset = load_annotations(sample_annotations_path())
    print(f"sample: {dataset.path}")
    for person in dataset:
        print(_status_line(person))
    t0 = time.perf_counter()
    body = _body_from_args(args)
    print(
        f"body model: {body.name} ({body.num_verts} vertices, {body.faces.shape[0]} faces) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    output = _output_from_args(args, config.output)
    summary = fit_dataset(dataset, body=body, out_dir=args.out, config=config.fit, overwrite=True, output=output)
    _print_failures(summary.failures)
    for name in summary.written:
        folder = args.out / name
        params = json.loads((folder / "params.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        stump = json.loads((folder / "stump.json").read_text())
        print(
            f"{name}: keypoint error {metrics['body']:.1f} px, mask IoU {metrics.get('mask_iou', float('nan')):.3f}, "
            f"{metrics['seconds']:.1f} s"
        )
        for limb, geometry in zip(params["residual_limbs"], stump["posed"]):
            reproj = limb["endpoint_reprojection_px"]
            print(
                f"  {limb['limb']} {limb['type']}: lambda {limb['lambda']:.3f} "
                f"(RAFO {'accepted' if limb['rafo']['accepted'] else 'fallback'}; tip "
                f"{'unlabelled' if reproj is None else f'{reproj:.1f} px from its keypoint'}), "
                f"residual length {geometry['length_m'] * 100:.1f} cm ({geometry['length_fraction']:.2f} of the "
                f"segment), stump volume {geometry['volume_m3'] * 1e6:.0f} cm^3"
            )
        refinement = params.get("refinement") or {}
        if refinement:
            stops = ", ".join(f"{s['name']} {s['iterations']} it. ({s['stop_reason']})" for s in refinement["stages"])
            print(f"  silhouette refinement: {stops}; depth drift {refinement['depth_drift_m'] * 1000:.0f} mm")
        for limb in refinement.get("limbs", []):
            change = (limb.get("radius_profile") or {}).get("radius_change") or [0.0]
            print(
                f"  {limb['limb']} cap: tip {limb['tip_height_m'] * 1000:.0f} mm beyond the cut, largest offset "
                f"{limb['max_abs_normal_offset_m'] * 1000:.1f} mm; residual segment's radius "
                f"{min(change) * 100:+.0f} to {max(change) * 100:+.0f} %"
            )
        exports = "".join(f", {name}" for name in output.export_files)
        print(
            f"  wrote {folder}/ (report.png, mesh.ply{exports}, params.json, params.npz, stump.json, metrics.json, ...)"
        )
    return 0 if summary.ok else 1


INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, the shell's convention


def _loaded_body_model_error() -> tuple[type[Exception], ...]:
    """``(BodyModelError,)`` once a command has loaded the body models, else ``()``: importing it
    runs ``resihmr_dr.body``'s ``__init__``, which imports torch (too slow for ``validate``), and
    no BodyModelError can have been raised before its module was imported."""
    errors = sys.modules.get("resihmr_dr.body.errors")
    return (errors.BodyModelError,) if errors is not None else ()


# Commands that never build a body model (and must start fast: no Warp import for them).
_COMMANDS_WITHOUT_BODY = ("validate", "print-config")


def _quiet_warp() -> None:
    """Keep only Warp's errors: at its default log level Warp (Anny's skinning) prints its start-up
    banner and each kernel module's load time to stdout, between the command's own lines."""
    try:
        import warp
    except ImportError:
        return
    warp.config.log_level = getattr(warp, "LOG_ERROR", 40)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (0 ok, 1 some people failed, 2 bad input or
    options, 130 interrupted)."""
    from resihmr_dr.atomic import FolderBusyError
    from resihmr_dr.config import ConfigError
    from resihmr_dr.data.errors import DataError

    args = build_parser().parse_args(argv)
    if args.command not in _COMMANDS_WITHOUT_BODY:
        _quiet_warp()
    try:
        return int(args.func(args))
    except (DataError, ConfigError, FolderBusyError, *_loaded_body_model_error()) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. --out is a file, not writable, or the disk is full
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = " finished people are kept; rerun the same command to resume." if args.command == "fit" else ""
        print(f"\ninterrupted.{hint}", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
