"""The initial intact-body fit: SMPLify-X-style fitting of a body model to 2D keypoints.

Stages (DESIGN.md §3):

(a) camera/torso: depth from the torso edges (2D shoulder-hip lengths vs the model's 3D lengths
    and the focal length), then the global orientation and translation fitted on the torso
    keypoints (shoulders, hips) with the body at rest. The start orientation faces the camera,
    or faces away when the 2D shoulders are swapped; when the shoulders are closer than
    ``flip_threshold_px`` the orientation turned by 180° about the vertical axis is fitted too
    (all stages) and the lower final loss is kept.
(b) pose and shape: robust Geman-McClure keypoint term, L2 pose prior, shape prior, elbow/knee
    hyper-extension limits, under a schedule of weights (``IntactFitConfig.stages``), each stage
    minimised by L-BFGS with a strong-Wolfe line search under a convergence monitor.
(c) alternatively: start from imported parameters (``init``), skip (a)/(b), and optionally
    refine for ``refine_iters`` iterations with the last stage's weights.

Only the intact COCO keypoints 0-16 with visibility > 0 are used; the residual endpoints 17-24
are not targets here, but a present endpoint also removes the joints it replaces (and the ones
distal to them) from the fit, should the annotation still carry them.

Frames: keypoints in pixels (x right, y down); the body is posed in the camera frame (OpenCV,
metres) as ``R (p_model - root) + root + transl`` (``body.base``). The global rotation is
optimised as a rotation vector ``delta`` composed on the left of the start rotation.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import roma
import torch

from resihmr_dr.body.base import (
    FACING_CAMERA_ORIENT,
    JOINT_INDEX,
    BodyModel,
    BodyParams,
)
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import (
    KEYPOINT_INDEX,
    LIMBS,
    NUM_COCO_KEYPOINTS,
    NUM_KEYPOINTS,
)
from resihmr_dr.fit.losses import (
    depth_prior,
    flexion_angles,
    hyperextension_penalty,
    keypoint_data_term,
    l2_prior,
)
from resihmr_dr.fit.monitor import (
    MonitorConfig,
    StageOutcome,
    StopReason,
    minimize_lbfgs,
)

__all__ = [
    "FitInputError",
    "IntactFitConfig",
    "IntactFitResult",
    "JointHinges",
    "StageWeights",
    "find_joint_hinges",
    "fit_intact",
    "intact_targets",
]

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


class FitInputError(ValueError):
    """The keypoints, camera or initial parameters cannot be fitted (message says why)."""


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class StageWeights:
    """Weights of one pose-and-shape stage. Each term is ``weight^2 * term`` (SMPLify-X style).

    data: keypoint term weight (times the image-size normalisation); pose_prior: L2 on
    body_pose (rad); shape_prior: L2 on the standardised shape; angle_limit: elbow/knee
    hyper-extension hinge (rad); max_iters: L-BFGS iterations.
    """

    pose_prior: float
    shape_prior: float
    angle_limit: float
    data: float = 1.0
    max_iters: int = 30

    def __post_init__(self) -> None:
        for name in ("pose_prior", "shape_prior", "angle_limit", "data"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"StageWeights.{name} must be finite and >= 0, got {value}")
        if self.max_iters < 0:
            raise ValueError(f"StageWeights.max_iters must be >= 0, got {self.max_iters}")


# SMPLify-X's body-pose prior [404, 404, 57.4, 4.78, 4.78] and shape [100, 50, 10, 5, 5] weights.
# Here the data term is ~1 per px^2 (1000 px image), the pose prior is a plain L2 on axis-angles
# (rad^2) instead of VPoser's latent, and the shape prior is standardised (betas; Anny
# phenotypes divided by ``phenotype_sigma``). SMPLify-X's first stages keep the pose near rest
# while the global placement settles; its last stages let the data dominate.
DEFAULT_STAGES: tuple[StageWeights, ...] = (
    StageWeights(pose_prior=404.0, shape_prior=100.0, angle_limit=300.0, max_iters=10),
    StageWeights(pose_prior=404.0, shape_prior=50.0, angle_limit=300.0, max_iters=10),
    StageWeights(pose_prior=57.4, shape_prior=10.0, angle_limit=100.0, max_iters=20),
    StageWeights(pose_prior=4.78, shape_prior=5.0, angle_limit=50.0, max_iters=30),
    StageWeights(pose_prior=4.78, shape_prior=5.0, angle_limit=50.0, max_iters=30),
)


@dataclass(frozen=True)
class IntactFitConfig:
    """Settings of ``fit_intact``.

    stages: the pose-and-shape schedule (stage (b)), one ``StageWeights`` per stage.
    rho_px: Geman-McClure scale. data_weight_ref_px: the keypoint term is scaled by
    ``(data_weight_ref_px / max(width, height))^2`` (SMPLify-X: 1000 / image height).
    camera_max_iters / depth_prior_weight: the torso stage (a) and its pull to the initial depth
    (``weight^2 * (t_z - z0)^2``, metres). flip_threshold_px: 2D shoulder distance below which the
    180°-turned orientation is also fitted. camera_yaw_starts_deg: stage (a) starts from each of
    these turns about the vertical axis (a torso alone cannot tell a turn to the left from one to
    the right) and keeps the one whose rest body best fits all keypoints (robust term: mostly the
    face decides). phenotype_sigma: Anny phenotypes' prior scale about
    0.5. refine_iters: with ``init``, L-BFGS iterations of refinement (0: none).
    """

    stages: tuple[StageWeights, ...] = DEFAULT_STAGES
    rho_px: float = 100.0
    data_weight_ref_px: float = 1000.0
    camera_max_iters: int = 30
    depth_prior_weight: float = 100.0
    flip_threshold_px: float = 25.0
    camera_yaw_starts_deg: tuple[float, ...] = (0.0, 45.0, -45.0)
    phenotype_sigma: float = 0.25
    ftol: float = 1e-7
    gtol: float = 1e-7
    history_size: int = 30
    lr: float = 1.0
    refine_iters: int = 0

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("IntactFitConfig.stages must hold at least one StageWeights")
        if not all(isinstance(s, StageWeights) for s in self.stages):
            raise ValueError("IntactFitConfig.stages must be StageWeights entries")
        for name in ("rho_px", "data_weight_ref_px", "phenotype_sigma", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"IntactFitConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.camera_yaw_starts_deg or not all(math.isfinite(a) for a in self.camera_yaw_starts_deg):
            raise ValueError(
                f"IntactFitConfig.camera_yaw_starts_deg must be finite angles, got {self.camera_yaw_starts_deg}"
            )
        for name in ("camera_max_iters", "refine_iters", "history_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"IntactFitConfig.{name} must be >= 0, got {getattr(self, name)}")

    def monitor(self, max_iters: int) -> MonitorConfig:
        """The convergence settings of a stage of ``max_iters`` iterations (this config's ftol,
        gtol)."""
        return MonitorConfig(max_iters=max_iters, ftol=self.ftol, gtol=self.gtol)


@dataclass(frozen=True)
class IntactFitResult:
    """Outcome of ``fit_intact``.

    params: fitted parameters (B = 1, detached); the body's own shape units (Anny phenotypes in
    [0, 1], SMPL-X betas). stages: every stage run, in order (for the kept orientation).
    converged: strict: no NaN/Inf *and* the last stage stopped on ftol/gtol (a last stage that
    used up its ``max_iters``, as SMPLify-X's schedule usually does, gives False; ``aborted``
    tells the NaN/Inf case apart). reason: how it ended.
    keypoint_error_px: mean 2D distance over the keypoints used (those with weight > 0).
    used_keypoints: indices (into 0-16) of the keypoints that pulled on the body.
    flipped: the kept orientation is the 180°-turned candidate of the one chosen first.
    seconds: wall time of the whole fit. warnings: non-fatal remarks about the input.
    orientation_losses: final loss of each start orientation tried (inf if it aborted).
    """

    params: BodyParams
    stages: tuple[StageOutcome, ...]
    converged: bool
    reason: str
    keypoint_error_px: float
    used_keypoints: tuple[int, ...]
    flipped: bool
    seconds: float
    warnings: tuple[str, ...] = field(default=())
    orientation_losses: tuple[float, ...] = field(default=())

    @property
    def aborted(self) -> bool:
        """A NaN/Inf stopped the optimisation (params are the last finite iterate)."""
        return any(s.reason is StopReason.NON_FINITE for s in self.stages)

    @property
    def stage_losses(self) -> dict[str, tuple[float, ...]]:
        """Stage name -> its loss after each iteration."""
        return {s.name: s.losses for s in self.stages}

    @property
    def timings(self) -> dict[str, float]:
        """Stage name -> seconds, plus ``total``."""
        return {s.name: s.seconds for s in self.stages} | {"total": self.seconds}


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


# --------------------------------------------------------------------------- hinge joints
@dataclass(frozen=True)
class JointHinges:
    """Elbows and knees of a body model, found empirically (``find_joint_hinges``).

    names: hinge joint names; pose_index: (H,) index into body_pose; flex_axis: (H, 3) unit axis
    in the pose-parameter axes (positive rotation flexes); rest_flexion: (H,) flexion of the rest
    pose, radians.
    """

    names: tuple[str, ...]
    pose_index: torch.Tensor
    flex_axis: torch.Tensor
    rest_flexion: torch.Tensor

    def flexion(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B, H) flexion angles of ``body_pose`` (B, P, 3), radians; < 0 is hyper-extension."""
        return flexion_angles(
            body_pose,
            pose_index=self.pose_index,
            flex_axis=self.flex_axis,
            rest_flexion=self.rest_flexion,
        )


