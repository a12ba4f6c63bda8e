"""Several images of one person: which body parameters the views share, and the exact rigid maps
between a view's camera frame and the common world frame.

A subject seen in K images has one body shape, one set of residual-limb ends and one stump shape
(the cap). What else the views share is the :class:`ShareMode`:

- ``independent``: every image has its own pose, global orientation and translation (photos
  taken one after the other; the person moved);
- ``same_pose``: one pose, each image its own orientation and translation (simultaneous but
  uncalibrated cameras, or a person who stood still and was photographed from several sides);
- ``calibrated``: one pose, orientation and translation in the world frame, and each camera's
  extrinsics ``X_cam = R X_world + t`` place it in that camera (simultaneous, calibrated cameras).

A :class:`ViewRig` holds the mode and maps each view to its *pose slot* and *placement slot*
(the index of the pose / orientation-and-translation variables it uses) and, when calibrated, its
extrinsics. A body posed in the world frame is carried into a camera by :func:`to_view`;
:func:`params_in_camera` and :func:`params_in_world` are the same maps on the parameters
(``body(params_in_camera(p, E)) == to_view(body(p), E)`` up to rounding: the body rotates about
its root joint, ``R (p - root) + root + transl``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import roma
import torch

from resihmr_dr.body.base import JOINT_INDEX, BodyModel, BodyOutput, BodyParams
from resihmr_dr.data.records import Extrinsics

__all__ = ["ShareMode", "ViewRig", "ViewsConfig", "params_in_camera", "params_in_world", "root_model", "to_view"]


@dataclass(frozen=True)
class ViewsConfig:
    """Several images of one person (``fit.views`` in the config; annotations sharing a
    ``person_id``). same_pose: the images share one pose (simultaneous but uncalibrated cameras,
    or a person who stood still); use_extrinsics: when every image's camera gives ``R`` and ``t``,
    fit one world placement seen by every camera (False: ignore them); max_views: the most images
    of one person fitted together, the first in file order (0: all); joint_iterations: the L-BFGS
    cap of each phase of the joint keypoint fit (``fit.intact_views``); turn_starts: with
    same_pose and no extrinsics, start each further view's placement from its own fit turned by
    0, 90, 180 and 270 degrees about the body's vertical axis and keep the best keypoint fit (a
    side view that faces the wrong way; off by default: on the 20-person 4-view benchmark it
    lowered the anchor-aligned endpoint error 36.1 -> 33.5 mm but raised the local shape error
    8.6 -> 9.3 mm and the scale-free volume error 12.1 -> 18.9 %). depth_anchor: keep the
    refinement's depth anchor (``fit.refine`` weight ``depth``) when several images share one
    pose (same_pose, calibrated). Off by default: the other images see the depths one image
    cannot, and with two of them the anchor held the limb near the joint keypoint fit's
    direction (20-person 2-view benchmark, anchor-aligned endpoint error with / without it:
    33.9 / 29.2 mm uncalibrated, 26.2 / 20.9 mm calibrated; local shape 7.4 / 7.4 and 4.6 /
    4.8 mm). One image alone, or images with their own poses, always keep it."""

    same_pose: bool = False
    use_extrinsics: bool = True
    max_views: int = 0
    joint_iterations: int = 60
    turn_starts: bool = False
    depth_anchor: bool = False

    def __post_init__(self) -> None:
        if self.max_views < 0:
            raise ValueError(f"ViewsConfig.max_views must be >= 0 (0: all), got {self.max_views}")
        if self.joint_iterations < 0:
            raise ValueError(f"ViewsConfig.joint_iterations must be >= 0, got {self.joint_iterations}")


class ShareMode(enum.Enum):
    """What the images of one subject share besides shape, limb ends and stump (module docstring)."""

    INDEPENDENT = "independent"
    SAME_POSE = "same_pose"
    CALIBRATED = "calibrated"


@dataclass(frozen=True)
class ViewRig:
    """How K views of one subject are tied: the share mode and, when calibrated, each view's
    extrinsics (world -> its camera)."""

    mode: ShareMode
    num_views: int
    extrinsics: tuple[Extrinsics, ...] = ()

    def __post_init__(self) -> None:
        if self.num_views < 1:
            raise ValueError(f"a rig needs at least one view, got {self.num_views}")
        if self.mode is ShareMode.CALIBRATED and len(self.extrinsics) != self.num_views:
            raise ValueError(
                f"a calibrated rig needs one extrinsics per view: {len(self.extrinsics)} for {self.num_views}"
            )

    @staticmethod
    def choose(
        num_views: int,
        *,
        extrinsics: Sequence[Extrinsics | None],
        same_pose: bool = False,
        use_extrinsics: bool = True,
    ) -> ViewRig:
        """The rig for K views: calibrated when every view has extrinsics (and ``use_extrinsics``),
        else same_pose when asked, else independent. One view is always independent (today's
        single-image fit)."""
        if num_views == 1:
            return ViewRig(ShareMode.INDEPENDENT, 1)
        if use_extrinsics and len(extrinsics) == num_views and all(e is not None for e in extrinsics):
            return ViewRig(ShareMode.CALIBRATED, num_views, tuple(extrinsics))  # type: ignore[arg-type]
        return ViewRig(ShareMode.SAME_POSE if same_pose else ShareMode.INDEPENDENT, num_views)

    @property
    def shares_pose(self) -> bool:
        """True when several images see one pose (same_pose or calibrated with two or more views)."""
        return self.num_pose_slots < self.num_views

    @property
    def num_pose_slots(self) -> int:
        """How many poses are optimised."""
        return self.num_views if self.mode is ShareMode.INDEPENDENT else 1

    @property
    def num_place_slots(self) -> int:
        """How many (global orientation, translation) pairs are optimised."""
        return 1 if self.mode is ShareMode.CALIBRATED else self.num_views

    def pose_slot(self, view: int) -> int:
        """The pose variables view ``view`` uses."""
        return view if self.mode is ShareMode.INDEPENDENT else 0

    def place_slot(self, view: int) -> int:
        """The orientation and translation variables view ``view`` uses."""
        return 0 if self.mode is ShareMode.CALIBRATED else view

    @property
    def pose_slot_starts(self) -> tuple[int, ...]:
        """Per pose slot, the first view that uses it (whose start the slot takes)."""
        return tuple(
            next(k for k in range(self.num_views) if self.pose_slot(k) == j) for j in range(self.num_pose_slots)
        )

    @property
    def place_slot_starts(self) -> tuple[int, ...]:
        """Per placement slot, the first view that uses it (whose start the slot takes)."""
        return tuple(
            next(k for k in range(self.num_views) if self.place_slot(k) == j) for j in range(self.num_place_slots)
        )

    def in_world(self, body: BodyModel, params: Sequence[BodyParams]) -> list[BodyParams]:
        """Per view, its camera-frame parameters in the frame the placement variables live in:
        the world when calibrated (``params_in_world``), else its own camera's (unchanged)."""
        if self.mode is not ShareMode.CALIBRATED:
            return list(params)
        return [params_in_world(body, p, e) for p, e in zip(params, self.extrinsics)]

    def in_camera(self, body: BodyModel, params: BodyParams, view: int) -> BodyParams:
        """View ``view``'s slot parameters in its camera frame (the inverse of :meth:`in_world`)."""
        ext = self.view_extrinsics(view)
        return params if ext is None else params_in_camera(body, params, ext)

    def view_extrinsics(self, view: int) -> Extrinsics | None:
        """The world -> camera map of view ``view`` when calibrated, else None (the placement
        variables are in that camera's frame already)."""
        return self.extrinsics[view] if self.mode is ShareMode.CALIBRATED else None


