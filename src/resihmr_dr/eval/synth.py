"""Synthetic amputee benchmark generator (``resihmr-dr synth``): Anny people with true stumps.

Each sample is an Anny body (random phenotype, a natural pose, a front / three-quarter / side
view, random focal length and distance) with one or more residual limbs cut at a random
``lambda_cut`` along the segment and closed by an individual stump shape of
:mod:`resihmr_dr.eval.stump_shapes` (independent of the fitter's cap). The stump's tip (the
apex of the swept surface, on its centre line) is the residual endpoint; its position along the
segment axis is the true ``lambda``.

Output layout (``out_dir``)::

    annotations.json            LDpose-format (25 keypoints, camera intrinsics, mask_path)
    images/000001.png           shaded render on a plain / gradient / textured background
    masks/000001.png            person mask (0/255)
    gt/index.json               one entry per sample: image, ann_id, gt folder, residual types
    gt/000001_1/gt.json         ground truth (camera frame, metres): see ``sample_ground_truth``
    gt/000001_1/mesh.ply        the true mesh (with its stumps) in the camera frame
    gt/000001_1/labels.npz      per-vertex segment labels and source vertex of the intact Anny mesh

Frames: camera frame (OpenCV x right, y down, z forward, metres); pixels ``_px``.
Deterministic: sample ``i`` depends only on ``(seed, i)`` and the options.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import roma
import torch
from PIL import Image

from resihmr_dr.atomic import atomic_write_json, json_value
from resihmr_dr.body.base import JOINT_INDEX, SEGMENT_INDEX, BodyModel, BodyParams, limb_segment_joints
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import (
    KEYPOINT_INDEX,
    KEYPOINT_NAMES,
    LIMB_BY_NAME,
    NUM_KEYPOINTS,
    LimbStatus,
)
from resihmr_dr.eval.stump_shapes import (
    STUMP_SHAPES,
    StumpShape,
    atrophy_scale,
    build_stump,
    meridian,
    sample_stump_shape,
)
from resihmr_dr.render.zbuffer import rasterize, shade
from resihmr_dr.stump.cut import (
    CutError,
    boundary_loops,
    cut_limb,
)
from resihmr_dr.stump.geometry import cross_section, stump_geometry

__all__ = [
    "POSES",
    "RESIDUAL_TYPES",
    "VIEWS",
    "ResidualSpec",
    "StumpedMesh",
    "SynthSample",
    "generate_dataset",
    "generate_sample",
    "keypoints_25",
    "make_stumped_mesh",
    "parse_types",
    "sample_phenotype",
    "sample_pose",
    "view_orient",
    "write_ply",
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
MIN_LAMBDA_CUT = 0.14  # the cut plane stays this far along the segment (clean single-loop cut)
VISIBLE_DEPTH_TOL_M = 0.12  # a keypoint is occluded (v = 1) when the surface is this much nearer


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


@dataclass(frozen=True)
class StumpedMesh:
    """A posed body with its residual limbs cut and closed by true stumps (camera frame).

    verts: (V, 3); faces: (F, 3) outward; vertex_segment: (V,) labels (``SEGMENT_NAMES``; stump
    vertices get the residual segment); source_vertex: (V,) index of the intact body vertex each
    vertex is (-1 for new vertices); limbs: per residual limb, a dict of ground truth (see
    :func:`make_stumped_mesh`).
    """

    verts: np.ndarray
    faces: np.ndarray
    vertex_segment: np.ndarray
    source_vertex: np.ndarray
    limbs: tuple[dict, ...]


def make_stumped_mesh(
    *,
    verts_cam: np.ndarray,
    faces: np.ndarray,
    vertex_segment: np.ndarray,
    joints_cam: np.ndarray,
    residuals: Sequence[ResidualSpec],
    num_rings: int = 14,
) -> StumpedMesh:
    """Cut each residual limb and close it with its stump so that the tip lands at ``lam``.

    verts_cam: (V, 3) intact posed body; faces: (F, 3); vertex_segment: (V,); joints_cam:
    (15, 3) ``JOINT_NAMES`` joints. The cut plane sits ``cap length`` proximal of the endpoint
    (the cap is shortened where the segment is too short for it); the residual segment above the
    cut atrophies by the shape's ``atrophy``. Raises CutError where a cut fails.

    Each limb's dict: limb, status, type, shape (params), lambda (tip's axial fraction),
    lambda_cut, anchor_cam, target_cam, endpoint_cam (the tip), cut_point_cam, axis_cam,
    cap_length_m.
    """
    verts = np.asarray(verts_cam, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    labels = np.asarray(vertex_segment, dtype=np.int64)
    source = np.arange(len(verts))
    limbs = []
    for spec in residuals:
        limb = LIMB_BY_NAME[spec.limb_name]
        anchor, target = (j.astype(np.float64) for j in limb_segment_joints(joints_cam, limb, spec.status))
        seg_len = float(np.linalg.norm(target - anchor))
        axis = (target - anchor) / seg_len
        residual_id = SEGMENT_INDEX[limb.residual_segment(spec.status)]
        # Limb radius near the endpoint, to size the cap before cutting.
        on_seg = labels == residual_id
        rel = verts[on_seg] - anchor
        along = rel @ axis
        near = np.abs(along - spec.lam * seg_len) < 0.02
        if not near.any():
            near = np.ones_like(along, dtype=bool)
        radial = np.linalg.norm(rel[near] - np.outer(along[near], axis), axis=1)
        radius0 = float(np.median(radial))
        shape = spec.shape
        max_len = (spec.lam - MIN_LAMBDA_CUT) * seg_len  # the longest cap that fits
        # The cap length scales with the cut loop's radius, known after the cut: iterate.
        cap_len = min(shape.height_ratio * radius0, max_len)
        for _ in range(3):
            lam_cut = spec.lam - cap_len / seg_len
            cut = cut_limb(
                verts=verts,
                faces=faces,
                vertex_segment=labels,
                limb=limb,
                status=spec.status,
                anchor=anchor,
                target=target,
                endpoint=anchor + lam_cut * seg_len * axis,
            )
            loop = cut.boundary_loop
            loop_pos = cut.verts[loop]
            centre = loop_pos.mean(axis=0)
            loop_r = float(np.linalg.norm(loop_pos - centre, axis=1).mean())
            eff_r = loop_r * (1.0 - shape.atrophy)  # the loop's radius after atrophy
            if shape.height_ratio * eff_r > max_len:
                shape = shape.with_height_ratio(max(max_len / eff_r, 0.15))
            new_len = float(meridian(shape, np.array([1.0]), radius_m=eff_r)[0][0])
            if abs(new_len - cap_len) < 2e-3:
                break
            cap_len = new_len
        new_verts = cut.verts.copy()
        # Atrophy of the residual segment just above the cut (radial shrink about the axis line).
        if shape.atrophy > 0:
            res = cut.residual_mask
            rel = new_verts[res] - centre
            signed = rel @ axis
            radial = rel - np.outer(signed, axis)
            room = 0.6 * lam_cut * seg_len
            scale = atrophy_scale(
                signed,
                amount=shape.atrophy,
                length_m=min(shape.atrophy_len_ratio * loop_r, room),
            )
            new_verts[res] = centre + np.outer(signed, axis) + radial * scale[:, None]
        stump = build_stump(
            loop_verts=new_verts[loop],
            loop_index=loop,
            first_new=len(new_verts),
            axis=axis,
            shape=shape,
            num_rings=num_rings,
        )
        verts = np.concatenate([new_verts, stump.verts])
        faces = np.concatenate([cut.faces, stump.faces])
        labels = np.concatenate([cut.vertex_segment, np.full(len(stump.verts), residual_id)])
        prev_source = np.where(cut.vertex_map >= 0, source[np.maximum(cut.vertex_map, 0)], -1)
        source = np.concatenate([prev_source, np.full(len(stump.verts), -1)])
        tip = verts[stump.apex]
        limbs.append(
            {
                "limb": spec.limb_name,
                "status": spec.status.value,
                "type": spec.type_name,
                "shape": shape.to_dict(),
                "lambda": float((tip - anchor) @ axis / seg_len),
                "lambda_cut": float(lam_cut),
                "anchor_cam": anchor,
                "target_cam": target,
                "endpoint_cam": tip,
                "tip_index": int(stump.apex),
                "cut_point_cam": anchor + lam_cut * seg_len * axis,
                "axis_cam": axis,
                "cap_length_m": float((tip - anchor) @ axis - lam_cut * seg_len),
                "cut_radius_m": loop_r,
            }
        )
    # Tip indices are stable: later cuts only touch other limbs, but vertices get renumbered.
    for entry in limbs:
        entry["tip_index"] = int(np.argmin(np.linalg.norm(verts - entry["endpoint_cam"], axis=1)))
    if boundary_loops(faces):
        raise CutError("the stumped mesh is not closed")
    return StumpedMesh(
        verts=verts,
        faces=faces,
        vertex_segment=labels,
        source_vertex=source,
        limbs=tuple(limbs),
    )


def stump_measurements(mesh: StumpedMesh, limb: dict, *, num_stations: int = 10) -> dict:
    """Ground-truth measurements of one stump on the true mesh (stump/geometry.py functions):
    residual length (m, fraction), volume distal of J_a (m^3), cross-sections at ``num_stations``
    stations, and the section at the cut plane."""
    residual_name = LIMB_BY_NAME[limb["limb"]].residual_segment(STATUS_BY_NAME[limb["status"]])
    mask = mesh.vertex_segment == SEGMENT_INDEX[residual_name]
    geo = stump_geometry(
        verts=mesh.verts,
        faces=mesh.faces,
        residual_mask=mask,
        anchor=limb["anchor_cam"],
        target=limb["target_cam"],
        tip=limb["endpoint_cam"],
        num_stations=num_stations,
        limb_name=limb["limb"],
        status=limb["status"],
    )
    region = mesh.faces[mask[mesh.faces].all(axis=1)]
    cut_sec = cross_section(
        mesh.verts,
        region,
        limb["cut_point_cam"] - 1e-4 * limb["axis_cam"],
        limb["axis_cam"],
    )
    out = geo.to_dict()
    out["cut_section_area_m2"] = cut_sec.area_m2
    out["cut_section_perimeter_m"] = cut_sec.perimeter_m
    return out


# --------------------------------------------------------------------------- camera, keypoints
def _frame_camera(
    verts_model_rel: np.ndarray,
    *,
    image_size: int,
    focal_px: float,
    fill: float,
    shift_px: np.ndarray,
) -> tuple[PinholeCamera, np.ndarray]:
    """Camera and translation placing rotated vertices (N, 3) (about the origin) to fill
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


