"""The random scene of one synthetic sample: residual types and stumps, body, pose, view, camera.

:func:`sample_scene` makes every random draw of a sample before its mesh is cut and rendered
(the order of the draws is part of the benchmark: sample ``i`` depends only on the seed and
``i``); :func:`frame_camera` then places the posed body in front of the camera.

Frames: the body model's axes are Anny's (Z up) for poses; ``global_orient`` maps the model to
the camera frame (OpenCV x right, y down, z forward, metres); pixels ``_px``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import roma
import torch

from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import LimbStatus
from resihmr_dr.eval.stump_shapes import STUMP_SHAPES, StumpShape, sample_stump_shape

__all__ = [
    "LAMBDA_RANGE",
    "POSES",
    "RESIDUAL_TYPES",
    "VIEWS",
    "ResidualSpec",
    "Scene",
    "frame_camera",
    "parse_types",
    "sample_phenotype",
    "sample_pose",
    "sample_scene",
    "view_orient",
]

STATUS_BY_NAME = {s.value: s for s in LimbStatus if s.is_residual}
# The eight residual types: "<side>_<status>".
RESIDUAL_TYPES: tuple[str, ...] = tuple(
    f"{side}_{status}"
    for status in ("transhumeral", "transradial", "transfemoral", "transtibial")
    for side in ("left", "right")
)
POSES: tuple[str, ...] = ("standing", "walking", "sitting", "arm_raised")
VIEWS: tuple[str, ...] = ("front", "three_quarter", "side")
LAMBDA_RANGE = (0.25, 0.85)  # true endpoint along the segment


def _type_parts(name: str) -> tuple[str, LimbStatus]:
    """'left_transtibial' -> ('left_leg', TRANSTIBIAL)."""
    side, _, status_name = name.partition("_")
    status = STATUS_BY_NAME[status_name]
    kind = "arm" if status in (LimbStatus.TRANSHUMERAL, LimbStatus.TRANSRADIAL) else "leg"
    return f"{side}_{kind}", status


def parse_types(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Residual types from a comma-separated string or a sequence; ``None``/"all" -> all eight.

    Accepts full names (``left_transtibial``) and statuses (``transtibial`` = both sides).
    """
    if spec is None:
        return RESIDUAL_TYPES
    items = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if not items or items == ["all"]:
        return RESIDUAL_TYPES
    out: list[str] = []
    for item in items:
        if item in RESIDUAL_TYPES:
            chosen = [item]
        elif item in STATUS_BY_NAME:
            chosen = [f"left_{item}", f"right_{item}"]
        else:
            raise ValueError(
                f"unknown residual type {item!r}; expected 'all', one of {sorted(STATUS_BY_NAME)} "
                f"or one of {list(RESIDUAL_TYPES)}"
            )
        out.extend(c for c in chosen if c not in out)
    return tuple(t for t in RESIDUAL_TYPES if t in out)


# --------------------------------------------------------------------------- people and poses
def sample_phenotype(rng: np.random.Generator) -> np.ndarray:
    """(6,) Anny phenotype (gender, age, muscle, weight, height, proportions) in [0, 1].

    Ages: 15 % children/teenagers, 65 % adults, 20 % older adults.
    """
    group = rng.uniform()
    age = rng.uniform(0.2, 0.38) if group < 0.15 else rng.uniform(0.42, 0.72) if group < 0.8 else rng.uniform(0.78, 1.0)
    return np.array(
        [
            rng.uniform(0.0, 1.0),
            age,
            rng.uniform(0.15, 0.85),
            rng.uniform(0.1, 0.9),
            rng.uniform(0.1, 0.9),
            rng.uniform(0.2, 0.8),
        ]
    )