# (hinge joint, proximal joint, distal joint, direction the distal segment moves when flexing,
# model frame: the forearm forwards (+Z), the shank backwards (-Z)).
_HINGE_DEFS: tuple[tuple[str, str, str, tuple[float, float, float]], ...] = (
    ("left_elbow", "left_shoulder", "left_wrist", (0.0, 0.0, 1.0)),
    ("right_elbow", "right_shoulder", "right_wrist", (0.0, 0.0, 1.0)),
    ("left_knee", "left_hip", "left_ankle", (0.0, 0.0, -1.0)),
    ("right_knee", "right_hip", "right_ankle", (0.0, 0.0, -1.0)),
)
_HINGE_CACHE: weakref.WeakKeyDictionary[BodyModel, JointHinges] = weakref.WeakKeyDictionary()


@torch.enable_grad()
def find_joint_hinges(body: BodyModel) -> JointHinges:
    """Find each elbow's and knee's posable joint, flexion axis and rest flexion from the model.

    At the rest pose and mean shape (model frame): the posable joint is the one that moves the
    distal joint (wrist/ankle) but not the hinge joint itself. The flexion axis (model frame) is
    normal to the upper segment ``u`` and the anatomical flexion direction (forearm forwards,
    shank backwards), signed so that flexing moves the distal segment that way. It is mapped
    into the pose parameters' axes through the Jacobian of the distal joint w.r.t. that joint's
    axis-angle (the minimum-norm solution, i.e. the part normal to the lower segment). The rest
    flexion is the angle from ``u`` to the lower segment projected into the flexion plane.
    Cached per body instance.
    """
    cached = _HINGE_CACHE.get(body)
    if cached is not None:
        return cached
    kw = {"device": body.device, "dtype": body.dtype}
    pose = torch.zeros(1, body.num_pose_joints, 3, requires_grad=True, **kw)
    shape = body.default_shape().to(**kw)[None]
    with torch.enable_grad():
        joints = body.keypoints_model(pose, shape)[0][0]
    probe = torch.tensor([0.31, -0.57, 0.76], **kw)
    pose_index, axes, rests = [], [], []
    for hinge, proximal, distal, direction in _HINGE_DEFS:
        j_hinge, j_prox, j_dist = (joints[JOINT_INDEX[n]] for n in (hinge, proximal, distal))
        (g_dist,) = torch.autograd.grad(j_dist @ probe, pose, retain_graph=True)
        (g_hinge,) = torch.autograd.grad(j_hinge @ probe, pose, retain_graph=True)
        moves_dist = g_dist[0].abs().sum(-1) > 1e-6
        moves_hinge = g_hinge[0].abs().sum(-1) > 1e-6
        candidates = torch.nonzero(moves_dist & ~moves_hinge).flatten().tolist()
        if len(candidates) != 1:
            names = [body.pose_joint_names[i] for i in candidates]
            raise RuntimeError(f"{body.name}: cannot identify the posable joint of {hinge} (candidates {names})")
        idx = candidates[0]
        jac = torch.stack(
            [torch.autograd.grad(j_dist[k], pose, retain_graph=True)[0][0, idx] for k in range(3)]
        )  # (3 distal coords, 3 axis-angle params)
        u = (j_hinge - j_prox).detach()
        f = (j_dist - j_hinge).detach()
        d = torch.tensor(direction, **kw)
        normal = torch.linalg.cross(u, d - (d @ u) / (u @ u) * u)  # normal to u and the flexing direction
        axis_model = normal / normal.norm()
        velocity = torch.linalg.cross(axis_model, f)  # distal joint's motion per radian of flexion
        omega = torch.linalg.pinv(jac.detach()) @ velocity  # minimum norm: the part normal to f
        axis_param = omega / omega.norm()
        f_plane = f - (f @ axis_model) * axis_model  # lower segment within the flexion plane
        rest = torch.atan2(torch.linalg.cross(u, f_plane) @ axis_model, u @ f_plane)
        pose_index.append(idx)
        axes.append(axis_param)
        rests.append(rest)
    hinges = JointHinges(
        names=tuple(h[0] for h in _HINGE_DEFS),
        pose_index=torch.tensor(pose_index, device=body.device),
        flex_axis=torch.stack(axes).detach(),
        rest_flexion=torch.stack(rests).detach(),
    )
    _HINGE_CACHE[body] = hinges
    return hinges


