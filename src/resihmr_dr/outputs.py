"""Write one person's fit to a folder, atomically (``atomic.atomic_directory``), and a run's
COCO keypoint results file.

Files (``docs/outputs.md``): params.json, params.npz (smplx-loadable for SMPL-X fits), mesh.ply,
mesh_tpose.ply, the optional mesh exports (``config.OutputConfig``: ``mesh_export.<format>``,
``mesh_tpose_export.<format>``), residual_mask.npy, stump.json, cross_sections.png, report.png,
metrics.json. ``metrics.json`` is written last inside the temporary folder, and the folder
appears under its final name only when complete. After a run, ``keypoints_results.json`` (COCO
results format) in the output folder lists the fitted keypoints of every finished person.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from resihmr_dr.atomic import atomic_directory, atomic_write_json, json_text
from resihmr_dr.config import OutputConfig, to_dict
from resihmr_dr.data.ldpose import NUM_COCO_KEYPOINTS, NUM_KEYPOINTS
from resihmr_dr.data.records import PersonAnnotation
from resihmr_dr.fit.pipeline import PersonFit, PipelineConfig
from resihmr_dr.fit.subject import SubjectFit
from resihmr_dr.results import coco_keypoint_result, colored_trimesh

OUTPUT_FILES = (
    "params.json",
    "params.npz",
    "mesh.ply",
    "mesh_tpose.ply",
    "residual_mask.npy",
    "stump.json",
    "cross_sections.png",
    "report.png",
    "metrics.json",
)  # always written (mesh exports come on top: ``required_files``)
KEYPOINT_RESULTS_FILE = "keypoints_results.json"
FRAME_DESCRIPTIONS = {
    "camera": "camera: OpenCV (x right, y down, z forward)",
    "y-up": "model: Y up, the person faces +Z, their left is +X (mesh.ply with the global transform undone: "
    "R(global_orient)^T (v - root_model - transl) + root_model)",
}


def person_folder_name(person: PersonAnnotation | PersonFit) -> str:
    """``image<IMAGE_ID>_ann<ANN_ID>`` for an annotated or fitted person."""
    return f"image{person.image_id}_ann{person.ann_id}"


def params_dict(fit: PersonFit, output: OutputConfig = OutputConfig()) -> dict:
    """The paper's Θ (body parameters and each λ_r), the camera and the residual limbs.

    Every residual-limb number describes the written mesh: ``anchor_cam`` / ``target_cam`` are
    the fitted body's J_a / J_t, ``endpoint_cam`` is the cap's tip (a vertex of mesh.ply) and
    ``lambda`` its fraction along J_a -> J_t. RAFO's own answer is kept under ``rafo``.
    ``root_model``: the root joint in the model frame (the global transform's centre);
    ``pred_keypoints_px``: (25, 3) the fitted LDpose keypoints (``predicted_keypoints_coco``);
    ``mesh_exports``: the frame and units of each export file ``output`` asks for.
    """
    residual = []
    for limb, lam_intact in zip(fit.limbs, fit.lambda_intact):
        d = limb.rafo.to_dict()
        residual.append(
            {
                "limb": limb.limb.name,
                "side": limb.limb.side.value,
                "type": limb.status.value,
                "lambda": limb.lam,
                "anchor_cam": limb.anchor_cam.tolist(),
                "endpoint_cam": limb.tip_cam.tolist(),
                "target_cam": limb.target_cam.tolist(),
                "endpoint_reprojection_px": _reprojection_px(fit, limb),
                "lambda_intact": lam_intact,
                "rafo": {
                    "lambda": d["lam"],
                    "anchor_cam": d["anchor_cam"],
                    "endpoint_cam": d["endpoint_cam"],
                    "accepted": d["accepted"],
                    "reprojection_error_px": d["reproj_error_px"],
                    "fallback": d["fallback"],
                    "reason": d["reason"],
                },
            }
        )
    return {
        "body_model": fit.body_name,
        "body_gender": fit.body_gender,
        "ann_id": fit.ann_id,
        "image_id": fit.image_id,
        "params": {k: v[0] for k, v in fit.params.to_dict().items()},
        "intact_params": {k: v[0] for k, v in fit.intact_params.to_dict().items()},
        "camera": fit.camera.to_dict(),
        "frame": "camera: OpenCV (x right, y down, z forward), metres",
        "root_model": np.asarray(fit.root_model, dtype=np.float64).tolist(),
        "pred_keypoints_px": predicted_keypoints_coco(fit).tolist(),
        "residual_limbs": residual,
        "intact_fit": {
            "converged": fit.intact.converged,
            "reason": fit.intact.reason,
            "keypoint_error_px": fit.intact.keypoint_error_px,
            "flipped": fit.intact.flipped,
            "stage_losses": {k: list(v) for k, v in fit.intact.stage_losses.items()},
            "seconds": fit.intact.timings,
        },
        "refinement": _refinement_dict(fit),
        "mesh_exports": mesh_exports(output),
        "provenance": (
            provenance(fit.config, body_name=fit.body_name, body_gender=fit.body_gender)
            if fit.config is not None
            else None
        ),
    }


def config_sha256(config: PipelineConfig) -> str:
    """SHA-256 of the fit settings (their canonical JSON), the key that says two fits used the same."""
    import hashlib

    return hashlib.sha256(json_text(to_dict(config), indent=None, sort_keys=True).encode()).hexdigest()


def provenance(config: PipelineConfig, *, body_name: str, body_gender: str | None = None) -> dict:
    """What produced a folder: package version, body model and its gender (``BodyModel.gender``),
    seed and the resolved fit settings."""
    from resihmr_dr import __version__

    return {
        "package_version": __version__,
        "body_model": body_name,
        "body_gender": body_gender,
        "seed": config.seed,
        "fit_config_sha256": config_sha256(config),
        "fit_config": to_dict(config),
    }


def same_provenance(folder: Path, config: PipelineConfig, *, body_name: str, body_gender: str | None = None) -> bool:
    """Whether ``folder``'s params.json records this body model, its gender and these fit settings
    (folders written before provenance was recorded, or unreadable ones, do not; a folder written
    before the gender was recorded counts as gender None, Anny's)."""
    try:
        recorded = json.loads((folder / "params.json").read_text()).get("provenance")
    except (OSError, ValueError, AttributeError):
        return False
    return (
        isinstance(recorded, dict)
        and recorded.get("body_model") == body_name
        and recorded.get("body_gender") == body_gender
        and recorded.get("fit_config_sha256") == config_sha256(config)
    )


def mesh_exports(output: OutputConfig) -> dict[str, dict[str, str]]:
    """Export file -> {"mesh": the file it is a copy of, "frame", "units"} ({} when none)."""
    if not output.exports:
        return {}
    posed, tpose = output.export_files
    return {
        posed: {"mesh": "mesh.ply", "frame": FRAME_DESCRIPTIONS[output.mesh_frame], "units": output.units},
        tpose: {"mesh": "mesh_tpose.ply", "frame": FRAME_DESCRIPTIONS["y-up"], "units": output.units},
    }


def predicted_keypoints_coco(fit: PersonFit) -> np.ndarray:
    """(25, 3) ``[x, y, v]`` px of the fit's LDpose keypoints (``PersonFit.pred_keypoints_px``): the
    17 COCO keypoints of the fitted body and each residual limb's endpoint (the cap's tip) with
    v = 1 (predicted); the endpoints of intact limbs (no prediction) are [0, 0, 0]."""
    out = np.zeros((NUM_KEYPOINTS, 3))
    predicted = list(range(NUM_COCO_KEYPOINTS)) + [s.limb.endpoint_index(s.status) for s in fit.limbs]
    out[predicted, :2] = np.asarray(fit.pred_keypoints_px, dtype=np.float64)[predicted]
    out[predicted, 2] = 1.0
    return out


def params_npz_arrays(fit: PersonFit) -> dict[str, np.ndarray]:
    """``params.npz``'s arrays: the final body parameters (those of mesh.ply's body before the cut).

    SMPL-X fits use smplx's names and shapes, so ``smplx.create(model_dir, model_type="smplx",
    gender=str(npz["gender"]), num_betas=N, flat_hand_mean=True)(**{k: torch.tensor(npz[k]) for k
    in ("betas", "global_orient", "body_pose", "transl")})`` gives mesh.ply's body before the cut
    in the camera frame: ``betas`` (1, N), ``global_orient`` (1, 3), ``body_pose`` (1, 63),
    ``transl`` (1, 3) float32, plus the strings ``model_type`` ("smplx") and ``gender`` (the fitted
    model's, ``PersonFit.body_gender``: "neutral", "male" or "female"). Anny fits (not
    smplx-loadable) hold ``anny_phenotypes`` (1, 6) with ``anny_phenotype_names``, ``anny_pose``
    (1, 19, 3) with ``anny_pose_bones``, ``anny_global_orient`` (1, 3), ``anny_transl`` (1, 3) and
    ``model_type`` ("anny"), and no ``gender`` (Anny is one model; the sex is the fitted "gender"
    phenotype, 0 male to 1 female): ``resihmr_dr.body.anny_model.AnnyBody``'s parameters
    (``BodyParams``), see ``docs/outputs.md``.
    """
    p = {
        name: getattr(fit.params, name).detach().cpu().numpy().astype(np.float32)
        for name in ("global_orient", "body_pose", "shape", "transl")
    }
    if fit.body_name == "smplx":
        if fit.body_gender is None:
            raise ValueError("params.npz: a SMPL-X fit needs its model's gender (PersonFit.body_gender), got None")
        return {
            "betas": p["shape"],
            "global_orient": p["global_orient"],
            "body_pose": p["body_pose"].reshape(1, -1),
            "transl": p["transl"],
            "model_type": np.array("smplx"),
            "gender": np.array(fit.body_gender),
        }
    if fit.body_name == "anny":
        from resihmr_dr.body.anny_model import POSE_BONES, SHAPE_NAMES

        return {
            "anny_phenotypes": p["shape"],
            "anny_phenotype_names": np.array(SHAPE_NAMES),
            "anny_pose": p["body_pose"],
            "anny_pose_bones": np.array(POSE_BONES),
            "anny_global_orient": p["global_orient"],
            "anny_transl": p["transl"],
            "model_type": np.array("anny"),
        }
    raise ValueError(f"params.npz: no layout for the body model {fit.body_name!r} (smplx or anny)")


def required_files(output: OutputConfig = OutputConfig()) -> tuple[str, ...]:
    """Every file of a complete person folder written with ``output``: ``OUTPUT_FILES`` and the exports."""
    return OUTPUT_FILES + output.export_files


def folder_complete(folder: Path, output: OutputConfig = OutputConfig()) -> bool:
    """Whether ``folder`` holds every file of ``required_files(output)``."""
    return folder.is_dir() and all((folder / name).is_file() for name in required_files(output))


def person_category_id(categories: Sequence[Mapping]) -> int:
    """The COCO category id of people among an annotation file's ``categories``: the one named
    "person", else the only one, else 1."""
    ids = [c.get("id") for c in categories if isinstance(c, Mapping)]
    named = [c.get("id") for c in categories if isinstance(c, Mapping) and c.get("name") == "person"]
    chosen = named or (ids if len(ids) == 1 else [])
    return int(chosen[0]) if chosen and isinstance(chosen[0], int) and not isinstance(chosen[0], bool) else 1


def write_keypoint_results(
    out_dir: str | Path,
    people: Iterable[PersonAnnotation],
    *,
    category_id: int = 1,
    output: OutputConfig = OutputConfig(),
) -> Path:
    """Write ``out_dir/keypoints_results.json`` atomically: the COCO keypoint results (a list of
    ``{"image_id", "category_id", "keypoints", "score", "ann_id"}``, see
    ``results.coco_keypoint_result``) of every person of ``people`` whose folder is complete
    (also those written by an earlier run; an image fitted with the person's other images is read
    from its subject folder), in ``people``'s order; ``[]`` when there is none."""
    out_dir = Path(out_dir)
    records = []
    for person in people:
        folders = [out_dir / person_folder_name(person)]
        if person.person_id is not None:  # fitted with the person's other images
            folders.append(subject_view_folder(out_dir, person.person_id, person))
        done = [folder for folder in folders if folder_complete(folder, output)]
        if done:
            records.append(coco_keypoint_result(done[0], category_id=category_id))
    path = out_dir / KEYPOINT_RESULTS_FILE
    atomic_write_json(path, records, indent=None)
    return path


def _reprojection_px(fit: PersonFit, limb) -> float | None:
    """Pixel distance of the tip's projection (the fit's predicted endpoint keypoint) from the
    limb's endpoint keypoint (None if unlabelled)."""
    index = limb.limb.endpoint_index(limb.status)
    if fit.keypoints_px[index, 2] <= 0:
        return None
    return float(np.linalg.norm(fit.pred_keypoints_px[index] - fit.keypoints_px[index, :2]))


def _refinement_dict(fit: PersonFit) -> dict | None:
    """The silhouette refinement: its stages (iterations, stop reason, per-term losses at the
    start and end), the caps' shape, the residual segments' radius profiles and the depth drift
    (None where it did not run)."""
    ref = fit.refinement
    if ref is None:
        return None
    return {
        "stages": [stage.to_dict() for stage in ref.stages],
        "iterations": ref.iterations,
        "recuts": ref.recuts,
        "depth_drift_m": ref.depth_drift_m,
        "limbs": [
            {
                "limb": limb.limb.name,
                "tip_height_m": height,
                "max_abs_normal_offset_m": float(offsets.abs().max()),
                "normal_offsets_m": offsets.cpu().tolist(),
                "radius_profile": radial.to_dict(),
            }
            for limb, height, offsets, radial in zip(fit.limbs, ref.tip_heights, ref.normal_offsets, ref.radial)
        ],
        "seconds": ref.seconds,
    }


def write_mesh_exports(fit: PersonFit, folder: Path, output: OutputConfig) -> None:
    """Write ``output``'s export files (none when it asks for mesh.ply's own format, frame and units)."""
    if not output.exports:
        return
    posed, tpose = output.export_files
    fit.to_trimesh(frame=output.mesh_frame, units=output.units).export(folder / posed)
    fit.to_trimesh(tpose=True, units=output.units).export(folder / tpose)


def write_person(
    fit: PersonFit,
    out_dir: str | Path,
    *,
    image_rgb: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    output: OutputConfig = OutputConfig(),
) -> Path:
    """Write ``fit`` to ``out_dir/<person folder>`` atomically (with ``output``'s mesh exports);
    returns the folder."""
    from resihmr_dr.render.report import save_cross_sections, save_report

    final = Path(out_dir) / person_folder_name(fit)
    with atomic_directory(final) as tmp:
        atomic_write_json(tmp / "params.json", params_dict(fit, output))
        np.savez(tmp / "params.npz", **params_npz_arrays(fit))
        colored_trimesh(fit.verts_cam, fit.faces, fit.residual_mask).export(tmp / "mesh.ply")
        colored_trimesh(fit.verts_tpose, fit.faces_tpose, fit.residual_mask_tpose).export(tmp / "mesh_tpose.ply")
        write_mesh_exports(fit, tmp, output)
        np.save(tmp / "residual_mask.npy", fit.residual_mask)
        atomic_write_json(
            tmp / "stump.json",
            {
                "posed": [s.to_dict() for s in fit.stump],
                "tpose": [s.to_dict() for s in fit.stump_tpose],
                "units": "metres, square metres, cubic metres",
            },
        )
        save_cross_sections(tmp / "cross_sections.png", posed=fit.stump, tpose=fit.stump_tpose)
        save_report(tmp / "report.png", fit=fit, image_rgb=image_rgb, mask=mask)
        atomic_write_json(
            tmp / "metrics.json",
            fit.metrics.to_dict() | {"seconds": fit.seconds, "stage_seconds": dataclasses.asdict(fit.stage_seconds)},
        )
    return final


SUBJECT_FILES = ("subject.json", "mesh_tpose.ply", "stump.json", "report.png")  # besides views/<person folder>/


def subject_folder_name(person_id: str) -> str:
    """``subject_<PERSON_ID>`` for a person seen in several images (characters other than letters,
    digits, ``.``, ``_`` and ``-`` become ``_``)."""
    return "subject_" + re.sub(r"[^A-Za-z0-9._-]", "_", person_id)


SUBJECT_VIEWS_DIR = "views"  # a subject folder's per-image person folders


def subject_view_path(person_id: str, person: PersonAnnotation | PersonFit) -> str:
    """One image of a subject, relative to the run's folder: ``subject_<id>/views/image<I>_ann<A>``."""
    return f"{subject_folder_name(person_id)}/{SUBJECT_VIEWS_DIR}/{person_folder_name(person)}"


def subject_view_folder(out_dir: str | Path, person_id: str, person: PersonAnnotation | PersonFit) -> Path:
    """Where one image of a subject is written: ``<out>/subject_<id>/views/image<I>_ann<A>``."""
    return Path(out_dir) / subject_view_path(person_id, person)


def subject_dict(subject: SubjectFit) -> dict:
    """subject.json: the person, what the images shared, each image's folder and fit quality, and
    the shared residual limbs (λ of view 0's mesh, T-pose measurements)."""
    first = subject.views[0]
    return {
        "person_id": subject.person_id,
        "mode": subject.rig.mode.value,
        "num_views": len(subject.views),
        "views": [
            {
                "image_id": fit.image_id,
                "ann_id": fit.ann_id,
                "folder": f"{SUBJECT_VIEWS_DIR}/{person_folder_name(fit)}",
                "body_px": fit.metrics.body_px,
                "mask_iou": fit.metrics.mask_iou,
                "lambda": [s.lam for s in fit.limbs],
                "converged": fit.metrics.quality.ok,
            }
            for fit in subject.views
        ],
        "limbs": [
            {"limb": s.limb.name, "status": s.status.value, "lambda": s.lam, "tpose": g.to_dict()}
            for s, g in zip(first.limbs, first.stump_tpose)
        ],
        "joint_keypoint_fit": None
        if subject.joint is None
        else {
            "keypoint_error_px": list(subject.joint.keypoint_error_px),
            "stages": [
                {"name": s.name, "iterations": s.iterations, "stop_reason": s.reason.value, "loss_last": s.final_loss}
                for s in subject.joint.stages
            ],
        },
        "seconds": subject.seconds,
    }


def write_subject(
    subject: SubjectFit,
    out_dir: str | Path,
    *,
    images_rgb: Sequence[np.ndarray | None],
    masks: Sequence[np.ndarray | None],
    output: OutputConfig = OutputConfig(),
) -> Path:
    """Write a person fitted from several images to ``out_dir/subject_<id>`` atomically: the shared
    T-pose mesh, stump.json (T-pose, and each image's posed measurements), subject.json, a report
    with every view, and each image's standard person folder under ``views/``. Returns the folder."""
    from resihmr_dr.render.report import save_subject_report

    if subject.person_id is None:
        raise ValueError("a subject folder needs a person_id")
    first = subject.views[0]
    final = Path(out_dir) / subject_folder_name(subject.person_id)
    with atomic_directory(final) as tmp:
        for fit, image, mask in zip(subject.views, images_rgb, masks):
            write_person(fit, tmp / SUBJECT_VIEWS_DIR, image_rgb=image, mask=mask, output=output)
        colored_trimesh(first.verts_tpose, first.faces_tpose, first.residual_mask_tpose).export(tmp / "mesh_tpose.ply")
        atomic_write_json(
            tmp / "stump.json",
            {
                "tpose": [s.to_dict() for s in first.stump_tpose],
                "posed": {person_folder_name(fit): [s.to_dict() for s in fit.stump] for fit in subject.views},
                "units": "metres, square metres, cubic metres",
            },
        )
        save_subject_report(
            tmp / "report.png", views=subject.views, images_rgb=images_rgb, title=f"person {subject.person_id}"
        )
        atomic_write_json(tmp / "subject.json", subject_dict(subject))
    return final


def subject_complete(folder: Path, views: Sequence[PersonAnnotation], output: OutputConfig = OutputConfig()) -> bool:
    """Whether a subject folder holds its files and a complete folder for each of ``views``."""
    if not all((folder / name).is_file() for name in SUBJECT_FILES):
        return False
    return all(folder_complete(folder / SUBJECT_VIEWS_DIR / person_folder_name(p), output) for p in views)