def sample_pose(pose_name: str, rng: np.random.Generator, *, pose_joint_names: Sequence[str]) -> np.ndarray:
    """(P, 3) Anny body pose (axis-angles in Anny's Z-up axes, local-ref) for a named pose.

    Conventions found by rendering: legs: a negative X rotation flexes the hip (thigh forward), a
    positive one on the shank flexes the knee; arms (rest: A-pose): X > 0 lowers the arm to the
    side, X < 0 raises it sideways; Z swings it forward (right arm Z > 0, left arm Z < 0); a
    negative X on the forearm flexes the elbow.
    """
    if pose_name not in POSES:
        raise ValueError(f"unknown pose {pose_name!r}; expected one of {POSES}")
    names = list(pose_joint_names)
    pose = np.zeros((len(names), 3))

    def put(bone: str, value) -> None:
        pose[names.index(bone)] = value

    u = rng.uniform
    put("spine03", [u(-0.08, 0.08), u(-0.1, 0.1), u(-0.05, 0.05)])
    put("head", [u(-0.15, 0.15), u(-0.1, 0.1), u(-0.3, 0.3)])
    arm_l = [u(0.2, 0.9), 0.0, -u(-0.15, 0.3)]
    arm_r = [u(0.2, 0.9), 0.0, u(-0.15, 0.3)]
    elbow_l, elbow_r = [-u(0.05, 0.6), 0.0, 0.0], [-u(0.05, 0.6), 0.0, 0.0]
    leg_l = [u(-0.12, 0.08), 0.0, u(-0.02, 0.1)]
    leg_r = [u(-0.12, 0.08), 0.0, -u(-0.02, 0.1)]
    knee_l, knee_r = [u(0.0, 0.2), 0.0, 0.0], [u(0.0, 0.2), 0.0, 0.0]
    if pose_name == "walking":
        stride = u(0.3, 0.5)
        front_left = u() < 0.5
        flex, ext = [-stride, 0.0, 0.0], [stride * 0.6, 0.0, 0.0]
        leg_l, leg_r = (flex, ext) if front_left else (ext, flex)
        knee_front, knee_back = [u(0.05, 0.2), 0.0, 0.0], [u(0.3, 0.6), 0.0, 0.0]
        knee_l, knee_r = (knee_front, knee_back) if front_left else (knee_back, knee_front)
        swing = u(0.25, 0.5)  # arms swing opposite to the legs
        arm_l = [u(0.4, 0.8), 0.0, swing if front_left else -swing]
        arm_r = [u(0.4, 0.8), 0.0, swing if front_left else -swing]
    elif pose_name == "sitting":
        leg_l = [-u(1.25, 1.55), 0.0, u(0.0, 0.2)]
        leg_r = [-u(1.25, 1.55), 0.0, -u(0.0, 0.2)]
        knee_l, knee_r = [u(1.2, 1.6), 0.0, 0.0], [u(1.2, 1.6), 0.0, 0.0]
        arm_l, arm_r = [u(0.3, 0.8), 0.0, -u(0.2, 0.5)], [u(0.3, 0.8), 0.0, u(0.2, 0.5)]
        elbow_l, elbow_r = [-u(0.5, 1.0), 0.0, 0.0], [-u(0.5, 1.0), 0.0, 0.0]
    elif pose_name == "arm_raised":
        lift = -u(0.9, 1.6)
        if u() < 0.5:
            arm_l = [lift, 0.0, -u(0.0, 0.3)]
        else:
            arm_r = [lift, 0.0, u(0.0, 0.3)]
    put("upperarm01.L", arm_l)
    put("upperarm01.R", arm_r)
    put("lowerarm01.L", elbow_l)
    put("lowerarm01.R", elbow_r)
    put("upperleg01.L", leg_l)
    put("upperleg01.R", leg_r)
    put("lowerleg01.L", knee_l)
    put("lowerleg01.R", knee_r)
    return pose


def view_orient(*, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """(3,) global_orient (axis-angle, model -> camera frame) for a body turned ``yaw_deg`` about
    its vertical axis (positive turns its left side away from the camera) seen from ``pitch_deg``
    above (positive: the camera looks down)."""
    facing = roma.rotvec_to_rotmat(torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64))
    turn = roma.rotvec_to_rotmat(torch.tensor([0.0, math.radians(yaw_deg), 0.0], dtype=torch.float64))
    tilt = roma.rotvec_to_rotmat(torch.tensor([-math.radians(pitch_deg), 0.0, 0.0], dtype=torch.float64))
    return roma.rotmat_to_rotvec(tilt @ facing @ turn).numpy()


def _sample_yaw(view: str, rng: np.random.Generator, *, residual_sides: set[str]) -> float:
    """Yaw (degrees) for a view, turning the residual side towards the camera in side views."""
    if view == "front":
        return float(rng.uniform(-15, 15))
    magnitude = float(rng.uniform(30, 55) if view == "three_quarter" else rng.uniform(70, 88))
    if residual_sides == {"left"}:
        return -magnitude  # left side towards the camera
    if residual_sides == {"right"}:
        return magnitude
    return magnitude if rng.uniform() < 0.5 else -magnitude


# --------------------------------------------------------------------------- residual limbs
@dataclass(frozen=True)
class ResidualSpec:
    """One residual limb to make: type name (``RESIDUAL_TYPES``), true ``lam`` of the endpoint
    along J_a -> J_t, and the stump shape."""

    type_name: str
    lam: float
    shape: StumpShape

    @property
    def limb_name(self) -> str:
        """The limb ('left_leg', ...) of this residual type."""
        return _type_parts(self.type_name)[0]

    @property
    def status(self) -> LimbStatus:
        """The residual status (transtibial, ...) of this type."""
        return _type_parts(self.type_name)[1]