# --------------------------------------------------------------------------- shape space
@dataclass(frozen=True)
class _ShapeSpace:
    """Shape <-> optimised latent. Bounded (Anny phenotypes): sigmoid; else identity."""

    bounded: bool
    mean: torch.Tensor  # (S,)
    scale: float

    def to_latent(self, shape: torch.Tensor) -> torch.Tensor:
        if not self.bounded:
            return shape.clone()
        return torch.logit(shape.clamp(1e-4, 1.0 - 1e-4))

    def from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(latent) if self.bounded else latent


def _shape_space(body: BodyModel, config: IntactFitConfig) -> _ShapeSpace:
    mean = body.default_shape().to(device=body.device, dtype=body.dtype)
    if body.name == "anny":
        return _ShapeSpace(bounded=True, mean=mean, scale=config.phenotype_sigma)
    return _ShapeSpace(bounded=False, mean=mean, scale=1.0)


# --------------------------------------------------------------------------- geometry helpers
def _to_camera(
    points_model: torch.Tensor,
    root_model: torch.Tensor,
    rot: torch.Tensor,
    transl: torch.Tensor,
) -> torch.Tensor:
    """``R (p - root) + root + t``; points (B, N, 3), root (B, 3), rot (B, 3, 3), transl (B, 3)."""
    root = root_model[:, None]
    return (points_model - root) @ rot.transpose(1, 2) + root + transl[:, None]


