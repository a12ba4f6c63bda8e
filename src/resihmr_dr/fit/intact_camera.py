"""Stage (a) of the intact-body fit: placing the rest body in front of the camera.

The depth comes from the torso edges (2D shoulder-hip lengths vs the model's 3D lengths and the
focal length); the global orientation and translation are then fitted on the torso keypoints
(shoulders, hips) with the body at rest. The start orientation faces the camera, or faces away
when the 2D shoulders are swapped; when the shoulders are closer than
``IntactFitConfig.flip_threshold_px`` both orientations are kept as candidates. Each candidate
starts from every yaw of ``IntactFitConfig.camera_yaw_starts_deg`` and keeps the one whose rest
body best fits all keypoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import roma
import torch

from resihmr_dr.body.base import FACING_CAMERA_ORIENT, JOINT_INDEX
from resihmr_dr.data.ldpose import KEYPOINT_INDEX
from resihmr_dr.fit.intact_problem import FitInputError, FitState, IntactProblem, to_camera
from resihmr_dr.fit.losses import depth_prior, keypoint_data_term
from resihmr_dr.fit.monitor import StageOutcome, StopReason, minimize_lbfgs

__all__ = ["TORSO_KEYPOINTS", "RestBody", "fit_camera", "initial_states"]

# The keypoints stage (a) fits: shoulders and hips.
TORSO_KEYPOINTS: tuple[int, ...] = tuple(
    KEYPOINT_INDEX[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
)
# Torso edges whose 2D/3D length ratio gives the depth: same-side shoulder-hip first, then crossed.
_TORSO_EDGES_SAME_SIDE = (
    (KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["left_hip"]),
    (KEYPOINT_INDEX["right_shoulder"], KEYPOINT_INDEX["right_hip"]),
)
_TORSO_EDGES_CROSSED = (
    (KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_hip"]),
    (KEYPOINT_INDEX["right_shoulder"], KEYPOINT_INDEX["left_hip"]),
)
_MIN_TORSO_EDGE_PX = 2.0


@dataclass(frozen=True)
class RestBody:
    """The start body (rest pose, mean shape), model frame: coco (1, 17, 3), root (1, 3); start depth (m)."""

    coco_model: torch.Tensor
    root_model: torch.Tensor
    depth: float


def initial_states(problem: IntactProblem, notes: list[str]) -> tuple[list[list[FitState]], RestBody]:
    """Start states for stage (a): per orientation candidate (facing / turned away), one state per
    yaw start; translation from the torso-edge depth and the torso centroid."""
    body, camera = problem.body, problem.camera
    kw = {"device": body.device, "dtype": body.dtype}
    target = problem.target[0].cpu().numpy().astype(np.float64)
    weights = problem.weights[0].cpu().numpy().astype(np.float64)
    pose = torch.zeros(1, body.num_pose_joints, 3, **kw)
    shape = problem.space.mean[None].clone()
    with torch.no_grad():
        rest_joints, rest_coco = body.keypoints_model(pose, shape)
    coco_model = rest_coco[0].cpu().numpy().astype(np.float64)
    root_model = rest_joints[:, JOINT_INDEX["pelvis"]]
    focal = 0.5 * (camera.fx + camera.fy)
    depth, depth_notes = _estimate_depth(target, weights, coco_model, focal)
    notes.extend(depth_notes)

    facing = roma.rotvec_to_rotmat(torch.tensor(FACING_CAMERA_ORIENT, **kw))
    turned = _rot_y(math.pi, **kw) @ facing
    l_sho, r_sho = KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]
    l_hip, r_hip = KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]
    if weights[l_sho] > 0 and weights[r_sho] > 0:
        dx, sho_dist = (
            target[l_sho, 0] - target[r_sho, 0],
            float(np.linalg.norm(target[l_sho] - target[r_sho])),
        )
    else:
        sho_dist = 0.0
        dx = target[l_hip, 0] - target[r_hip, 0] if weights[l_hip] > 0 and weights[r_hip] > 0 else 0.0
    # Facing the camera, the person's left (+X) is on the image's right: left x > right x.
    rotations = [facing, turned] if dx >= 0 else [turned, facing]
    if sho_dist >= problem.config.flip_threshold_px:
        rotations = rotations[:1]
    used = [i for i in TORSO_KEYPOINTS if weights[i] > 0]
    if len(used) >= 3:
        spread = target[used] - target[used].mean(0)
        if np.linalg.svd(spread, compute_uv=False)[-1] < 1e-3 * max(np.abs(spread).max(), 1.0):
            notes.append("the visible torso keypoints are collinear: the orientation is ambiguous")
    centre_px = target[used].mean(0)
    centre_model = torch.as_tensor(coco_model[used].mean(0), **kw)[None, None]
    ray = torch.tensor(
        [
            (centre_px[0] - camera.cx) / camera.fx,
            (centre_px[1] - camera.cy) / camera.fy,
            1.0,
        ],
        **kw,
    )

    groups: list[list[FitState]] = []
    for base in rotations:
        group = []
        for yaw in problem.config.camera_yaw_starts_deg:
            rot0 = _rot_y(math.radians(yaw), **kw) @ base
            at_zero = to_camera(centre_model, root_model, rot0[None], torch.zeros(1, 3, **kw))[0, 0]
            transl = (ray * depth - at_zero)[None]
            group.append(
                FitState(
                    rot0=rot0[None].clone(),
                    delta=torch.zeros(1, 3, **kw).requires_grad_(True),
                    transl=transl.clone().requires_grad_(True),
                    body_pose=pose.clone().requires_grad_(True),
                    shape_latent=problem.space.to_latent(shape).requires_grad_(True),
                )
            )
        groups.append(group)
    return groups, RestBody(coco_model=rest_coco, root_model=root_model, depth=depth)


def _camera_stage(problem: IntactProblem, state: FitState, rest: RestBody) -> StageOutcome:
    """Stage (a): fit ``delta`` and ``transl`` on the torso keypoints, body at rest (plain L2)."""
    idx = list(TORSO_KEYPOINTS)
    torso_model, root_model, depth0 = (
        rest.coco_model[:, idx],
        rest.root_model,
        rest.depth,
    )
    target, weights = problem.target[:, idx], problem.weights[:, idx]
    cfg = problem.config

    def objective() -> torch.Tensor:
        kp = problem.camera.project(to_camera(torso_model, root_model, state.rot(), state.transl))
        data = keypoint_data_term(kp, target, weights, rho=None)
        return (problem.data_scale * data + cfg.depth_prior_weight**2 * depth_prior(state.transl, depth_m=depth0)).sum()

    return minimize_lbfgs(
        name="camera",
        params=[state.delta, state.transl],
        objective=objective,
        monitor=cfg.monitor(cfg.camera_iterations),
        history_size=cfg.history_size,
        lr=cfg.lr,
    )


def _rest_fit_loss(problem: IntactProblem, state: FitState, rest: RestBody) -> float:
    """Robust keypoint term of the rest body placed by ``state`` (all used keypoints)."""
    with torch.no_grad():
        kp = problem.camera.project(to_camera(rest.coco_model, rest.root_model, state.rot(), state.transl))
        loss = keypoint_data_term(kp, problem.target, problem.weights, rho=problem.config.rho_px)
    value = float(loss.sum())
    return value if math.isfinite(value) else math.inf


def fit_camera(problem: IntactProblem, group: list[FitState], rest: RestBody) -> tuple[FitState, StageOutcome]:
    """Stage (a) from every yaw start of one orientation; keep the best rest-body fit."""
    best: tuple[float, FitState, StageOutcome] | None = None
    for state in group:
        outcome = _camera_stage(problem, state, rest)
        score = math.inf if outcome.reason is StopReason.NON_FINITE else _rest_fit_loss(problem, state, rest)
        if best is None or score < best[0]:
            best = (score, state, outcome)
    _, state, outcome = best  # type: ignore[misc]  # the group is never empty
    return state, outcome


def _rot_y(angle: float, **kw) -> torch.Tensor:
    """(3, 3) rotation by ``angle`` radians about the model's vertical (Y) axis."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], **kw)


