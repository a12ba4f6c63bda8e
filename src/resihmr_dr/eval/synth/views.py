"""The camera ring of a multi-view synthetic person (``resihmr-dr synth --views N``).

View ``k`` of ``N`` sees the person from a camera turned ``k * yaw_step_deg`` about the body's
vertical axis through its pelvis: in view ``k``'s camera frame the body is turned by that much
more than in view 0's (the yaw convention of :func:`~resihmr_dr.eval.synth.scene.view_orient`:
positive turns its left side away from the camera), at the same distance and pitch, with the
same intrinsics. The world frame is view 0's camera frame, so view ``k``'s extrinsics
``X_cam = R X_world + t`` (:class:`ViewCamera`) map view 0's camera frame to view ``k``'s; view 0
has ``R = I``, ``t = 0``.

Pure functions: the ring (:func:`camera_ring`), the rigid motion of a stumped mesh and its limbs'
truth into a view (:func:`move_stumped_mesh`), the body parameters seen by a view
(:func:`view_global_orient`) and the per-view pose perturbation of ``--view-pose vary``
(:func:`perturb_pose`).

Frames: camera frame (OpenCV x right, y down, z forward, metres); the body model's frame is
Y up (``global_orient`` maps it to the camera frame).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import roma
import torch

from resihmr_dr.data.records import Extrinsics
from resihmr_dr.eval.limb_truth import LimbTruth
from resihmr_dr.eval.synth.stumped import StumpedMesh

__all__ = [
    "PERTURBED_BONES",
    "POSE_PERTURBATION_RAD",
    "VIEW_POSES",
    "ViewCamera",
    "body_up_cam",
    "camera_ring",
    "move_stumped_mesh",
    "perturb_pose",
    "view_global_orient",
    "view_name",
    "view_yaws",
]

VIEW_POSES: tuple[str, ...] = ("same", "vary")  # one pose in every view (simultaneous cameras), or one per view
# ``vary``: the bones the named poses set (scene.sample_pose), each axis moved by up to this much.
PERTURBED_BONES: tuple[str, ...] = (
    "spine03",
    "head",
    "upperarm01.L",
    "upperarm01.R",
    "lowerarm01.L",
    "lowerarm01.R",
    "upperleg01.L",
    "upperleg01.R",
    "lowerleg01.L",
    "lowerleg01.R",
)
POSE_PERTURBATION_RAD = 0.12


@dataclass(frozen=True, eq=False)
class ViewCamera:
    """One view of the ring: its index, the yaw it adds (degrees), its name (``yaw090``) and its
    camera's extrinsics ``X_cam = R @ X_world + t`` (world = view 0's camera frame)."""

    index: int
    yaw_deg: float
    name: str
    extrinsics: Extrinsics

    def to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """(N, 3) world (view 0 camera) points -> this view's camera frame."""
        return self.extrinsics.to_camera(np.asarray(points_world, dtype=np.float64))

    def extrinsics_dict(self) -> dict[str, list]:
        """``{"R": 3x3 nested list, "t": 3 list}``, the LDpose camera's extrinsics fields."""
        return {"R": self.extrinsics.R.tolist(), "t": self.extrinsics.t.tolist()}


def view_name(yaw_deg: float) -> str:
    """``yaw090`` for a view turned 90 degrees (whole degrees, in [0, 360))."""
    return f"yaw{round(yaw_deg) % 360:03d}"


def view_yaws(views: int, yaw_step_deg: float) -> tuple[float, ...]:
    """(views,) the yaw each view adds: ``k * yaw_step_deg``. ValueError unless ``views >= 1``,
    the step is finite and no two views share a camera (their whole-degree names differ)."""
    if isinstance(views, bool) or not isinstance(views, int) or views < 1:
        raise ValueError(f"views must be an integer >= 1, got {views!r}")
    if not math.isfinite(yaw_step_deg):
        raise ValueError(f"yaw_step_deg must be finite, got {yaw_step_deg}")
    yaws = tuple(k * float(yaw_step_deg) for k in range(views))
    names = [view_name(y) for y in yaws]
    if len(set(names)) < views:
        raise ValueError(
            f"{views} views {yaw_step_deg:g} degrees apart repeat a camera ({', '.join(names)}); "
            "choose a step with distinct views modulo 360"
        )
    return yaws