def _project(points_cam: torch.Tensor, camera: PinholeCamera) -> torch.Tensor:
    return camera.project(points_cam)


def _rot_y(angle: float, **kw) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], **kw)


def _check_camera(camera: PinholeCamera) -> None:
    values = (camera.fx, camera.fy, camera.cx, camera.cy)
    if not all(math.isfinite(v) for v in values) or camera.fx <= 0 or camera.fy <= 0:
        raise FitInputError(f"camera intrinsics must be finite with positive focal lengths, got {camera}")
    if camera.width <= 0 or camera.height <= 0:
        raise FitInputError(f"camera image size must be positive, got {camera.width}x{camera.height}")


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


# --------------------------------------------------------------------------- stages
@dataclass
class _State:
    """Optimised variables (leaf tensors) of one fit: rotation delta, translation, pose, shape latent."""

    rot0: torch.Tensor  # (1, 3, 3) fixed start rotation
    delta: torch.Tensor  # (1, 3)
    transl: torch.Tensor  # (1, 3)
    body_pose: torch.Tensor  # (1, P, 3)
    shape_latent: torch.Tensor  # (1, S)

    def rot(self) -> torch.Tensor:
        return roma.rotvec_to_rotmat(self.delta) @ self.rot0

    def params(self, space: _ShapeSpace) -> BodyParams:
        with torch.no_grad():
            return BodyParams(
                global_orient=roma.rotmat_to_rotvec(self.rot()).detach().clone(),
                body_pose=self.body_pose.detach().clone(),
                shape=space.from_latent(self.shape_latent).detach().clone(),
                transl=self.transl.detach().clone(),
            )


