"""The joint keypoint fit of several images of one person (before RAFO).

Each image is first fitted on its own (``fit.intact.fit_intact``); this stage then fits all of
them together: one body shape, the poses and placements the :class:`~resihmr_dr.fit.views.ViewRig`
shares (one pose for simultaneous views; one world placement and each camera's extrinsics when
calibrated), against the sum of every image's robust keypoint term (``fit.losses``), with the
pose, shape and hyper-extension priors of the schedule's last stage counted once per optimised
pose. Two L-BFGS phases: the placements alone (the views' starts disagree on the shared pose and
shape), then everything. Optionally (``turn_starts``; with one shared pose and no extrinsics),
each further view's placement first starts from its own fit's orientation turned by each of
``PLACEMENT_YAWS_DEG`` about the body's vertical axis and keeps the one that fits its keypoints
best (a side view's own fit may face the wrong way).

Frames: each view's keypoints in its own pixels; its body in its own camera frame, or in the world
frame carried into the camera by its extrinsics (``fit.views.to_view``'s map).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import roma
import torch

from resihmr_dr.body.base import JOINT_INDEX, BodyModel, BodyParams
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.fit.intact_config import IntactFitConfig
from resihmr_dr.fit.intact_problem import intact_targets, shape_space, to_camera
from resihmr_dr.fit.losses import hyperextension_penalty, keypoint_data_term, l2_prior
from resihmr_dr.fit.monitor import StageOutcome, minimize_lbfgs
from resihmr_dr.fit.views import ShareMode, ViewRig

__all__ = ["PLACEMENT_YAWS_DEG", "JointIntactResult", "fit_intact_views"]

# Same pose: the orientations each further view's placement starts from, its own fit's turned by
# these angles about the body's vertical axis (the best keypoint fit is kept).
PLACEMENT_YAWS_DEG: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)


@dataclass(frozen=True)
class JointIntactResult:
    """params: per view, the jointly fitted body in that view's camera frame (B = 1, detached;
    one shape for all); stages: the two phases' outcomes; keypoint_error_px: per view, the mean 2D
    distance over its used keypoints."""

    params: tuple[BodyParams, ...]
    stages: tuple[StageOutcome, ...]
    keypoint_error_px: tuple[float, ...]

    @property
    def converged(self) -> bool:
        """The last phase stopped on its tolerances."""
        return bool(self.stages[-1].reason.converged)


@torch.enable_grad()
def fit_intact_views(
    *,
    body: BodyModel,
    keypoints_px: Sequence[np.ndarray],
    cameras: Sequence[PinholeCamera],
    starts: Sequence[BodyParams],
    rig: ViewRig,
    config: IntactFitConfig = IntactFitConfig(),
    iterations: int = 60,
    turn_starts: bool = False,
) -> JointIntactResult:
    """Fit the views of one person jointly (module docstring).

    keypoints_px: per view (25, 3) LDpose ``[x, y, v]``; cameras: per view its intrinsics;
    starts: per view its own fit (camera frame), e.g. ``fit_intact``'s; iterations: the L-BFGS cap
    of each phase; turn_starts: with one shared pose and no extrinsics, try each further view's
    start turned by ``PLACEMENT_YAWS_DEG`` (module docstring).
    """
    k = rig.num_views
    if not (len(keypoints_px) == len(cameras) == len(starts) == k):
        raise ValueError(
            f"need {k} keypoint sets, cameras and starts, got {len(keypoints_px)}, {len(cameras)}, {len(starts)}"
        )
    kw = dict(device=body.device, dtype=body.dtype)
    space = shape_space(body, config)
    weights = config.stages[-1]
    targets, masks = [], []
    for kp in keypoints_px:
        target, w = intact_targets(kp)
        targets.append(torch.as_tensor(target, **kw)[None])
        masks.append(torch.as_tensor(w, **kw)[None])
    data_scales = [(config.data_weight_ref_px / max(c.width, c.height)) ** 2 for c in cameras]

    # Starts: each slot from the first view that uses it (calibrated: view 0 in the world frame).
    placed = rig.in_world(body, starts)
    first_of_pose, first_of_place = rig.pose_slot_starts, rig.place_slot_starts
    shape_latent = (
        space.to_latent(torch.stack([s.shape.to(**kw) for s in starts]).mean(0)).detach().requires_grad_(True)
    )
    poses = [placed[i].body_pose.to(**kw).detach().clone().requires_grad_(True) for i in first_of_pose]
    rot0 = [roma.rotvec_to_rotmat(placed[i].global_orient.to(**kw)).detach() for i in first_of_place]
    deltas = [torch.zeros(1, 3, **kw, requires_grad=True) for _ in first_of_place]
    transls = [placed[i].transl.to(**kw).detach().clone().requires_grad_(True) for i in first_of_place]
    ext = [
        (torch.as_tensor(e.R.copy(), **kw), torch.as_tensor(e.t.copy(), **kw)) if e is not None else None
        for e in (rig.view_extrinsics(i) for i in range(k))
    ]

    def view_keypoints(i: int) -> torch.Tensor:
        shape = space.from_latent(shape_latent)
        joints, coco = body.keypoints_model(poses[rig.pose_slot(i)], shape)
        q = rig.place_slot(i)
        rot = roma.rotvec_to_rotmat(deltas[q]) @ rot0[q]
        points = to_camera(coco, joints[:, JOINT_INDEX["pelvis"]], rot, transls[q])
        if ext[i] is not None:
            points = points @ ext[i][0].T + ext[i][1]
        return cameras[i].project(points)

    def data_loss(i: int) -> torch.Tensor:
        data = keypoint_data_term(view_keypoints(i), targets[i], masks[i], rho=config.rho_px)
        return (weights.data**2) * data_scales[i] * data.sum()

    def objective() -> torch.Tensor:
        loss = torch.zeros((), **kw)
        for i in range(k):
            loss = loss + data_loss(i)
        for pose in poses:
            loss = loss + (weights.pose_prior**2) * l2_prior(pose).sum()
            loss = loss + (weights.angle_limit**2) * hyperextension_penalty(body.joint_hinges.flexion(pose)).sum()
        shape = space.from_latent(shape_latent)
        return loss + (weights.shape_prior**2) * l2_prior(shape, mean=space.mean, scale=space.scale).sum()

    stages = []
    if turn_starts and rig.mode is ShareMode.SAME_POSE:
        # Each further view's own fit posed its own body: under the shared pose its orientation
        # may be off by a turn (a side view's front and back look alike). Start each from the
        # best of its orientation turned about the body's vertical axis.
        for q in range(1, rig.num_place_slots):
            views_q = [i for i in range(k) if rig.place_slot(i) == q]
            start_rot, start_transl = rot0[q], transls[q].detach().clone()
            best = None
            for yaw in PLACEMENT_YAWS_DEG:
                rot0[q] = start_rot @ roma.rotvec_to_rotmat(torch.tensor([0.0, math.radians(yaw), 0.0], **kw))
                with torch.no_grad():
                    deltas[q].zero_()
                    transls[q].copy_(start_transl)
                outcome = minimize_lbfgs(
                    name=f"view {views_q[0]} start turned {yaw:g} deg",
                    params=[deltas[q], transls[q]],
                    objective=lambda views_q=views_q: sum(data_loss(i) for i in views_q),
                    monitor=config.monitor(iterations),
                    history_size=config.history_size,
                    lr=config.lr,
                )
                if best is None or outcome.final_loss < best[0]:
                    best = (outcome.final_loss, rot0[q], deltas[q].detach().clone(), transls[q].detach().clone())
            _, rot0[q], delta, transl = best
            with torch.no_grad():
                deltas[q].copy_(delta)
                transls[q].copy_(transl)
    for name, free in (("views placement", [*deltas, *transls]), ("views", [*deltas, *transls, *poses, shape_latent])):
        stages.append(
            minimize_lbfgs(
                name=name,
                params=free,
                objective=objective,
                monitor=config.monitor(iterations),
                history_size=config.history_size,
                lr=config.lr,
            )
        )

    with torch.no_grad():
        shape = space.from_latent(shape_latent).detach().clone()
        params, errors = [], []
        for i in range(k):
            q = rig.place_slot(i)
            p = BodyParams(
                global_orient=roma.rotmat_to_rotvec(roma.rotvec_to_rotmat(deltas[q]) @ rot0[q]).detach().clone(),
                body_pose=poses[rig.pose_slot(i)].detach().clone(),
                shape=shape,
                transl=transls[q].detach().clone(),
            )
            params.append(rig.in_camera(body, p, i))
            used = masks[i][0] > 0
            dist = (view_keypoints(i)[0] - targets[i][0]).norm(dim=-1)
            errors.append(float(dist[used].mean()) if bool(used.any()) else math.nan)
    return JointIntactResult(params=tuple(params), stages=tuple(stages), keypoint_error_px=tuple(errors))