def keypoints_25(
    *,
    coco_cam: np.ndarray,
    limbs: Sequence[dict],
    camera: PinholeCamera,
    depth_map: np.ndarray,
) -> np.ndarray:
    """(25, 3) LDpose keypoints ``[x_px, y_px, v]`` of a stumped body.

    coco_cam: (17, 3) COCO keypoints of the intact body (camera frame); limbs: the residual
    limbs' dicts (``make_stumped_mesh``); depth_map: (H, W) rendered depth (inf = background).
    Joints replaced by a residual endpoint and everything distal get v = 0; the endpoint gets the
    tip's projection. v = 1 where the rendered surface lies more than ``VISIBLE_DEPTH_TOL_M`` in
    front of the point, else 2.
    """
    points = np.zeros((NUM_KEYPOINTS, 3))
    labelled = np.zeros(NUM_KEYPOINTS, dtype=bool)
    points[:17] = coco_cam
    labelled[:17] = True
    for entry in limbs:
        limb = LIMB_BY_NAME[entry["limb"]]
        status = STATUS_BY_NAME[entry["status"]]
        absent = (limb.middle, limb.distal) if status is limb.above_status else (limb.distal,)
        labelled[list(absent)] = False
        idx = limb.endpoint_index(status)
        points[idx] = entry["endpoint_cam"]
        labelled[idx] = True
    xy = camera.project(torch.as_tensor(points)).numpy()
    kp = np.zeros((NUM_KEYPOINTS, 3))
    h, w = depth_map.shape
    for i in np.flatnonzero(labelled):
        col, row = int(np.rint(xy[i, 0])), int(np.rint(xy[i, 1]))
        surface = depth_map[min(max(row, 0), h - 1), min(max(col, 0), w - 1)]
        occluded = np.isfinite(surface) and surface < points[i, 2] - VISIBLE_DEPTH_TOL_M
        kp[i] = (xy[i, 0], xy[i, 1], 1.0 if occluded else 2.0)
    return kp