def _rotmat(rotvec: np.ndarray) -> np.ndarray:
    return roma.rotvec_to_rotmat(torch.as_tensor(np.asarray(rotvec, dtype=np.float64))).numpy()


def body_up_cam(global_orient: np.ndarray) -> np.ndarray:
    """(3,) the body's vertical axis (the model's +Y) in the camera frame for a (3,) axis-angle
    ``global_orient``."""
    return _rotmat(global_orient)[:, 1]


def camera_ring(
    *, global_orient: np.ndarray, centre_cam: np.ndarray, views: int, yaw_step_deg: float
) -> tuple[ViewCamera, ...]:
    """The ``views`` cameras of one person (module docstring).

    global_orient: (3,) the body's model -> view 0 camera axis-angle; centre_cam: (3,) the point
    the cameras turn about (the pelvis) in view 0's camera frame. View ``k``: ``R_k`` turns by
    ``k * yaw_step_deg`` about the body's vertical axis, ``t_k = c - R_k c``.
    """
    rot0 = _rotmat(global_orient)
    centre = np.asarray(centre_cam, dtype=np.float64)
    ring = []
    for k, yaw in enumerate(view_yaws(views, yaw_step_deg)):
        if k == 0:
            rot, transl = np.eye(3), np.zeros(3)
        else:
            turn = _rotmat(np.array([0.0, math.radians(yaw), 0.0]))  # about the model's vertical axis
            rot = rot0 @ turn @ rot0.T
            transl = centre - rot @ centre
        ring.append(ViewCamera(index=k, yaw_deg=yaw, name=view_name(yaw), extrinsics=Extrinsics(R=rot, t=transl)))
    return tuple(ring)


def view_global_orient(global_orient: np.ndarray, view: ViewCamera) -> np.ndarray:
    """(3,) the body's global_orient seen by ``view`` (model -> its camera frame): ``R_k R_0``.

    With the ring turning about the pelvis (the root the body model rotates about), the body's
    ``transl`` is the same in every view."""
    return roma.rotmat_to_rotvec(torch.as_tensor(view.extrinsics.R @ _rotmat(global_orient))).numpy()


def _move_limb(limb: LimbTruth, view: ViewCamera) -> LimbTruth:
    """The limb's truth in ``view``'s camera frame (its points and axis moved; the measurements,
    λ and lengths are rigid invariants and stay)."""

    def move(point: np.ndarray) -> np.ndarray:
        return view.extrinsics.R @ point + view.extrinsics.t

    return dataclasses.replace(
        limb,
        anchor_cam=move(limb.anchor_cam),
        target_cam=move(limb.target_cam),
        endpoint_cam=move(limb.endpoint_cam),
        cut_point_cam=move(limb.cut_point_cam),
        axis_cam=view.extrinsics.R @ limb.axis_cam,
    )


def move_stumped_mesh(mesh: StumpedMesh, view: ViewCamera) -> StumpedMesh:
    """The stumped mesh (world = view 0 camera frame) in ``view``'s camera frame: vertices
    ``R v + t``, the limbs' points alike; faces, labels and vertex sources unchanged."""
    return dataclasses.replace(
        mesh, verts=view.to_camera(mesh.verts), limbs=tuple(_move_limb(limb, view) for limb in mesh.limbs)
    )


def perturb_pose(
    body_pose: np.ndarray,
    rng: np.random.Generator,
    *,
    pose_joint_names: Sequence[str],
    amount_rad: float = POSE_PERTURBATION_RAD,
) -> np.ndarray:
    """(P, 3) a copy of ``body_pose`` with each axis of the ``PERTURBED_BONES`` moved by a
    uniform draw in ``[-amount_rad, amount_rad]`` (``--view-pose vary``)."""
    names = list(pose_joint_names)
    pose = np.array(body_pose, dtype=np.float64, copy=True)
    for bone in PERTURBED_BONES:
        pose[names.index(bone)] += rng.uniform(-amount_rad, amount_rad, size=3)
    return pose
