"""Baselines of the benchmark, built from the same intact-body fit as our method.

- ``intact``: the intact-body fit itself (the missing limb hallucinated). Its residual limb is
  everything distal of the anchor joint J_a; its residual endpoint keypoint is the midpoint of
  the segment (the paper's proxy for methods without residual endpoints).
- ``joint``: joint-level amputation (AJAHR-style): the residual limb ends at the joint nearest to
  its endpoint, i.e. RAFO's λ rounded to the anchor joint (``lam_min``, a sliver of segment)
  or the next joint (λ = 1), cut and capped with the same convex cap.
- ``resihmr``: RAFO + the convex cap, no silhouette refinement (the paper's method).
- ``ours``: RAFO + cap + silhouette refinement (read from the ``fit`` output, or refitted with
  other settings for an ablation).

Sharing one intact fit isolates what each method does with the residual limb. Frames: camera
frame (OpenCV, metres); pixels ``_px``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from resihmr_dr.body.base import SEGMENT_INDEX, BodyModel, BodyOutput, BodyParams, limb_segment_joints
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import Limb, LimbStatus
from resihmr_dr.data.records import PersonAnnotation
from resihmr_dr.eval.prediction import Prediction, prediction_from_fit
from resihmr_dr.fit.measures import predicted_keypoints_px
from resihmr_dr.fit.pipeline import PipelineConfig, fit_person
from resihmr_dr.stump.cap import CapConfig, cut_and_cap_to_tips, cut_spec

__all__ = ["METHODS", "METHOD_LABELS", "intact_baseline", "joint_collapse_baseline", "joint_lambda", "refit"]

METHODS: tuple[str, ...] = ("intact", "joint", "resihmr", "ours")
METHOD_LABELS: dict[str, str] = {
    "intact": "intact-body fit (hallucinated limb)",
    "joint": "joint-level collapse (AJAHR-style)",
    "resihmr": "RAFO + convex cap (ResiHMR)",
    "ours": "RAFO + cap + silhouette refinement (ours)",
}


def intact_baseline(
    *,
    body: BodyModel,
    posed: BodyOutput,
    camera: PinholeCamera,
    residual_limbs: Sequence[tuple[Limb, LimbStatus]],
    ann_id: int,
    seconds: float,
) -> Prediction:
    """The intact-body fit scored as a prediction (module docstring). posed: the fitted body (B = 1)."""
    verts_cam, joints_cam, coco_cam = (t[0].double().cpu().numpy() for t in (posed.verts, posed.joints, posed.coco_kp))
    labels = body.vertex_segment.cpu().numpy()
    masks, endpoints = {}, {}
    for limb, status in residual_limbs:
        removed = (limb.residual_segment(status), *limb.distal_segments(status))
        masks[limb.name] = np.isin(labels, [SEGMENT_INDEX[name] for name in removed])
        anchor, target = limb_segment_joints(joints_cam, limb, status)
        endpoints[limb.endpoint_index(status)] = 0.5 * (anchor + target)
    return Prediction(
        method="intact",
        ann_id=ann_id,
        verts_cam=verts_cam,
        faces=body.faces.cpu().numpy().astype(np.int64),
        limb_masks=masks,
        joints_cam=joints_cam,
        keypoints_px=predicted_keypoints_px(camera=camera, coco_cam=coco_cam, endpoints_cam=endpoints),
        body_verts_cam=verts_cam,
        body_name=body.name,
        seconds=seconds,
    )


def joint_lambda(lam: float, *, lam_min: float) -> float:
    """λ snapped to the nearer joint of the segment: ``lam_min`` (the anchor) below 0.5, else 1."""
    return lam_min if lam < 0.5 else 1.0


def joint_collapse_baseline(
    *,
    body: BodyModel,
    posed: BodyOutput,
    camera: PinholeCamera,
    residual_limbs: Sequence[tuple[Limb, LimbStatus, float]],
    ann_id: int,
    seconds: float,
    lam_min: float = 0.05,
    cap: CapConfig = CapConfig(),
) -> Prediction:
    """Joint-level amputation (module docstring). residual_limbs: (limb, status, λ on the fitted
    segment); posed: the fitted body (B = 1); ``seconds``: the intact fit's, to which this
    baseline's own time is added. Raises CutError where the cut fails."""
    start = time.perf_counter()
    verts_cam, joints_cam, coco_cam = (t[0].double().cpu().numpy() for t in (posed.verts, posed.joints, posed.coco_kp))
    specs = [
        cut_spec(joints=joints_cam, limb=limb, status=status, lam=joint_lambda(lam, lam_min=lam_min))
        for limb, status, lam in residual_limbs
    ]
    residual = cut_and_cap_to_tips(
        verts=verts_cam,
        faces=body.faces.cpu().numpy(),
        vertex_segment=body.vertex_segment.cpu().numpy(),
        tips=specs,
        config=cap,
    )
    endpoints = {spec.limb.endpoint_index(spec.status): spec.endpoint for spec in specs}
    return Prediction(
        method="joint",
        ann_id=ann_id,
        verts_cam=np.asarray(residual.verts, dtype=np.float64),
        faces=np.asarray(residual.faces, dtype=np.int64),
        limb_masks={spec.limb.name: m for spec, m in zip(specs, residual.limb_masks, strict=True)},
        joints_cam=joints_cam,
        keypoints_px=predicted_keypoints_px(camera=camera, coco_cam=coco_cam, endpoints_cam=endpoints),
        body_verts_cam=verts_cam,
        body_name=body.name,
        seconds=seconds + time.perf_counter() - start,
    )


def refit(
    *,
    body: BodyModel,
    person: PersonAnnotation,
    camera: PinholeCamera,
    mask: np.ndarray | None,
    params: BodyParams,
    config: PipelineConfig,
    method: str,
    intact_seconds: float,
    refine: bool,
) -> Prediction:
    """The pipeline run again from a finished intact fit (``params``, used as is): RAFO, cut and
    cap, and the silhouette refinement when ``refine`` (with ``config.refine``'s settings).
    ``seconds`` of the prediction: ``intact_seconds`` plus this run."""
    config = dataclasses.replace(config, intact=dataclasses.replace(config.intact, refine_iterations=0))  # used as is
    if not refine:
        config = dataclasses.replace(config, refine=dataclasses.replace(config.refine, iterations=0))
    fit = fit_person(body=body, person=person, camera=camera, mask=mask, init=params, config=config)
    return prediction_from_fit(fit, body=body, method=method, seconds=intact_seconds + fit.seconds)
