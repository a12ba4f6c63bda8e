"""Write one person's fit to a folder, atomically (``atomic.atomic_directory``).

Files: params.json, mesh.ply, mesh_tpose.ply, residual_mask.npy, stump.json,
cross_sections.png, metrics.json, report.png. ``metrics.json`` is written last inside the
temporary folder, and the folder appears under its final name only when complete.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import trimesh

from resihmr_dr.atomic import atomic_directory
from resihmr_dr.data.annotations import PersonAnnotation
from resihmr_dr.fit.pipeline import PersonFit
from resihmr_dr.render.views import RESIDUAL_RGB, SKIN_RGB

OUTPUT_FILES = (
    "params.json",
    "mesh.ply",
    "mesh_tpose.ply",
    "residual_mask.npy",
    "stump.json",
    "cross_sections.png",
    "report.png",
    "metrics.json",
)


def person_folder_name(person: PersonAnnotation | PersonFit) -> str:
    """``image<IMAGE_ID>_ann<ANN_ID>`` for an annotated or fitted person."""
    return f"image{person.image_id}_ann{person.ann_id}"


def params_dict(fit: PersonFit) -> dict:
    """The paper's Θ (body parameters and each λ_r), the camera and the residual limbs.

    Every residual-limb number describes the written mesh: ``anchor_cam`` / ``target_cam`` are
    the fitted body's J_a / J_t, ``endpoint_cam`` is the cap's tip (a vertex of mesh.ply) and
    ``lambda`` its fraction along J_a -> J_t. RAFO's own answer is kept under ``rafo``.
    """
    residual = []
    for limb, lam_intact in zip(fit.limbs, fit.lambda_intact):
        d = limb.rafo.to_dict()
        residual.append({
            "limb": limb.limb.name,
            "side": limb.limb.side.value,
            "type": limb.status.value,
            "lambda": limb.lam,
            "anchor_cam": limb.anchor_cam.tolist(),
            "endpoint_cam": limb.tip_cam.tolist(),
            "target_cam": limb.target_cam.tolist(),
            "endpoint_reprojection_px": _reprojection_px(fit, limb),
            "lambda_intact": lam_intact,
            "rafo": {"lambda": d["lam"], "anchor_cam": d["anchor_cam"], "endpoint_cam": d["endpoint_cam"],
                     "accepted": d["accepted"], "reprojection_error_px": d["reproj_error_px"],
                     "fallback": d["fallback"], "reason": d["reason"]},
        })  # fmt: skip
    return {
        "body_model": fit.body_name,
        "ann_id": fit.ann_id,
        "image_id": fit.image_id,
        "params": {k: v[0] for k, v in fit.params.to_dict().items()},
        "intact_params": {k: v[0] for k, v in fit.intact_params.to_dict().items()},
        "camera": fit.camera.to_dict(),
        "frame": "camera: OpenCV (x right, y down, z forward), metres",
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
    }


def _reprojection_px(fit: PersonFit, limb) -> float | None:
    """Pixel distance of the tip's projection (the fit's predicted endpoint keypoint) from the
    limb's endpoint keypoint (None if unlabelled)."""
    index = limb.limb.endpoint_index(limb.status)
    if fit.keypoints_px[index, 2] <= 0:
        return None
    return float(np.linalg.norm(fit.pred_keypoints_px[index] - fit.keypoints_px[index, :2]))


def _refinement_dict(fit: PersonFit) -> dict | None:
    """The silhouette refinement: its stages (iterations, stop reason, per-term losses at the
    start and end), the caps' shape and the depth drift (None where it did not run)."""
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
            }
            for limb, height, offsets in zip(fit.limbs, ref.tip_heights, ref.normal_offsets)
        ],
        "seconds": ref.seconds,
    }


def _mesh(verts: np.ndarray, faces: np.ndarray, residual_mask: np.ndarray) -> trimesh.Trimesh:
    colours = np.tile(np.array([*SKIN_RGB, 1.0]) * 255, (len(verts), 1))
    colours[residual_mask] = np.array([*RESIDUAL_RGB, 1.0]) * 255
    return trimesh.Trimesh(vertices=verts, faces=faces, vertex_colors=colours.astype(np.uint8), process=False)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(_json_safe(data), indent=2))


def write_person(fit: PersonFit, out_dir: str | Path, *, image_rgb: np.ndarray | None = None, mask: np.ndarray | None = None) -> Path:
    """Write ``fit`` to ``out_dir/<person folder>`` atomically; returns the folder."""
    from resihmr_dr.render.report import save_cross_sections, save_report

    final = Path(out_dir) / person_folder_name(fit)
    with atomic_directory(final) as tmp:
        _write_json(tmp / "params.json", params_dict(fit))
        _mesh(fit.verts_cam, fit.faces, fit.residual_mask).export(tmp / "mesh.ply")
        _mesh(fit.verts_tpose, fit.faces_tpose, fit.residual_mask_tpose).export(tmp / "mesh_tpose.ply")
        np.save(tmp / "residual_mask.npy", fit.residual_mask)
        _write_json(tmp / "stump.json", {
            "posed": [s.to_dict() for s in fit.stump],
            "tpose": [s.to_dict() for s in fit.stump_tpose],
            "units": "metres, square metres, cubic metres",
        })  # fmt: skip
        save_cross_sections(tmp / "cross_sections.png", posed=fit.stump, tpose=fit.stump_tpose)
        save_report(tmp / "report.png", fit=fit, image_rgb=image_rgb, mask=mask)
        _write_json(tmp / "metrics.json", fit.metrics | {"seconds": fit.seconds,
                                                         "stage_seconds": dataclasses.asdict(fit.stage_seconds)})  # fmt: skip
    return final