# --------------------------------------------------------------------------- rendering
def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """(H, W, 3) background in [0, 1]: plain, vertical gradient or a smooth random texture."""
    kind = ("plain", "gradient", "texture")[int(rng.integers(3))]
    base = rng.uniform(0.35, 0.95, size=3)
    if kind == "plain":
        return np.broadcast_to(base, (size, size, 3)).copy(), kind
    yy = np.linspace(0.0, 1.0, size)[:, None, None]
    if kind == "gradient":
        other = rng.uniform(0.2, 0.9, size=3)
        return ((1 - yy) * base + yy * other) * np.ones((1, size, 1)), kind
    coarse = rng.uniform(-1, 1, size=(9, 9, 3))
    img = (
        np.asarray(
            Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8)).resize((size, size), Image.BICUBIC),
            dtype=np.float64,
        )
        / 127.5
        - 1.0
    )
    stripes = 0.05 * np.sin(np.arange(size)[:, None] * rng.uniform(0.05, 0.3) + rng.uniform(0, 6))[..., None]
    return np.clip(base + 0.15 * img + stripes, 0.0, 1.0), kind


def _face_colours(
    rng: np.random.Generator,
    *,
    verts_cam: np.ndarray,
    faces: np.ndarray,
    vertex_segment: np.ndarray,
    joints_cam: np.ndarray,
) -> np.ndarray:
    """(F, 3) face colours: a random skin tone, optionally a shirt (torso, sleeves of random
    length) and shorts or trousers. Clothing borders are geometric (planes and distances from
    the joints), not label borders, so they are smooth.

    verts_cam: (V, 3); faces: (F, 3); vertex_segment: (V,); joints_cam: (15, 3) ``JOINT_NAMES``.
    """
    skin = np.array([0.92, 0.76, 0.65]) * rng.uniform(0.45, 1.0)
    skin = np.clip(skin + rng.uniform(-0.03, 0.03, size=3), 0.0, 1.0)
    colours = np.tile(skin, (len(faces), 1))
    seg = vertex_segment[faces[:, 0]]
    centre = verts_cam[faces].mean(axis=1)  # (F, 3)
    joint = {name: joints_cam[i] for name, i in JOINT_INDEX.items()}
    up = joint["neck"] - joint["pelvis"]
    up /= np.linalg.norm(up)
    height = (centre - joint["pelvis"]) @ up
    neck_h = float((joint["neck"] - joint["pelvis"]) @ up)
    waist_h = 0.35 * neck_h
    is_other = seg == SEGMENT_INDEX["other"]
    segs = {
        name: np.isin(seg, [SEGMENT_INDEX[f"{side}_{name}"] for side in ("left", "right")])
        for name in ("upper_arm", "forearm", "hand", "thigh", "shank", "foot")
    }
    if rng.uniform() < 0.7:  # shirt
        shirt = rng.uniform(0.1, 0.9, size=3)
        sleeve = rng.uniform(0.05, 0.6)  # metres from the shoulder
        wear = is_other & (height > waist_h - 0.05) & (height < neck_h - 0.04)
        for side in ("left", "right"):
            near = np.linalg.norm(centre - joint[f"{side}_shoulder"], axis=1) < sleeve
            arm = np.isin(
                seg,
                [SEGMENT_INDEX[f"{side}_upper_arm"], SEGMENT_INDEX[f"{side}_forearm"]],
            )
            wear |= arm & near
        colours[wear] = shirt
    if rng.uniform() < 0.7:  # shorts or trousers
        trousers = rng.uniform(0.1, 0.7, size=3)
        length = rng.uniform(0.2, 0.45) if rng.uniform() < 0.5 else 10.0
        wear = is_other & (height <= waist_h - 0.05)
        for side in ("left", "right"):
            near = np.linalg.norm(centre - joint[f"{side}_hip"], axis=1) < length
            leg = np.isin(seg, [SEGMENT_INDEX[f"{side}_thigh"], SEGMENT_INDEX[f"{side}_shank"]])
            wear |= leg & near
        colours[wear & ~segs["hand"] & ~segs["forearm"] & ~segs["upper_arm"]] = trousers
    return colours