def _sample_residual_types(index: int, rng: np.random.Generator, types: tuple[str, ...]) -> list[str]:
    """The primary type cycles through ``types`` (balanced); 30 % get a second residual limb
    (bilateral or arm + leg) of an allowed type on another limb."""
    primary = types[index % len(types)]
    chosen = [primary]
    if rng.uniform() < 0.3:
        others = [t for t in types if _type_parts(t)[0] != _type_parts(primary)[0]]
        if others:
            chosen.append(others[int(rng.integers(len(others)))])
    return chosen


# --------------------------------------------------------------------------- one scene
@dataclass(frozen=True)
class Scene:
    """The random draws of one sample.

    residuals: the residual limbs to make; pose_name (``POSES``), view (``VIEWS``), yaw_deg and
    pitch_deg of the view (:func:`view_orient`); phenotype: (6,) Anny shape; body_pose: (P, 3)
    Anny pose; global_orient: (3,) model -> camera axis-angle; focal_px: the focal length; fill:
    the fraction of the image's size the person spans; shift_px: (2,) the person's offset from
    the image centre (:func:`frame_camera`).
    """

    residuals: tuple[ResidualSpec, ...]
    pose_name: str
    view: str
    yaw_deg: float
    pitch_deg: float
    phenotype: np.ndarray
    body_pose: np.ndarray
    global_orient: np.ndarray
    focal_px: float
    fill: float
    shift_px: np.ndarray


def sample_scene(
    rng: np.random.Generator,
    *,
    index: int,
    types: tuple[str, ...],
    pose_joint_names: Sequence[str],
    image_size: int,
) -> Scene:
    """Draw sample ``index``'s scene from ``rng``: its residual types (the primary type cycles
    through ``types``) with their true λ and stump shapes, its pose, view, phenotype and camera."""
    type_names = _sample_residual_types(index, rng, types)
    # The primary limb's shape cycles too (shifted per round of types, so types and shapes mix).
    primary_shape = STUMP_SHAPES[(index + index // len(types)) % len(STUMP_SHAPES)]
    shape_names = [primary_shape] + [STUMP_SHAPES[int(rng.integers(len(STUMP_SHAPES)))] for _ in type_names[1:]]
    residuals = tuple(
        ResidualSpec(t, float(rng.uniform(*LAMBDA_RANGE)), sample_stump_shape(name, rng))
        for t, name in zip(type_names, shape_names, strict=True)
    )
    pose_name = POSES[int(rng.integers(len(POSES)))]
    sides = {spec.limb_name.split("_")[0] for spec in residuals}
    view = VIEWS[int(rng.integers(len(VIEWS)))]
    if view == "side" and len(sides) > 1:
        view = "three_quarter"
    yaw = _sample_yaw(view, rng, residual_sides=sides)
    pitch = float(rng.uniform(-8.0, 12.0))
    phenotype = sample_phenotype(rng)
    pose = sample_pose(pose_name, rng, pose_joint_names=pose_joint_names)
    return Scene(
        residuals=residuals,
        pose_name=pose_name,
        view=view,
        yaw_deg=yaw,
        pitch_deg=pitch,
        phenotype=phenotype,
        body_pose=pose,
        global_orient=view_orient(yaw_deg=yaw, pitch_deg=pitch),
        focal_px=float(image_size * rng.uniform(1.0, 2.8)),
        fill=float(rng.uniform(0.62, 0.85)),
        shift_px=rng.uniform(-0.05, 0.05, size=2) * image_size,
    )


def frame_camera(
    verts_model_rel: np.ndarray,
    *,
    image_size: int,
    focal_px: float,
    fill: float,
    shift_px: np.ndarray,
) -> tuple[PinholeCamera, np.ndarray]:
    """Camera and (3,) translation placing rotated vertices (N, 3) (about the origin) to fill
    ``fill`` of the image's larger extent, centred (plus ``shift_px``)."""
    cam = PinholeCamera(
        fx=focal_px,
        fy=focal_px,
        cx=image_size / 2,
        cy=image_size / 2,
        width=image_size,
        height=image_size,
    )
    extent = float(np.max(verts_model_rel[:, :2].max(0) - verts_model_rel[:, :2].min(0)))
    depth = focal_px * extent / (fill * image_size)
    transl = np.array([0.0, 0.0, depth])
    for _ in range(3):
        pts = verts_model_rel + transl
        xy = pts[:, :2] / pts[:, 2:3] * focal_px
        span = float(np.max(xy.max(0) - xy.min(0)))
        transl[2] *= span / (fill * image_size)
        pts = verts_model_rel + transl
        xy = pts[:, :2] / pts[:, 2:3] * focal_px
        centre = 0.5 * (xy.max(0) + xy.min(0))
        transl[:2] -= (centre - shift_px) * transl[2] / focal_px
    return cam, transl
