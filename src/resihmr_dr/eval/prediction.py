"""One method's prediction for one person, in the form the evaluator scores.

Every method (our fits read back from ``resihmr-dr fit``'s folders, the in-memory fits of the
pipeline, and the baselines of :mod:`resihmr_dr.eval.baselines`) is turned into a
:class:`Prediction`: the predicted mesh with each residual limb's vertices marked, the fitted
body's joints and intact vertices, and the 25 predicted LDpose keypoints. The evaluator
(:mod:`resihmr_dr.eval.scores`) measures every method the same way from these, so no method is
scored by its own measurement code.

Frames: camera frame (OpenCV x right, y down, z forward, metres); pixels ``_px``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from resihmr_dr.body.base import BodyModel, BodyOutput, BodyParams, limb_segment_joints
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import LIMB_BY_NAME, Limb, LimbStatus
from resihmr_dr.eval.closest_points import closest_on_segments
from resihmr_dr.fit.measures import predicted_keypoints_px
from resihmr_dr.results import FittedPerson, ResultsError, read_person

__all__ = [
    "FittedFolder",
    "Prediction",
    "PredictionError",
    "find_person_folder",
    "pose_body",
    "prediction_from_fit",
    "prediction_from_folder",
    "read_fitted_folder",
    "split_residual_mask",
]


class PredictionError(ResultsError):
    """A prediction folder or file is missing or malformed (the message names the file)."""


@dataclass(frozen=True)
class Prediction:
    """One method's result for one person.

    verts_cam: (V, 3) predicted mesh; faces: (F, 3); limb_masks: limb name (``left_leg``, ...)
    -> (V,) bool, the vertices of that residual limb (its residual segment and cap, or for a
    method that keeps the limb, everything distal of the anchor joint); joints_cam:
    (len(JOINT_NAMES), 3) the fitted body's joints; keypoints_px: (25, 2) predicted LDpose
    keypoints (0 where a method predicts none); body_verts_cam: (Vb, 3) the fitted intact body
    model's vertices (for the Procrustes-aligned vertex error), None if unknown; body_name: the
    body model; seconds: wall time of the method for this person.
    """

    method: str
    ann_id: int
    verts_cam: np.ndarray
    faces: np.ndarray
    limb_masks: Mapping[str, np.ndarray]
    joints_cam: np.ndarray
    keypoints_px: np.ndarray
    body_verts_cam: np.ndarray | None
    body_name: str
    seconds: float


def pose_body(body: BodyModel, params: BodyParams) -> BodyOutput:
    """Run the body model once (no gradients) on B = 1 parameters."""
    with torch.no_grad():
        return body(params)


def split_residual_mask(
    verts: np.ndarray, residual_mask: np.ndarray, axes: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Split the union m_r (V,) between residual limbs: each vertex goes to the limb whose
    segment J_a-J_t (``axes``: limb name -> ((3,), (3,))) is nearest."""
    names = list(axes)
    out = {name: np.zeros(len(verts), dtype=bool) for name in names}
    idx = np.flatnonzero(residual_mask)
    if not names or not len(idx):
        return out
    points = verts[idx]
    dists = np.stack(
        [np.linalg.norm(points - closest_on_segments(points, *axes[name]), axis=1) for name in names], axis=1
    )
    owner = dists.argmin(axis=1)
    for i, name in enumerate(names):
        out[name][idx[owner == i]] = True
    return out


def prediction_from_fit(fit, *, body: BodyModel, method: str, seconds: float | None = None) -> Prediction:
    """The :class:`Prediction` of a pipeline ``PersonFit`` (``resihmr_dr.fit.pipeline``)."""
    posed = pose_body(body, fit.params)
    joints_cam = posed.joints[0].double().cpu().numpy()
    limbs = [(LIMB_BY_NAME[r.limb_name], r.status) for r in fit.rafo]
    axes = {limb.name: limb_segment_joints(joints_cam, limb, status) for limb, status in limbs}
    return Prediction(
        method=method,
        ann_id=fit.ann_id,
        verts_cam=fit.verts_cam,
        faces=fit.faces,
        limb_masks=split_residual_mask(fit.verts_cam, fit.residual_mask, axes),
        joints_cam=joints_cam,
        keypoints_px=np.asarray(fit.pred_keypoints_px, dtype=np.float64),
        body_verts_cam=posed.verts[0].double().cpu().numpy(),
        body_name=fit.body_name,
        seconds=fit.seconds if seconds is None else seconds,
    )