@dataclass(frozen=True)
class _Problem:
    body: BodyModel
    camera: PinholeCamera
    target: torch.Tensor  # (1, 17, 2) px
    weights: torch.Tensor  # (1, 17)
    data_scale: float  # (ref / image size)^2
    space: _ShapeSpace
    hinges: JointHinges
    config: IntactFitConfig

    def keypoints_px(self, state: _State) -> torch.Tensor:
        shape = self.space.from_latent(state.shape_latent)
        joints, coco = self.body.keypoints_model(state.body_pose, shape)
        root = joints[:, JOINT_INDEX["pelvis"]]
        return _project(_to_camera(coco, root, state.rot(), state.transl), self.camera)

    def stage_loss(self, state: _State, w: StageWeights) -> torch.Tensor:
        data = keypoint_data_term(self.keypoints_px(state), self.target, self.weights, rho=self.config.rho_px)
        shape = self.space.from_latent(state.shape_latent)
        loss = (w.data**2) * self.data_scale * data
        loss = loss + (w.pose_prior**2) * l2_prior(state.body_pose)
        loss = loss + (w.shape_prior**2) * l2_prior(shape, mean=self.space.mean, scale=self.space.scale)
        loss = loss + (w.angle_limit**2) * hyperextension_penalty(self.hinges.flexion(state.body_pose))
        return loss.sum()


def _camera_stage(problem: _Problem, state: _State, rest: _RestBody) -> StageOutcome:
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
        kp = _project(
            _to_camera(torso_model, root_model, state.rot(), state.transl),
            problem.camera,
        )
        data = keypoint_data_term(kp, target, weights, rho=None)
        return (problem.data_scale * data + cfg.depth_prior_weight**2 * depth_prior(state.transl, depth_m=depth0)).sum()

    return minimize_lbfgs(
        name="camera",
        params=[state.delta, state.transl],
        objective=objective,
        monitor=cfg.monitor(cfg.camera_max_iters),
        history_size=cfg.history_size,
        lr=cfg.lr,
    )


def _rest_fit_loss(problem: _Problem, state: _State, rest: _RestBody) -> float:
    """Robust keypoint term of the rest body placed by ``state`` (all used keypoints)."""
    with torch.no_grad():
        kp = _project(
            _to_camera(rest.coco_model, rest.root_model, state.rot(), state.transl),
            problem.camera,
        )
        loss = keypoint_data_term(kp, problem.target, problem.weights, rho=problem.config.rho_px)
    value = float(loss.sum())
    return value if math.isfinite(value) else math.inf


