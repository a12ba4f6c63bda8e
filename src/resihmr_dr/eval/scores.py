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
  would otherwise swamp the limb), so it measures the limb's own length and direction from its
  anchor, not where the body stands;
- ``endpoint_abs_err_mm``: the same end against the true tip with no alignment, in the camera
  frame: it adds the fitted body's placement (the depth a single view cannot pin down), and is
  what several calibrated views can improve;
- ``length_err_mm``: |predicted - true| residual length (anchor to end, along each own axis);
  ``length_err_pct``: the same as a percentage of the intact segment |J_t - J_a|
  (|fraction_pred - fraction_true| x 100; free of the body's scale);
- ``volume_err_pct``: |predicted - true| / true volume distal of the plane through J_a, percent;
- ``stump_dist_mean_mm`` / ``stump_dist_p95_mm``: symmetric surface distance between the
  predicted and true residual-limb surfaces (anchor-aligned; every vertex of each surface to the
  other surface), mean and 95th percentile.

3D, per residual limb, the stump's shape apart from its pose (each limb in its own frame):

- ``shape_local_mean_mm``: symmetric mean surface distance between the predicted and true
  residual-limb surfaces after moving J_a onto the true anchor and rotating the predicted limb
  about it by the smallest rotation that turns its anchor -> tip direction onto the true
  anchor -> tip one (Rodrigues); each surface's area-sampled points (``SHAPE_SAMPLES``, seeded,
  :func:`sample_surface_points`) to the other surface, both directions pooled;
- ``shape_icp_mean_mm``: the same after a rigid ICP (no scale) of the predicted limb's samples
  (every ``ICP_EVERY``-th) onto the true surface, started from that alignment
  (:func:`icp_rigid`; what scanner validation studies report);
- ``perimeter_err_pct``: cross-section perimeters of each limb at 0.1, 0.3, 0.5, 0.7 and 0.9
  (``PROFILE_STATIONS``) of its own residual length along its own axis (predicted: J_a,
  J_a -> J_t, its tip; true: anchor, anchor -> target, endpoint), measured as the stump
  geometry is (:func:`perimeter_profile`); mean over stations of |p_pred - p_true| / p_true x 100,
  stations where either section is empty skipped (NaN if all are);
- ``volume_sf_err_pct``: scale-free volume, |V_pred / L_pred^3 - V_true / L_true^3| /
  (V_true / L_true^3) x 100, with V the volume distal of the anchor plane (as
  ``volume_err_pct``) and L the segment length |J_t - J_a| (fitted / true);
- ``tip_reproj_px``: pixels between the predicted tip projected by the camera (camera frame, no
  alignment) and the limb's clean endpoint keypoint; NaN where that keypoint is unlabelled.

The residual-limb surfaces are the faces with all three vertices in the limb's vertex mask
(predicted: ``limb_masks``; true: :meth:`GroundTruth.limb_region`), as for ``stump_dist_*``.

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

from resihmr_dr.body.base import limb_segment_joints
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.eval.closest_points import SurfaceQuery
from resihmr_dr.eval.groundtruth import GroundTruth
from resihmr_dr.eval.limb_truth import LimbTruth
from resihmr_dr.eval.prediction import Prediction
from resihmr_dr.fit.measures import keypoint_mpjpe_px, mask_iou
from resihmr_dr.stump.cut import CutError
from resihmr_dr.stump.geometry import closed_volume_distal, stump_geometry

