"""Scores of one prediction against the ground truth (the benchmark's metrics).

2D, the paper's protocol (Table 1):

- ``kp_body_px`` / ``kp_res_limb_px`` / ``kp_intact_px``: mean keypoint error in pixels over all
  labelled keypoints / the residual endpoints / the COCO keypoints, against the *clean* truth;
- ``mask_iou``: the predicted mesh's hard silhouette against the person mask;
- ``stump_iou``: the same inside a square window around the true residual limb's projection.

3D, per residual limb:

- ``endpoint_err_mm``: the predicted limb's end (its vertex farthest along the fitted axis
  J_a -> J_t) against the true stump tip, after moving the fitted anchor joint J_a onto the true
  one (anchor alignment takes out the single-view depth/translation ambiguity, ~10-20 cm, that
  would otherwise swamp the limb);
- ``length_err_mm``: |predicted - true| residual length (anchor to end, along each own axis);
  ``length_err_pct``: the same as a percentage of the intact segment |J_t - J_a|
  (|fraction_pred - fraction_true| x 100; free of the body's scale);
- ``volume_err_pct``: |predicted - true| / true volume distal of the plane through J_a, percent;
- ``stump_dist_mean_mm`` / ``stump_dist_p95_mm``: symmetric surface distance between the
  predicted and true residual-limb surfaces (anchor-aligned; every vertex of each surface to the
  other surface), mean and 95th percentile.

Per person: ``pa_v2v_mm``: mean vertex error of the fitted intact body against the true one, over
the vertices outside every residual segment, after a similarity Procrustes alignment (needs the
same body model as the truth; NaN otherwise).

Every method is measured by these functions from its mesh and limb vertices, so methods are
compared on equal terms. Frames: camera frame (OpenCV, metres); pixels ``_px``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import LIMB_BY_NAME, LimbStatus
from resihmr_dr.eval.groundtruth import GroundTruth
from resihmr_dr.eval.metrics import keypoint_mpjpe_px, mask_iou
from resihmr_dr.eval.prediction import Prediction, limb_axis_joints
from resihmr_dr.stump.geometry import closed_volume_distal

__all__ = [
    "LIMB_METRICS",
    "PERSON_METRICS",
    "apply_similarity",
    "procrustes",
    "score_prediction",
    "surface_distances",
    "symmetric_surface_distance",
]

# (column, label, higher is better)
PERSON_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("kp_body_px", "2D body (px)", False),
    ("kp_res_limb_px", "2D res-limb (px)", False),
    ("kp_intact_px", "2D intact (px)", False),
    ("mask_iou", "mask IoU", True),
    ("pa_v2v_mm", "PA body vertex error (mm)", False),
)
LIMB_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("stump_iou", "stump-region IoU", True),
    ("endpoint_err_mm", "endpoint error (mm)", False),
    ("length_err_mm", "residual length error (mm)", False),
    ("length_err_pct", "residual length error (% segment)", False),
    ("volume_err_pct", "stump volume error (%)", False),
    ("stump_dist_mean_mm", "stump surface dist. mean (mm)", False),
    ("stump_dist_p95_mm", "stump surface dist. p95 (mm)", False),
)


def procrustes(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (scale, R (3, 3), t (3,)) minimising sum |s R src_i + t - dst_i|^2 (Umeyama).

    src, dst: (N, 3) corresponding points, N >= 3, not all collinear.
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValueError(f"procrustes needs two (N >= 3, 3) arrays of the same shape, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    u, sing, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ d @ vt
    var = float((a * a).sum())
    scale = float((sing * np.diag(d)).sum() / var) if var > 0 else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


def apply_similarity(points: np.ndarray, scale: float, rot: np.ndarray, transl: np.ndarray) -> np.ndarray:
    """(N, 3) points mapped by ``scale * rot @ p + transl``."""
    return scale * np.asarray(points, dtype=np.float64) @ rot.T + transl


def surface_distances(points: np.ndarray, verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N,) distance of each point (N, 3) to the triangle surface (verts (V, 3), faces (F, 3))."""
    import trimesh

    if len(points) == 0:
        return np.zeros(0)
    if len(faces) == 0:
        return np.full(len(points), math.inf)
    mesh = trimesh.Trimesh(np.asarray(verts, dtype=np.float64), np.asarray(faces, dtype=np.int64), process=False)
    _, dist, _ = trimesh.proximity.closest_point(mesh, np.asarray(points, dtype=np.float64))
    return np.asarray(dist, dtype=np.float64)