def _fit_camera(problem: _Problem, group: list[_State], rest: _RestBody) -> tuple[_State, StageOutcome]:
    """Stage (a) from every yaw start of one orientation; keep the best rest-body fit."""
    best: tuple[float, _State, StageOutcome] | None = None
    for state in group:
        outcome = _camera_stage(problem, state, rest)
        score = math.inf if outcome.reason is StopReason.NON_FINITE else _rest_fit_loss(problem, state, rest)
        if best is None or score < best[0]:
            best = (score, state, outcome)
    _, state, outcome = best  # type: ignore[misc]  # the group is never empty
    return state, outcome


def _pose_stage(problem: _Problem, state: _State, weights: StageWeights, name: str) -> StageOutcome:
    cfg = problem.config
    return minimize_lbfgs(
        name=name,
        params=[state.delta, state.transl, state.body_pose, state.shape_latent],
        objective=lambda: problem.stage_loss(state, weights),
        monitor=cfg.monitor(weights.max_iters),
        history_size=cfg.history_size,
        lr=cfg.lr,
    )


@dataclass(frozen=True)
class _RestBody:
    """The start body (rest pose, mean shape), model frame: coco (1, 17, 3), root (1, 3); start depth (m)."""

    coco_model: torch.Tensor
    root_model: torch.Tensor
    depth: float


def _initial_states(problem: _Problem, notes: list[str]) -> tuple[list[list[_State]], _RestBody]:
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

    groups: list[list[_State]] = []
    for base in rotations:
        group = []
        for yaw in problem.config.camera_yaw_starts_deg:
            rot0 = _rot_y(math.radians(yaw), **kw) @ base
            at_zero = _to_camera(centre_model, root_model, rot0[None], torch.zeros(1, 3, **kw))[0, 0]
            transl = (ray * depth - at_zero)[None]
            group.append(
                _State(
                    rot0=rot0[None].clone(),
                    delta=torch.zeros(1, 3, **kw).requires_grad_(True),
                    transl=transl.clone().requires_grad_(True),
                    body_pose=pose.clone().requires_grad_(True),
                    shape_latent=problem.space.to_latent(shape).requires_grad_(True),
                )
            )
        groups.append(group)
    return groups, _RestBody(coco_model=rest_coco, root_model=root_model, depth=depth)


def _state_from_init(problem: _Problem, init: BodyParams) -> _State:
    body = problem.body
    kw = {"device": body.device, "dtype": body.dtype}
    expected = {
        "global_orient": (1, 3),
        "body_pose": (1, body.num_pose_joints, 3),
        "shape": (1, body.num_shape),
        "transl": (1, 3),
    }
    for name, shape in expected.items():
        value = getattr(init, name)
        if tuple(value.shape) != shape:
            raise FitInputError(f"init.{name} must have shape {shape} for body {body.name!r}, got {tuple(value.shape)}")
        if not bool(torch.isfinite(value).all()):
            raise FitInputError(f"init.{name} has non-finite values")
    if problem.space.bounded and bool(((init.shape < 0) | (init.shape > 1)).any()):
        raise FitInputError(f"init.shape holds {body.name} phenotypes, which must lie in [0, 1]")
    return _State(
        rot0=roma.rotvec_to_rotmat(init.global_orient.to(**kw)).detach().clone(),
        delta=torch.zeros(1, 3, **kw).requires_grad_(True),
        transl=init.transl.to(**kw).detach().clone().requires_grad_(True),
        body_pose=init.body_pose.to(**kw).detach().clone().requires_grad_(True),
        shape_latent=problem.space.to_latent(init.shape.to(**kw).detach()).requires_grad_(True),
    )


def _keypoint_error(problem: _Problem, state: _State) -> float:
    with torch.no_grad():
        kp = problem.keypoints_px(state)
    used = problem.weights[0] > 0
    if not bool(used.any()):
        return math.nan
    return float((kp[0] - problem.target[0]).norm(dim=-1)[used].mean())


def _summarise(stages: list[StageOutcome]) -> tuple[bool, str]:
    if not stages:
        return True, "no optimisation requested (init used as is)"
    for stage in stages:
        if stage.reason is StopReason.NON_FINITE:
            return False, f"aborted in stage {stage.name!r}: {stage.message}"
    last = stages[-1]
    return (
        last.reason.converged,
        f"last stage {last.name!r} stopped on {last.reason.value}: {last.message}",
    )