__all__ = [
    "LIMB_METRICS",
    "PERSON_METRICS",
    "PROFILE_STATIONS",
    "SHAPE_SAMPLES",
    "apply_similarity",
    "icp_rigid",
    "perimeter_profile",
    "procrustes",
    "rotation_between",
    "rotation_vector_matrix",
    "sample_surface_points",
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
    ("endpoint_abs_err_mm", "endpoint error, absolute (mm)", False),
    ("length_err_mm", "residual length error (mm)", False),
    ("length_err_pct", "residual length error (% segment)", False),
    ("volume_err_pct", "stump volume error (%)", False),
    ("stump_dist_mean_mm", "stump surface dist. mean (mm)", False),
    ("stump_dist_p95_mm", "stump surface dist. p95 (mm)", False),
    ("shape_local_mean_mm", "shape dist., axis-aligned (mm)", False),
    ("shape_icp_mean_mm", "shape dist., ICP (mm)", False),
    ("perimeter_err_pct", "perimeter profile error (%)", False),
    ("volume_sf_err_pct", "scale-free volume error (%)", False),
    ("tip_reproj_px", "tip reprojection (px)", False),
)
SHAPE_SAMPLES = 2000  # area-sampled points per residual-limb surface (shape_*_mean_mm)
SHAPE_SEED = 0  # their generator's seed: the scores are deterministic
ICP_EVERY = 4  # shape_icp_mean_mm's ICP fits every 4th sample
PROFILE_STATIONS = 5  # perimeter stations at (i + 1/2) / 5 = 0.1, 0.3, ..., 0.9 of the residual length


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
    return np.concatenate(
        [
            surface_distances(verts_a[used_a], verts_b, faces_b),
            surface_distances(verts_b[used_b], verts_a, faces_a),
        ]
    )