def symmetric_surface_distance(
    verts_a: np.ndarray, faces_a: np.ndarray, verts_b: np.ndarray, faces_b: np.ndarray
) -> np.ndarray:
    """Distances of every vertex used by surface A to surface B, then of B's to A, concatenated."""
    used_a = np.unique(faces_a) if len(faces_a) else np.zeros(0, dtype=np.int64)
    used_b = np.unique(faces_b) if len(faces_b) else np.zeros(0, dtype=np.int64)
    return np.concatenate([
        surface_distances(verts_a[used_a], verts_b, faces_b),
        surface_distances(verts_b[used_b], verts_a, faces_a),
    ])  # fmt: skip


def score_prediction(pred: Prediction, gt: GroundTruth, *, mask: np.ndarray, camera: PinholeCamera) -> list[dict[str, Any]]:
    """One row per residual limb of the truth: the person's 2D and body scores (the same on
    every row of the person) and that limb's scores (module docstring); NaN where the
    prediction has no such limb. mask: (H, W) bool person mask; camera: the image's camera."""
    from resihmr_dr.fit.refine import stump_rois
    from resihmr_dr.render.zbuffer import rasterize

    mask = np.asarray(mask, dtype=bool)
    kp = keypoint_mpjpe_px(pred_px=pred.keypoints_px, gt_px=gt.keypoints_px)
    rendered = rasterize(verts_cam=torch.as_tensor(pred.verts_cam), faces=torch.as_tensor(pred.faces), camera=camera)
    pred_mask = rendered.mask.numpy()
    person = {
        "kp_body_px": kp["body"], "kp_res_limb_px": kp["res_limb"], "kp_intact_px": kp["intact"],
        "mask_iou": mask_iou(pred_mask, mask), "pa_v2v_mm": _pa_v2v_mm(pred, gt),
    }  # fmt: skip
    rows = []
    for limb_gt in gt.limbs:
        region_gt = gt.limb_region(limb_gt)
        (roi,) = stump_rois(verts_cam=gt.verts, limb_masks=[region_gt], camera=camera, margin=0.35)
        x0, y0, x1, y1 = roi
        row = {"limb": limb_gt["limb"], "type": limb_gt["type"], "status": limb_gt["status"],
               "shape": limb_gt["shape"]["name"], **person,
               "stump_iou": mask_iou(pred_mask[y0:y1, x0:x1], mask[y0:y1, x0:x1])}  # fmt: skip
        row.update(_limb_scores(pred, gt, limb_gt, region_gt))
        rows.append(row)
    return rows


def _limb_scores(pred: Prediction, gt: GroundTruth, limb_gt: dict, region_gt: np.ndarray) -> dict[str, float]:
    keys = ("endpoint_err_mm", "length_err_mm", "length_err_pct", "volume_err_pct", "stump_dist_mean_mm",
            "stump_dist_p95_mm")  # fmt: skip
    region = pred.limb_masks.get(limb_gt["limb"])
    if region is None or not region.any():
        return dict.fromkeys(keys, math.nan)
    anchor, target = limb_axis_joints(pred.joints_cam, LIMB_BY_NAME[limb_gt["limb"]], LimbStatus(limb_gt["status"]))
    segment = float(np.linalg.norm(target - anchor))
    axis = (target - anchor) / segment
    verts = pred.verts_cam[region]
    tip = verts[np.argmax((verts - anchor) @ axis)]
    length = float((tip - anchor) @ axis)
    faces = pred.faces[region[pred.faces].all(axis=1)]
    volume = closed_volume_distal(pred.verts_cam, faces, anchor, axis)
    true = limb_gt["measurements"]
    shift = np.asarray(limb_gt["anchor_cam"], dtype=np.float64) - anchor
    dist = symmetric_surface_distance(pred.verts_cam + shift, faces, gt.verts, gt.faces[region_gt[gt.faces].all(axis=1)])
    return {
        "endpoint_err_mm": float(np.linalg.norm(tip + shift - np.asarray(limb_gt["endpoint_cam"]))) * 1000,
        "length_err_mm": abs(length - true["length_m"]) * 1000,
        "length_err_pct": abs(length / segment - true["length_fraction"]) * 100,
        "volume_err_pct": abs(volume - true["volume_m3"]) / true["volume_m3"] * 100,
        "stump_dist_mean_mm": float(dist.mean()) * 1000,
        "stump_dist_p95_mm": float(np.percentile(dist, 95)) * 1000,
    }


def _pa_v2v_mm(pred: Prediction, gt: GroundTruth) -> float:
    """Procrustes-aligned mean vertex error (mm) of the intact body (module docstring)."""
    if pred.body_verts_cam is None or pred.body_name != gt.body_model:
        return math.nan
    keep = gt.intact_vertices
    source = gt.source_vertex[keep]
    if not len(source) or source.max() >= len(pred.body_verts_cam):
        return math.nan
    src, dst = pred.body_verts_cam[source], gt.verts[keep]
    aligned = apply_similarity(src, *procrustes(src, dst))
    return float(np.linalg.norm(aligned - dst, axis=1).mean()) * 1000