# --------------------------------------------------------------------------- one sample
@dataclass(frozen=True)
class SynthSample:
    """One generated sample: image (H, W, 3) uint8, mask (H, W) bool, keypoints_px (25, 3) as
    written (noise, drops), keypoints_clean_px (25, 3), camera, body params, the stumped mesh,
    and ``info`` (pose, view, background, per-limb ground truth)."""

    image: np.ndarray
    mask: np.ndarray
    keypoints_px: np.ndarray
    keypoints_clean_px: np.ndarray
    camera: PinholeCamera
    params: BodyParams
    mesh: StumpedMesh
    joints_cam: np.ndarray
    info: dict = field(default_factory=dict)


def generate_sample(
    body: BodyModel,
    *,
    index: int,
    seed: int,
    types: str | Sequence[str] | None = RESIDUAL_TYPES,
    noise_px: float = 0.0,
    drop_prob: float = 0.0,
    image_size: int = 512,
    image_noise: float = 0.0,
    max_tries: int = 8,
) -> SynthSample:
    """Sample ``index`` of the dataset with ``seed`` (deterministic in both).

    noise_px: std (px) of Gaussian noise added to the written keypoints; drop_prob: chance that
    each non-torso keypoint of an intact limb or the face is dropped (v = 0); image_noise: std of
    Gaussian noise added to the image's [0, 1] intensities.
    """
    if body.name != "anny":
        raise ValueError(f"the generator needs the Anny body, got {body.name!r}")
    types = parse_types(types)
    if noise_px < 0 or image_noise < 0 or not 0 <= drop_prob <= 1:
        raise ValueError("noise_px and image_noise must be >= 0 and drop_prob in [0, 1]")
    if image_size < 64:
        raise ValueError(f"image_size must be >= 64 px, got {image_size}")
    rng = np.random.default_rng([int(seed), int(index)])
    last_error: Exception | None = None
    for _ in range(max_tries):
        try:
            return _try_sample(
                body,
                rng=rng,
                index=index,
                types=types,
                noise_px=noise_px,
                drop_prob=drop_prob,
                image_size=image_size,
                image_noise=image_noise,
            )
        except CutError as err:  # an unlucky cut: draw again (still deterministic)
            last_error = err
    raise RuntimeError(f"sample {index}: no valid person after {max_tries} tries ({last_error})")