@dataclass(frozen=True)
class FittedFolder:
    """What ``resihmr-dr fit`` wrote for one person, read back.

    params: the fitted Θ (B = 1); intact_params: the intact-body fit it started from (the
    baselines' input); camera; residual limbs as (limb, status, lambda_intact (RAFO's λ on the
    intact fit's segment), endpoint_cam (3,) the mesh's tip); verts_cam (V, 3), faces (F, 3),
    residual_mask (V,) of ``mesh.ply``;
    seconds: the whole pipeline; intact_seconds: the intact fit alone; quality_ok: the fit's
    convergence checks passed (``metrics.json``).
    """

    folder: Path
    ann_id: int
    body_name: str
    params: BodyParams
    intact_params: BodyParams
    camera: PinholeCamera
    residual_limbs: tuple[tuple[Limb, LimbStatus, float, np.ndarray], ...]
    verts_cam: np.ndarray
    faces: np.ndarray
    residual_mask: np.ndarray
    seconds: float
    intact_seconds: float
    quality_ok: bool

    def params_for(self, body: BodyModel, *, intact: bool = False) -> BodyParams:
        """The fitted (or, ``intact``, the intact-body fit's) parameters on ``body``'s device and
        in its dtype."""
        params = self.intact_params if intact else self.params
        return BodyParams(*(t.to(body.device, body.dtype) for t in params.as_tuple()))

    @staticmethod
    def from_person(person: FittedPerson) -> FittedFolder:
        """The evaluator's view of a folder read by :func:`resihmr_dr.results.read_person`."""
        return FittedFolder(
            folder=person.folder,
            ann_id=person.ann_id,
            body_name=person.body_name,
            params=person.params,
            intact_params=person.intact_params,
            camera=person.camera,
            residual_limbs=tuple((r.limb, r.status, r.lambda_intact, r.endpoint_cam) for r in person.limbs),
            verts_cam=person.verts_cam,
            faces=person.faces,
            residual_mask=person.residual_mask,
            seconds=person.seconds,
            intact_seconds=person.intact_seconds,
            quality_ok=person.quality_ok,
        )


def find_person_folder(pred_root: str | Path, image_id: int, ann_id: int) -> Path:
    """The folder ``resihmr-dr fit`` wrote for annotation ``ann_id`` in image ``image_id`` under
    ``pred_root``: a single person's ``image{I}_ann{A}`` (``outputs.person_folder_name``) or a
    view of a multi-view subject, ``subject_<person_id>/views/image{I}_ann{A}``.

    PredictionError (naming the folder) when there is none, or more than one (both layouts, or
    two subjects claiming the annotation).
    """
    root = Path(pred_root)
    name = f"image{image_id}_ann{ann_id}"  # outputs.person_folder_name of the annotation
    found = [folder for folder in (root / name, *sorted(root.glob(f"subject_*/views/{name}"))) if folder.is_dir()]
    if not found:
        raise PredictionError(
            f"no fitted folder {name} nor subject_*/views/{name} (not fitted, or its fit failed: see failures.json)",
            path=root,
        )
    if len(found) > 1:
        listed = ", ".join(str(folder.relative_to(root)) for folder in found)
        raise PredictionError(f"annotation {ann_id} has {len(found)} fitted folders ({listed}); keep one", path=root)
    return found[0]


def read_fitted_folder(folder: str | Path) -> FittedFolder:
    """Read a person folder written by ``resihmr-dr fit`` (with :func:`resihmr_dr.results.read_person`);
    a ``ResultsError`` (a ``DataError``) names the bad file and field."""
    return FittedFolder.from_person(read_person(folder))


def prediction_from_folder(
    fitted: FittedFolder, *, body: BodyModel, method: str, posed: BodyOutput | None = None
) -> Prediction:
    """The :class:`Prediction` of a folder written by ``resihmr-dr fit`` (see
    :func:`read_fitted_folder`). ``body`` must be the body model the folder was fitted with;
    ``posed``: the body already posed by the folder's parameters (B = 1; posed here if None)."""
    if body.name != fitted.body_name:
        raise PredictionError(f"fitted with the {fitted.body_name} body model, not {body.name}", path=fitted.folder)
    if posed is None:
        posed = pose_body(body, fitted.params_for(body))
    joints_cam = posed.joints[0].double().cpu().numpy()
    axes = {limb.name: limb_segment_joints(joints_cam, limb, status) for limb, status, _, _ in fitted.residual_limbs}
    endpoints = {limb.endpoint_index(status): endpoint for limb, status, _, endpoint in fitted.residual_limbs}
    return Prediction(
        method=method,
        ann_id=fitted.ann_id,
        verts_cam=fitted.verts_cam,
        faces=fitted.faces,
        limb_masks=split_residual_mask(fitted.verts_cam, fitted.residual_mask, axes),
        joints_cam=joints_cam,
        keypoints_px=predicted_keypoints_px(
            camera=fitted.camera, coco_cam=posed.coco_kp[0].double().cpu().numpy(), endpoints_cam=endpoints
        ),
        body_verts_cam=posed.verts[0].double().cpu().numpy(),
        body_name=body.name,
        seconds=fitted.seconds,
    )