def to_view(out: BodyOutput, extrinsics: Extrinsics | None) -> BodyOutput:
    """A body posed in the world frame, in the camera of ``extrinsics`` (None: unchanged)."""
    if extrinsics is None:
        return out
    rot = torch.tensor(extrinsics.R.copy(), dtype=out.verts.dtype, device=out.verts.device)
    t = torch.tensor(extrinsics.t.copy(), dtype=out.verts.dtype, device=out.verts.device)

    def move(points: torch.Tensor) -> torch.Tensor:
        return points @ rot.T + t

    return BodyOutput(verts=move(out.verts), joints=move(out.joints), coco_kp=move(out.coco_kp))


def root_model(body: BodyModel, params: BodyParams) -> torch.Tensor:
    """(B, 3) the root joint in the model frame (the point the global rotation turns about)."""
    joints, _ = body.keypoints_model(params.body_pose, params.shape)
    return joints[:, JOINT_INDEX["pelvis"]]


def params_in_camera(body: BodyModel, params: BodyParams, extrinsics: Extrinsics) -> BodyParams:
    """World-frame parameters as the same body in the camera of ``extrinsics``: the orientation
    ``R_e R``, the translation ``R_e (root + transl) + t_e - root``."""
    return _rigid(body, params, torch.tensor(extrinsics.R.copy()), torch.tensor(extrinsics.t.copy()))


def params_in_world(body: BodyModel, params: BodyParams, extrinsics: Extrinsics) -> BodyParams:
    """Camera-frame parameters of the camera of ``extrinsics`` in the world frame (the inverse
    of :func:`params_in_camera`)."""
    rot = torch.tensor(extrinsics.R.copy())
    return _rigid(body, params, rot.T, -(rot.T @ torch.tensor(extrinsics.t.copy())))


def _rigid(body: BodyModel, params: BodyParams, rot: torch.Tensor, t: torch.Tensor) -> BodyParams:
    kw = dict(dtype=params.transl.dtype, device=params.transl.device)
    rot, t = rot.to(**kw), t.to(**kw)
    root = root_model(body, params).to(**kw)
    orient = roma.rotmat_to_rotvec(rot @ roma.rotvec_to_rotmat(params.global_orient))
    transl = (root + params.transl) @ rot.T + t - root
    return BodyParams(global_orient=orient, body_pose=params.body_pose, shape=params.shape, transl=transl)
