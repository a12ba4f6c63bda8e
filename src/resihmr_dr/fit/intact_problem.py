"""The intact-body fit's problem: the keypoint targets of one person, the optimised variables,
the shape parametrisation and the loss of a pose-and-shape stage (``fit.intact``, DESIGN.md §3).

Frames: keypoints in pixels (x right, y down); the body is posed in the camera frame (OpenCV,
metres) as ``R (p_model - root) + root + transl`` (``body.base``). The global rotation is
optimised as a rotation vector ``delta`` composed on the left of a fixed start rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import roma
import torch

from resihmr_dr.body.base import JOINT_INDEX, BodyModel, BodyParams
from resihmr_dr.body.hinges import JointHinges
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import LIMBS, NUM_COCO_KEYPOINTS, NUM_KEYPOINTS
from resihmr_dr.fit.intact_config import IntactFitConfig, StageWeights
from resihmr_dr.fit.losses import hyperextension_penalty, keypoint_data_term, l2_prior

__all__ = ["FitInputError", "FitState", "IntactProblem", "ShapeSpace", "check_camera", "intact_targets", "to_camera"]


class FitInputError(ValueError):
    """The keypoints, camera or initial parameters cannot be fitted (message says why)."""


# --------------------------------------------------------------------------- keypoint targets
def intact_targets(
    keypoints_px: np.ndarray | torch.Tensor,
) -> tuple[np.ndarray, np.ndarray]:
    """The intact keypoint targets of one person.

    keypoints_px: (25, 3) LDpose ``[x, y, v]`` (pixels; v = 0 absent; v in (0, 1] a confidence,
    v >= 1 a COCO visibility flag, weight 1). Returns ``target_px`` (17, 2) float64 (unused
    entries zeroed) and ``weights`` (17,) in [0, 1]. Keypoints replaced by a present residual
    endpoint (and those distal to them) get weight 0 even when annotated.
    Raises FitInputError on a wrong shape, negative visibility or non-finite used coordinates.
    """
    kp = keypoints_px.detach().cpu().numpy() if isinstance(keypoints_px, torch.Tensor) else np.asarray(keypoints_px)
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise FitInputError(f"keypoints_px must be ({NUM_KEYPOINTS}, 3) [x, y, v], got shape {kp.shape}")
    kp = kp.astype(np.float64)
    vis = kp[:, 2]
    if not np.all(np.isfinite(vis)) or np.any(vis < 0):
        raise FitInputError(f"keypoint visibilities must be finite and >= 0, got {vis.tolist()}")
    weights = np.clip(vis[:NUM_COCO_KEYPOINTS], 0.0, 1.0)
    for limb in LIMBS:
        if vis[limb.above_end] > 0:
            weights[[limb.middle, limb.distal]] = 0.0
        if vis[limb.below_end] > 0:
            weights[limb.distal] = 0.0
    xy = kp[:NUM_COCO_KEYPOINTS, :2]
    used = weights > 0
    bad = used & ~np.all(np.isfinite(xy), axis=1)
    if np.any(bad):
        raise FitInputError(f"visible keypoints {np.nonzero(bad)[0].tolist()} have non-finite coordinates")
    target = np.where(used[:, None], xy, 0.0)
    return target, weights


# --------------------------------------------------------------------------- shape space
@dataclass(frozen=True)
class ShapeSpace:
    """Shape <-> optimised latent. Bounded (Anny phenotypes): sigmoid; else identity.

    mean: (S,) the model's mean shape; scale: the shape prior's scale (phenotypes; 1 for betas).
    """

    bounded: bool
    mean: torch.Tensor
    scale: float

    def to_latent(self, shape: torch.Tensor) -> torch.Tensor:
        """(..., S) shape -> latent (a copy)."""
        if not self.bounded:
            return shape.clone()
        return torch.logit(shape.clamp(1e-4, 1.0 - 1e-4))

    def from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """(..., S) latent -> shape."""
        return torch.sigmoid(latent) if self.bounded else latent


def shape_space(body: BodyModel, config: IntactFitConfig) -> ShapeSpace:
    """The shape space of ``body``: Anny's phenotypes bounded to [0, 1] with prior scale
    ``config.phenotype_sigma``, other models' coefficients as they are."""
    mean = body.default_shape().to(device=body.device, dtype=body.dtype)
    if body.name == "anny":
        return ShapeSpace(bounded=True, mean=mean, scale=config.phenotype_sigma)
    return ShapeSpace(bounded=False, mean=mean, scale=1.0)