def _try_sample(body, *, rng, index, types, noise_px, drop_prob, image_size, image_noise) -> SynthSample:
    type_names = _sample_residual_types(index, rng, types)
    # The primary limb's shape cycles too (shifted per round of types, so types and shapes mix).
    primary_shape = STUMP_SHAPES[(index + index // len(types)) % len(STUMP_SHAPES)]
    shape_names = [primary_shape] + [STUMP_SHAPES[int(rng.integers(len(STUMP_SHAPES)))] for _ in type_names[1:]]
    residuals = [
        ResidualSpec(t, float(rng.uniform(*LAMBDA_RANGE)), sample_stump_shape(name, rng))
        for t, name in zip(type_names, shape_names, strict=True)
    ]
    pose_name = POSES[int(rng.integers(len(POSES)))]
    sides = {spec.limb_name.split("_")[0] for spec in residuals}
    view = VIEWS[int(rng.integers(len(VIEWS)))]
    if view == "side" and len(sides) > 1:
        view = "three_quarter"
    yaw = _sample_yaw(view, rng, residual_sides=sides)
    pitch = float(rng.uniform(-8.0, 12.0))
    phenotype = sample_phenotype(rng)
    pose = sample_pose(pose_name, rng, pose_joint_names=body.pose_joint_names)
    orient = view_orient(yaw_deg=yaw, pitch_deg=pitch)
    dtype = body.dtype
    params = BodyParams(
        global_orient=torch.tensor(orient[None], dtype=dtype),
        body_pose=torch.tensor(pose[None], dtype=dtype),
        shape=torch.tensor(phenotype[None], dtype=dtype),
        transl=torch.zeros(1, 3, dtype=dtype),
    )
    with torch.no_grad():
        out0 = body(params)
    verts0 = out0.verts[0].double().numpy()
    focal = float(image_size * rng.uniform(1.0, 2.8))
    fill = float(rng.uniform(0.62, 0.85))
    shift = rng.uniform(-0.05, 0.05, size=2) * image_size
    camera, transl = _frame_camera(verts0, image_size=image_size, focal_px=focal, fill=fill, shift_px=shift)
    params = params.replace(transl=torch.tensor(transl[None], dtype=dtype))
    # The translation is added last in the camera frame (base.apply_global_transform).
    shift_cam = params.transl[0].double().numpy()
    verts_cam = verts0 + shift_cam
    joints_cam = out0.joints[0].double().numpy() + shift_cam
    coco_cam = out0.coco_kp[0].double().numpy() + shift_cam

    mesh = make_stumped_mesh(
        verts_cam=verts_cam,
        faces=body.faces.cpu().numpy(),
        vertex_segment=body.vertex_segment.cpu().numpy(),
        joints_cam=joints_cam,
        residuals=residuals,
    )
    for entry in mesh.limbs:
        entry["measurements"] = stump_measurements(mesh, entry)

    verts_t = torch.from_numpy(mesh.verts)
    faces_t = torch.from_numpy(mesh.faces)
    frags = rasterize(verts_cam=verts_t, faces=faces_t, camera=camera)
    background, bg_kind = _background(rng, image_size)
    colours = _face_colours(
        rng,
        verts_cam=mesh.verts,
        faces=mesh.faces,
        vertex_segment=mesh.vertex_segment,
        joints_cam=joints_cam,
    )
    rgb = shade(
        verts_cam=verts_t,
        faces=faces_t,
        fragments=frags,
        face_rgb=colours,
        background=background,
    )
    if image_noise > 0:
        rgb = rgb + rng.normal(0.0, image_noise, size=rgb.shape)
    image = (np.clip(rgb, 0.0, 1.0) * 255).round().astype(np.uint8)
    mask = frags.mask.numpy()
    depth = frags.depth.double().numpy()

    kp_clean = keypoints_25(coco_cam=coco_cam, limbs=mesh.limbs, camera=camera, depth_map=depth)
    kp = kp_clean.copy()
    labelled = kp[:, 2] > 0
    if noise_px > 0:
        kp[labelled, :2] += rng.normal(0.0, noise_px, size=(int(labelled.sum()), 2))
    if drop_prob > 0:
        for i in _droppable(mesh.limbs):
            if kp[i, 2] > 0 and rng.uniform() < drop_prob:
                kp[i] = 0.0
    info = {
        "pose": pose_name,
        "view": view,
        "yaw_deg": yaw,
        "pitch_deg": pitch,
        "background": bg_kind,
        "focal_px": focal,
        "residual_types": [spec.type_name for spec in residuals],
        "noise_px": noise_px,
    }
    return SynthSample(
        image=image,
        mask=mask,
        keypoints_px=kp,
        keypoints_clean_px=kp_clean,
        camera=camera,
        params=params,
        mesh=mesh,
        joints_cam=joints_cam,
        info=info,
    )


def _droppable(limbs: Sequence[dict]) -> list[int]:
    """Keypoints that may be dropped: the face, and the elbows/wrists/knees/ankles of intact limbs
    (never the torso, a residual limb's joints or endpoint)."""
    residual = {entry["limb"] for entry in limbs}
    out = [KEYPOINT_INDEX[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
    for name, limb in LIMB_BY_NAME.items():
        if name not in residual:
            out += [limb.middle, limb.distal]
    return sorted(out)


# --------------------------------------------------------------------------- writing
def write_ply(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    """Binary little-endian PLY: (V, 3) float64 vertices, (F, 3) int32 triangles."""
    verts = np.ascontiguousarray(verts, dtype="<f8")
    faces = np.asarray(faces, dtype="<i4")
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(verts)}\nproperty double x\nproperty double y\nproperty double z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")
    rows = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    rows["n"] = 3
    rows["idx"] = faces
    path.write_bytes(header + verts.tobytes() + rows.tobytes())


def sample_ground_truth(sample: SynthSample, *, body: BodyModel) -> dict:
    """The ``gt.json`` content: camera, body params (Anny), joints_cam (15, JOINT_NAMES),
    keypoints (clean and as written), and per residual limb: type, shape, lambda, endpoint_cam,
    residual length, stump volume, cross-sections (``stump_measurements``)."""
    limbs = []
    for entry in sample.mesh.limbs:
        limbs.append({k: v for k, v in entry.items()})
    return json_value(
        {
            "body_model": body.name,
            "shape_names": list(body.shape_names),
            "pose_joint_names": list(body.pose_joint_names),
            "body_params": sample.params.to_dict(),
            "camera": sample.camera.to_dict(),
            "joint_names": list(JOINT_INDEX),
            "joints_cam": sample.joints_cam,
            "keypoint_names": list(KEYPOINT_NAMES),
            "keypoints_clean_px": sample.keypoints_clean_px,
            "keypoints_px": sample.keypoints_px,
            "residual_limbs": limbs,
            "mesh": "mesh.ply",
            "labels": "labels.npz",
            "num_verts": len(sample.mesh.verts),
            "num_faces": len(sample.mesh.faces),
            **sample.info,
        },
        digits=7,
    )


def generate_dataset(
    out_dir: str | Path,
    *,
    count: int,
    seed: int = 0,
    types: str | Sequence[str] | None = None,
    noise_px: float | Sequence[float] = 0.0,
    drop_prob: float = 0.0,
    image_size: int = 512,
    image_noise: float = 0.0,
    body: BodyModel | None = None,
    progress: bool = True,
) -> Path:
    """Write ``count`` samples to ``out_dir`` (layout in the module docstring); returns the path
    of ``annotations.json``. See :func:`generate_sample` for the options.

    noise_px: one keypoint noise level (px), or several: each round of residual types (the
    primary type cycles through ``types``) gets the next level, so every type and stump shape
    is seen at every level once the count allows; a sample's level is in its ``gt.json``.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    allowed = parse_types(types)
    levels = (float(noise_px),) if np.isscalar(noise_px) else tuple(float(v) for v in noise_px)
    if not levels:
        raise ValueError("noise_px needs at least one level")
    if body is None:
        from resihmr_dr.body.anny_model import AnnyBody

        body = AnnyBody()
    out = Path(out_dir)
    for sub in ("images", "masks", "gt"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    images, annotations, index = [], [], []
    iterator = range(count)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="synth", unit="person")
    for i in iterator:
        sample = generate_sample(
            body,
            index=i,
            seed=seed,
            types=allowed,
            noise_px=levels[(i // len(allowed)) % len(levels)],
            drop_prob=drop_prob,
            image_size=image_size,
            image_noise=image_noise,
        )
        image_id = ann_id = i + 1
        stem = f"{image_id:06d}"
        Image.fromarray(sample.image).save(out / "images" / f"{stem}.png")
        Image.fromarray(np.where(sample.mask, 255, 0).astype(np.uint8)).save(out / "masks" / f"{stem}.png")
        ys, xs = np.nonzero(sample.mask)
        cam = sample.camera
        images.append(
            {
                "id": image_id,
                "file_name": f"images/{stem}.png",
                "width": cam.width,
                "height": cam.height,
                "camera": {"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy},
            }
        )
        kp = sample.keypoints_px
        annotations.append(
            {
                "id": ann_id,
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 0,
                "keypoints": [round(float(v), 3) for v in kp.flatten()],
                "num_keypoints": int((kp[:, 2] > 0).sum()),
                "bbox": [
                    float(xs.min()),
                    float(ys.min()),
                    float(xs.max() - xs.min() + 1),
                    float(ys.max() - ys.min() + 1),
                ],
                "area": float(sample.mask.sum()),
                "mask_path": f"masks/{stem}.png",
            }
        )
        gt_dir = out / "gt" / f"{stem}_{ann_id}"
        gt_dir.mkdir(parents=True, exist_ok=True)
        write_ply(gt_dir / "mesh.ply", sample.mesh.verts, sample.mesh.faces)
        with open(gt_dir / "labels.npz", "wb") as fh:
            np.savez_compressed(
                fh,
                vertex_segment=sample.mesh.vertex_segment,
                source_vertex=sample.mesh.source_vertex,
            )
        gt = sample_ground_truth(sample, body=body)
        gt.update({"image_id": image_id, "ann_id": ann_id, "file_name": f"images/{stem}.png"})
        atomic_write_json(gt_dir / "gt.json", gt, indent=1)
        index.append(
            {
                "image_id": image_id,
                "ann_id": ann_id,
                "file_name": f"images/{stem}.png",
                "gt_dir": f"{stem}_{ann_id}",
                "residual_types": sample.info["residual_types"],
                "stump_shapes": [e["shape"]["name"] for e in sample.mesh.limbs],
            }
        )
    doc = {
        "info": {
            "description": "resihmr_dr synthetic amputee benchmark (Anny renders with true stumps)",
            "generator": {
                "count": count,
                "seed": seed,
                "types": list(allowed),
                "noise_px": levels[0] if len(levels) == 1 else list(levels),
                "drop_prob": drop_prob,
                "image_size": image_size,
                "image_noise": image_noise,
            },
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }
    path = out / "annotations.json"
    atomic_write_json(path, doc, indent=1)
    atomic_write_json(out / "gt" / "index.json", {"samples": index, **doc["info"]}, indent=1)
    return path
