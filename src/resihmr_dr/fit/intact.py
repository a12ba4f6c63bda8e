"""The initial intact-body fit: SMPLify-X-style fitting of a body model to 2D keypoints.

Stages (DESIGN.md §3):

(a) camera/torso (:mod:`~resihmr_dr.fit.intact_camera`): depth from the torso edges (2D
    shoulder-hip lengths vs the model's 3D lengths and the focal length), then the global
    orientation and translation fitted on the torso keypoints (shoulders, hips) with the body at
    rest. The start orientation faces the camera, or faces away when the 2D shoulders are swapped;
    when the shoulders are closer than ``flip_threshold_px`` the orientation turned by 180° about
    the vertical axis is fitted too (all stages) and the lower final loss is kept.
(b) pose and shape: robust Geman-McClure keypoint term, L2 pose prior, shape prior, elbow/knee
    hyper-extension limits (``IntactProblem.stage_loss`` in :mod:`~resihmr_dr.fit.intact_problem`),
    under a schedule of weights (``IntactFitConfig.stages``, :mod:`~resihmr_dr.fit.intact_config`),
    each stage minimised by L-BFGS with a strong-Wolfe line search under a convergence monitor.
(c) alternatively: start from imported parameters (``init``), skip (a)/(b), and optionally
    refine for ``refine_iterations`` iterations with the last stage's weights.

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
from dataclasses import dataclass, field

import numpy as np
import roma
import torch

from resihmr_dr.body.base import BodyModel, BodyParams
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.fit.intact_camera import fit_camera, initial_states
from resihmr_dr.fit.intact_config import IntactFitConfig, StageWeights
from resihmr_dr.fit.intact_problem import (
    FitInputError,
    FitState,
    IntactProblem,
    check_camera,
    intact_targets,
    shape_space,
)
from resihmr_dr.fit.monitor import StageOutcome, StopReason, minimize_lbfgs

__all__ = ["IntactFitResult", "fit_intact"]


@dataclass(frozen=True)
class IntactFitResult:
    """Outcome of ``fit_intact``.

    params: fitted parameters (B = 1, detached); the body's own shape units (Anny phenotypes in
    [0, 1], SMPL-X betas). stages: every stage run, in order (for the kept orientation).
    converged: strict: no NaN/Inf *and* the last stage stopped on ftol/gtol (a last stage that
    used up its ``iterations``, as SMPLify-X's schedule usually does, gives False; ``aborted``
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


def _pose_stage(problem: IntactProblem, state: FitState, weights: StageWeights, name: str) -> StageOutcome:
    """Stage (b), one step of the schedule: every variable under ``weights``."""
    cfg = problem.config
    return minimize_lbfgs(
        name=name,
        params=[state.delta, state.transl, state.body_pose, state.shape_latent],
        objective=lambda: problem.stage_loss(state, weights),
        monitor=cfg.monitor(weights.iterations),
        history_size=cfg.history_size,
        lr=cfg.lr,
    )


def _state_from_init(problem: IntactProblem, init: BodyParams) -> FitState:
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
    return FitState(
        rot0=roma.rotvec_to_rotmat(init.global_orient.to(**kw)).detach().clone(),
        delta=torch.zeros(1, 3, **kw).requires_grad_(True),
        transl=init.transl.to(**kw).detach().clone().requires_grad_(True),
        body_pose=init.body_pose.to(**kw).detach().clone().requires_grad_(True),
        shape_latent=problem.space.to_latent(init.shape.to(**kw).detach()).requires_grad_(True),
    )


def _keypoint_error(problem: IntactProblem, state: FitState) -> float:
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
    ``config.refine_iterations`` iterations of the last stage's weights refine it.
    Raises FitInputError for unusable input (wrong shapes, non-finite visible keypoints, no
    visible shoulder/hip pair, a degenerate torso); a NaN/Inf during optimisation is not raised
    but reported (``converged=False`` and ``reason``) with the last finite parameters.
    """
    start = time.perf_counter()
    check_camera(camera)
    target_np, weights_np = intact_targets(keypoints_px)
    kw = {"device": body.device, "dtype": body.dtype}
    problem = IntactProblem(
        body=body,
        camera=camera,
        target=torch.as_tensor(target_np, **kw)[None],
        weights=torch.as_tensor(weights_np, **kw)[None],
        data_scale=(config.data_weight_ref_px / max(camera.width, camera.height)) ** 2,
        space=shape_space(body, config),
        hinges=body.joint_hinges,
        config=config,
    )
    used = tuple(int(i) for i in np.nonzero(weights_np > 0)[0])
    notes: list[str] = []
    flipped = False
    finals: list[float] = []
    if init is not None:
        state = _state_from_init(problem, init)
        stages: list[StageOutcome] = []
        if config.refine_iterations > 0:
            refine = StageWeights(**{**config.stages[-1].__dict__, "iterations": config.refine_iterations})
            stages.append(_pose_stage(problem, state, refine, "refine"))
    else:
        if not used:
            raise FitInputError("no visible intact keypoint (0-16) to fit")
        candidates, rest = initial_states(problem, notes)
        best: tuple[float, FitState, list[StageOutcome], int] | None = None
        for k, group in enumerate(candidates):
            state, camera_outcome = fit_camera(problem, group, rest)
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