# --------------------------------------------------------------------------- geometry
def to_camera(
    points_model: torch.Tensor,
    root_model: torch.Tensor,
    rot: torch.Tensor,
    transl: torch.Tensor,
) -> torch.Tensor:
    """``R (p - root) + root + t``; points (B, N, 3), root (B, 3), rot (B, 3, 3), transl (B, 3)."""
    root = root_model[:, None]
    return (points_model - root) @ rot.transpose(1, 2) + root + transl[:, None]


def check_camera(camera: PinholeCamera) -> None:
    """Raise FitInputError unless the intrinsics are finite with positive focal lengths and size."""
    values = (camera.fx, camera.fy, camera.cx, camera.cy)
    if not all(math.isfinite(v) for v in values) or camera.fx <= 0 or camera.fy <= 0:
        raise FitInputError(f"camera intrinsics must be finite with positive focal lengths, got {camera}")
    if camera.width <= 0 or camera.height <= 0:
        raise FitInputError(f"camera image size must be positive, got {camera.width}x{camera.height}")


# --------------------------------------------------------------------------- state and loss
@dataclass
class FitState:
    """Optimised variables (leaf tensors) of one fit: rotation delta, translation, pose, shape latent."""

    rot0: torch.Tensor  # (1, 3, 3) fixed start rotation
    delta: torch.Tensor  # (1, 3)
    transl: torch.Tensor  # (1, 3)
    body_pose: torch.Tensor  # (1, P, 3)
    shape_latent: torch.Tensor  # (1, S)

    def rot(self) -> torch.Tensor:
        """(1, 3, 3) the global rotation, model frame -> camera frame."""
        return roma.rotvec_to_rotmat(self.delta) @ self.rot0

    def params(self, space: ShapeSpace) -> BodyParams:
        """The state as detached body parameters (shape through ``space``)."""
        with torch.no_grad():
            return BodyParams(
                global_orient=roma.rotmat_to_rotvec(self.rot()).detach().clone(),
                body_pose=self.body_pose.detach().clone(),
                shape=space.from_latent(self.shape_latent).detach().clone(),
                transl=self.transl.detach().clone(),
            )


@dataclass(frozen=True)
class IntactProblem:
    """What one fit matches: the body, the camera, the targets (``intact_targets``) and settings.

    target: (1, 17, 2) pixels; weights: (1, 17); data_scale: ``(data_weight_ref_px / image
    size)^2``; hinges: the body's elbows and knees (``BodyModel.joint_hinges``).
    """

    body: BodyModel
    camera: PinholeCamera
    target: torch.Tensor
    weights: torch.Tensor
    data_scale: float
    space: ShapeSpace
    hinges: JointHinges
    config: IntactFitConfig

    def keypoints_px(self, state: FitState) -> torch.Tensor:
        """(1, 17, 2) the COCO keypoints of the body posed by ``state``, projected to pixels."""
        shape = self.space.from_latent(state.shape_latent)
        joints, coco = self.body.keypoints_model(state.body_pose, shape)
        root = joints[:, JOINT_INDEX["pelvis"]]
        return self.camera.project(to_camera(coco, root, state.rot(), state.transl))

    def stage_loss(self, state: FitState, w: StageWeights) -> torch.Tensor:
        """Scalar loss of a pose-and-shape stage: robust keypoint term, pose, shape and
        hyper-extension priors, each weighted by ``w`` squared."""
        data = keypoint_data_term(self.keypoints_px(state), self.target, self.weights, rho=self.config.rho_px)
        shape = self.space.from_latent(state.shape_latent)
        loss = (w.data**2) * self.data_scale * data
        loss = loss + (w.pose_prior**2) * l2_prior(state.body_pose)
        loss = loss + (w.shape_prior**2) * l2_prior(shape, mean=self.space.mean, scale=self.space.scale)
        loss = loss + (w.angle_limit**2) * hyperextension_penalty(self.hinges.flexion(state.body_pose))
        return loss.sum()