# --------------------------------------------------------------------------- public entry point
@torch.enable_grad()
def fit_intact(
    *,
    body: BodyModel,
    keypoints_px: np.ndarray | torch.Tensor,
    camera: PinholeCamera,
    config: IntactFitConfig = IntactFitConfig(),
    init: BodyParams | None = None,
) -> IntactFitResult:
    """Fit ``body`` to one person's intact 2D keypoints (SMPLify-X style; see the module docstring).

    keypoints_px: (25, 3) LDpose keypoints ``[x, y, v]`` in pixels; only 0-16 with v > 0 are used.
    camera: the image's pinhole intrinsics (the camera sits at the origin of the camera frame).
    init: optional (B = 1) start parameters; given, stages (a)/(b) are skipped and
    ``config.refine_iters`` iterations of the last stage's weights refine it.
    Raises FitInputError for unusable input (wrong shapes, non-finite visible keypoints, no
    visible shoulder/hip pair, a degenerate torso); a NaN/Inf during optimisation is not raised
    but reported (``converged=False`` and ``reason``) with the last finite parameters.
    """
    start = time.perf_counter()
    _check_camera(camera)
    target_np, weights_np = intact_targets(keypoints_px)
    kw = {"device": body.device, "dtype": body.dtype}
    problem = _Problem(
        body=body,
        camera=camera,
        target=torch.as_tensor(target_np, **kw)[None],
        weights=torch.as_tensor(weights_np, **kw)[None],
        data_scale=(config.data_weight_ref_px / max(camera.width, camera.height)) ** 2,
        space=_shape_space(body, config),
        hinges=find_joint_hinges(body),
        config=config,
    )
    used = tuple(int(i) for i in np.nonzero(weights_np > 0)[0])
    notes: list[str] = []
    flipped = False
    finals: list[float] = []
    if init is not None:
        state = _state_from_init(problem, init)
        stages: list[StageOutcome] = []
        if config.refine_iters > 0:
            refine = StageWeights(**{**config.stages[-1].__dict__, "max_iters": config.refine_iters})
            stages.append(_pose_stage(problem, state, refine, "refine"))
    else:
        if not used:
            raise FitInputError("no visible intact keypoint (0-16) to fit")
        candidates, rest = _initial_states(problem, notes)
        best: tuple[float, _State, list[StageOutcome], int] | None = None
        for k, group in enumerate(candidates):
            state, camera_outcome = _fit_camera(problem, group, rest)
            stages = [camera_outcome]
            if stages[-1].reason is not StopReason.NON_FINITE:
                for i, weights in enumerate(config.stages):
                    stages.append(_pose_stage(problem, state, weights, f"stage{i}"))
                    if stages[-1].reason is StopReason.NON_FINITE:
                        break
            aborted = any(s.reason is StopReason.NON_FINITE for s in stages)
            final = math.inf if aborted else stages[-1].final_loss
            finals.append(final)
            if best is None or final < best[0]:
                best = (final, state, stages, k)
        _, state, stages, k = best  # type: ignore[misc]  # candidates is never empty
        flipped = k > 0
        if len(candidates) > 1:
            notes.append(f"shoulders closer than {config.flip_threshold_px:g} px: fitted both orientations")
    converged, reason = _summarise(stages)
    if init is not None and not stages:  # kept exactly as imported
        kw = {"device": body.device, "dtype": body.dtype}
        params = BodyParams(*(t.detach().to(**kw).clone() for t in init.as_tuple()))
    else:
        params = state.params(problem.space)
    return IntactFitResult(
        params=params,
        stages=tuple(stages),
        converged=converged,
        reason=reason,
        keypoint_error_px=_keypoint_error(problem, state),
        used_keypoints=used,
        flipped=flipped,
        seconds=time.perf_counter() - start,
        warnings=tuple(notes),
        orientation_losses=tuple(finals),
    )