# --------------------------------------------------------------------------- pose-free shape
def rotation_between(from_dir: np.ndarray, to_dir: np.ndarray) -> np.ndarray:
    """(3, 3) the smallest rotation turning the direction ``from_dir`` (3,) onto ``to_dir`` (3,)
    (Rodrigues: about their cross product; about any perpendicular axis, by pi, when opposite)."""
    a = np.asarray(from_dir, dtype=np.float64)
    b = np.asarray(to_dir, dtype=np.float64)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    cross, cos = np.cross(a, b), float(a @ b)
    if cos < -1.0 + 1e-12:  # opposite: a half turn about an axis perpendicular to a
        perp = np.cross(a, np.eye(3)[int(np.argmin(np.abs(a)))])
        perp /= np.linalg.norm(perp)
        return 2.0 * np.outer(perp, perp) - np.eye(3)
    k = np.array([[0.0, -cross[2], cross[1]], [cross[2], 0.0, -cross[0]], [-cross[1], cross[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + cos)


def sample_surface_points(verts: np.ndarray, faces: np.ndarray, count: int, seed: int) -> np.ndarray:
    """(count, 3) points spread over a triangle surface (verts (V, 3), faces (F, 3)) by area.

    Stratified: the k-th point falls in the k-th of ``count`` equal slices of the cumulative face
    area, at a uniform random place of its triangle; the same seed gives the same points.
    (0, 3) when the surface has no area.
    """
    tri = np.asarray(verts, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]  # (F, 3, 3)
    if not len(tri) or count < 1:
        return np.zeros((0, 3))
    cum = np.cumsum(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1))
    if not cum[-1] > 0:
        return np.zeros((0, 3))
    rng = np.random.default_rng(seed)
    slices = (np.arange(count) + rng.random(count)) / count * cum[-1]
    face = np.minimum(np.searchsorted(cum, slices, side="right"), len(tri) - 1)
    root, r2 = np.sqrt(rng.random(count)), rng.random(count)
    weights = np.stack([1.0 - root, root * (1.0 - r2), root * r2], axis=1)  # uniform barycentric
    return np.einsum("nk,nkd->nd", weights, tri[face])


def icp_rigid(
    source: np.ndarray,
    surface: SurfaceQuery,
    *,
    iterations: int = 30,
    tolerance: float = 1e-7,
    stall: float = 1e-3,
    matches: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rigid (R (3, 3), t (3,)) moving the points ``source`` (N >= 3, 3) onto ``surface``, from
    the identity, and the (N,) distances of the moved points to the surface.

    ICP with exact closest surface points. Each step is the point-to-plane least-squares motion
    (linearised; least-norm where the surface leaves it (nearly) free, e.g. the twist of a round
    limb); where that makes the mean squared distance worse, the point-to-point one (Kabsch)
    from the same matches instead, which cannot. Stops when a step would move no point more than
    ``tolerance`` (m), when the mean squared distance improves by less than ``stall`` of itself,
    or after ``iterations`` evaluations; returns the best transform seen. Deterministic.
    matches: ``surface.closest(source)`` if already known.
    """
    source = np.asarray(source, dtype=np.float64)
    radius = float(np.linalg.norm(source - source.mean(axis=0), axis=1).max())
    rot, transl = np.eye(3), np.zeros(3)
    best = (math.inf, rot, transl, np.full(len(source), math.inf))
    fallback = None  # the point-to-point step from the best, while its point-to-plane step is tried
    for i in range(iterations):
        moved = source @ rot.T + transl
        target, dist, normal = matches if i == 0 and matches is not None else surface.closest(moved)
        mse = float(dist @ dist) / len(dist)
        if not mse < best[0] * (1.0 - stall):  # not (much) better than the best
            if mse < best[0]:
                best = (mse, rot, transl, dist)
            elif fallback is not None:
                (rot, transl), fallback = fallback, None
                continue
            break
        best = (mse, rot, transl, dist)
        centre = moved.mean(axis=0)
        # (N, 6) rows: d/d(rotation vector about the centre, translation) of each point's plane distance.
        system = np.concatenate([np.cross(moved - centre, normal), normal], axis=1)
        step = np.linalg.lstsq(system, np.einsum("ij,ij->i", target - moved, normal), rcond=1e-6)[0]
        if np.linalg.norm(step[:3]) * radius + np.linalg.norm(step[3:]) < tolerance:
            break  # converged: the step would not move any point measurably
        step_rot = rotation_vector_matrix(step[:3])
        fallback = _kabsch(source, target)
        rot, transl = step_rot @ rot, step_rot @ (transl - centre) + centre + step[3:]
    return best[1], best[2], best[3]


def _kabsch(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rigid (R (3, 3), t (3,)) minimising sum |R src_i + t - dst_i|^2 over (N, 3) pairs, no reflection."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    u, _, vt = np.linalg.svd((dst - mu_d).T @ (src - mu_s))
    rot = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0]) @ vt
    return rot, mu_d - rot @ mu_s


def rotation_vector_matrix(rotvec: np.ndarray) -> np.ndarray:
    """(3, 3) the rotation by |rotvec| radians about rotvec (3,) (Rodrigues)."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-300:
        return np.eye(3)
    x, y, z = rotvec / angle
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * k @ k


def perimeter_profile(
    verts: np.ndarray,
    faces: np.ndarray,
    mask: np.ndarray,
    anchor: np.ndarray,
    target: np.ndarray,
    tip: np.ndarray,
    stations: int = PROFILE_STATIONS,
) -> np.ndarray:
    """(stations,) cross-section perimeters (m) of a residual limb at ``(i + 1/2) / stations`` of
    its residual length from the anchor along its axis, measured as
    :func:`resihmr_dr.stump.geometry.stump_geometry` does (the residual faces' section; where the
    limb's label border leaves it open, the whole mesh's loop around the axis if it stays within
    the limb's girth). NaN where the plane misses the surface; all NaN when the tip does not lie
    beyond the anchor.

    verts: (V, 3); faces: (F, 3) the whole mesh; mask: (V,) bool the limb's vertices; anchor,
    target, tip: (3,) J_a, J_t (the axis) and the limb's end.
    """
    try:
        geometry = stump_geometry(
            verts=verts, faces=faces, residual_mask=mask, anchor=anchor, target=target, tip=tip, num_stations=stations
        )
    except CutError:
        return np.full(stations, math.nan)
    perimeters = np.asarray(geometry.perimeter_m, dtype=np.float64)
    return np.where(perimeters > 0, perimeters, math.nan)


def score_prediction(
    pred: Prediction, gt: GroundTruth, *, mask: np.ndarray, camera: PinholeCamera
) -> list[dict[str, Any]]:
    """One row per residual limb of the truth: the person's 2D and body scores (the same on
    every row of the person) and that limb's scores (module docstring); NaN where the
    prediction has no such limb. mask: (H, W) bool person mask; camera: the image's camera."""
    from resihmr_dr.fit.refine_terms import stump_rois
    from resihmr_dr.render.zbuffer import rasterize

    mask = np.asarray(mask, dtype=bool)
    kp = keypoint_mpjpe_px(pred_px=pred.keypoints_px, gt_px=gt.keypoints_px)
    rendered = rasterize(verts_cam=torch.as_tensor(pred.verts_cam), faces=torch.as_tensor(pred.faces), camera=camera)
    pred_mask = rendered.mask.numpy()
    person = {
        "kp_body_px": kp["body"],
        "kp_res_limb_px": kp["res_limb"],
        "kp_intact_px": kp["intact"],
        "mask_iou": mask_iou(pred_mask, mask),
        "pa_v2v_mm": _pa_v2v_mm(pred, gt),
    }
    rows = []
    for limb_gt in gt.limbs:
        region_gt = gt.limb_region(limb_gt)
        (roi,) = stump_rois(verts_cam=gt.verts, limb_masks=[region_gt], camera=camera, margin=0.35)
        x0, y0, x1, y1 = roi
        row = {
            "limb": limb_gt.limb_name,
            "type": limb_gt.type_name,
            "status": limb_gt.status.value,
            "shape": limb_gt.shape.name,
            **person,
            "stump_iou": mask_iou(pred_mask[y0:y1, x0:x1], mask[y0:y1, x0:x1]),
        }
        row.update(_limb_scores(pred, gt, limb_gt, region_gt, camera))
        rows.append(row)
    return rows


def _limb_scores(
    pred: Prediction, gt: GroundTruth, limb_gt: LimbTruth, region_gt: np.ndarray, camera: PinholeCamera
) -> dict[str, float]:
    region = pred.limb_masks.get(limb_gt.limb_name)
    if region is None or not region.any():  # no such limb: all NaN (stump_iou is score_prediction's)
        return {key: math.nan for key, _, _ in LIMB_METRICS if key != "stump_iou"}
    limb, status = limb_gt.limb, limb_gt.status
    anchor, target = limb_segment_joints(pred.joints_cam, limb, status)
    segment = float(np.linalg.norm(target - anchor))
    axis = (target - anchor) / segment
    verts = pred.verts_cam[region]
    tip = verts[np.argmax((verts - anchor) @ axis)]
    length = float((tip - anchor) @ axis)
    faces = pred.faces[region[pred.faces].all(axis=1)]
    volume = closed_volume_distal(pred.verts_cam, faces, anchor, axis)
    true = limb_gt.measurements.geometry
    anchor_gt, target_gt, tip_gt = limb_gt.anchor_cam, limb_gt.target_cam, limb_gt.endpoint_cam
    shift = anchor_gt - anchor
    faces_gt = gt.faces[region_gt[gt.faces].all(axis=1)]
    dist = symmetric_surface_distance(pred.verts_cam + shift, faces, gt.verts, faces_gt)
    scores = {
        "endpoint_err_mm": float(np.linalg.norm(tip + shift - tip_gt)) * 1000,
        "endpoint_abs_err_mm": float(np.linalg.norm(tip - tip_gt)) * 1000,
        "length_err_mm": abs(length - true.length_m) * 1000,
        "length_err_pct": abs(length / segment - true.length_fraction) * 100,
        "volume_err_pct": abs(volume - true.volume_m3) / true.volume_m3 * 100,
        "stump_dist_mean_mm": float(dist.mean()) * 1000,
        "stump_dist_p95_mm": float(np.percentile(dist, 95)) * 1000,
    }
    # The stump's shape apart from its pose (module docstring).
    scores.update(_pose_free_distances(pred.verts_cam, faces, anchor, tip, gt.verts, faces_gt, anchor_gt, tip_gt))
    p_pred = perimeter_profile(pred.verts_cam, pred.faces, region, anchor, target, tip)
    p_true = perimeter_profile(gt.verts, gt.faces, region_gt, anchor_gt, target_gt, tip_gt)
    both = np.isfinite(p_pred) & np.isfinite(p_true)  # stations where neither section is empty
    errors = np.abs(p_pred - p_true)[both] / p_true[both]
    scores["perimeter_err_pct"] = float(errors.mean()) * 100 if len(errors) else math.nan
    ratio, ratio_gt = volume / segment**3, true.volume_m3 / float(np.linalg.norm(target_gt - anchor_gt)) ** 3
    scores["volume_sf_err_pct"] = abs(ratio - ratio_gt) / ratio_gt * 100
    kp = gt.keypoints_px[limb.endpoint_index(status)]
    tip_px = camera.project(torch.as_tensor(tip, dtype=torch.float64)).numpy()
    scores["tip_reproj_px"] = float(np.linalg.norm(tip_px - kp[:2])) if kp[2] > 0 else math.nan
    return scores


def _pose_free_distances(
    verts: np.ndarray,
    faces: np.ndarray,
    anchor: np.ndarray,
    tip: np.ndarray,
    verts_gt: np.ndarray,
    faces_gt: np.ndarray,
    anchor_gt: np.ndarray,
    tip_gt: np.ndarray,
) -> dict[str, float]:
    """``shape_local_mean_mm`` and ``shape_icp_mean_mm`` (module docstring) of the predicted limb
    surface (verts (V, 3), its faces (F, 3); anchor, tip (3,)) against the true one."""
    samples = sample_surface_points(verts, faces, SHAPE_SAMPLES, SHAPE_SEED)
    samples_gt = sample_surface_points(verts_gt, faces_gt, SHAPE_SAMPLES, SHAPE_SEED)
    if len(samples) < 3 or len(samples_gt) < 3 or not (np.any(tip != anchor) and np.any(tip_gt != anchor_gt)):
        return {"shape_local_mean_mm": math.nan, "shape_icp_mean_mm": math.nan}
    surface, surface_gt = SurfaceQuery.build(verts, faces), SurfaceQuery.build(verts_gt, faces_gt)
    # x -> rot x + transl: the anchor onto the true one, then the anchor -> tip direction onto the true one.
    rot = rotation_between(tip - anchor, tip_gt - anchor_gt)
    transl = anchor_gt - rot @ anchor

    def mean_mm(rot: np.ndarray, transl: np.ndarray, to_true: np.ndarray | None = None) -> float:
        """Symmetric mean distance (mm) with the predicted limb moved by (rot, transl)."""
        if to_true is None:
            to_true = surface_gt.closest(samples @ rot.T + transl)[1]
        to_pred = surface.closest((samples_gt - transl) @ rot)[1]  # the true samples moved back instead
        return float(np.concatenate([to_true, to_pred]).mean()) * 1000

    local = samples @ rot.T + transl
    matches = surface_gt.closest(local)
    out = {"shape_local_mean_mm": mean_mm(rot, transl, matches[1])}
    # ICP on every ICP_EVERY-th sample (plenty for 6 degrees of freedom); the distance on all of them.
    icp_rot, icp_transl, _ = icp_rigid(local[::ICP_EVERY], surface_gt, matches=tuple(m[::ICP_EVERY] for m in matches))
    if np.array_equal(icp_rot, np.eye(3)) and not icp_transl.any():  # ICP found nothing nearer
        out["shape_icp_mean_mm"] = out["shape_local_mean_mm"]
    else:
        out["shape_icp_mean_mm"] = mean_mm(icp_rot @ rot, icp_rot @ transl + icp_transl)
    return out


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