def _estimate_depth(
    target: np.ndarray, weights: np.ndarray, coco_model: np.ndarray, focal: float
) -> tuple[float, list[str]]:
    """Depth (m) from torso edges: ``focal * mean 3D length / mean 2D length`` (SMPLify-X)."""
    for edges in (_TORSO_EDGES_SAME_SIDE, _TORSO_EDGES_CROSSED):
        pairs = [(a, b) for a, b in edges if weights[a] > 0 and weights[b] > 0]
        if pairs:
            len2d = float(np.mean([np.linalg.norm(target[a] - target[b]) for a, b in pairs]))
            len3d = float(np.mean([np.linalg.norm(coco_model[a] - coco_model[b]) for a, b in pairs]))
            if len2d < _MIN_TORSO_EDGE_PX:
                raise FitInputError(
                    f"degenerate torso: shoulder-hip distances are {len2d:.2f} px (< {_MIN_TORSO_EDGE_PX} px); "
                    "cannot estimate the depth"
                )
            notes = [] if edges is _TORSO_EDGES_SAME_SIDE else ["depth from crossed shoulder-hip edges only"]
            return focal * len3d / len2d, notes
    raise FitInputError(
        "the fit needs at least one visible shoulder and one visible hip (keypoints 5/6 and 11/12) "
        "to place the body; none of the shoulder-hip pairs is visible"
    )
