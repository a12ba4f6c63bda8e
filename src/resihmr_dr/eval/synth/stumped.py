"""The true stumped mesh: a posed body with its residual limbs cut and closed by true stumps.

Each residual limb is cut at ``lambda_cut`` along its segment and closed by an individual stump
shape of :mod:`resihmr_dr.eval.stump_shapes` (independent of the fitter's cap). The stump's tip
(the apex of the swept surface, on its centre line) is the residual endpoint; its position
along the segment axis is the true ``lambda``. Every limb's truth is a
:class:`~resihmr_dr.eval.limb_truth.LimbTruth`, measured on the finished mesh.

Frames: camera frame (OpenCV x right, y down, z forward, metres).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from resihmr_dr.body.base import SEGMENT_INDEX, limb_segment_joints
from resihmr_dr.data.ldpose import LIMB_BY_NAME, LimbStatus
from resihmr_dr.eval.limb_truth import LimbTruth, StumpMeasurements
from resihmr_dr.eval.stump_shapes import StumpShape, atrophy_scale, build_stump, meridian
from resihmr_dr.eval.synth.scene import ResidualSpec
from resihmr_dr.stump.cap import kept_vertex_index
from resihmr_dr.stump.cut import CutError, boundary_loops, cut_limb
from resihmr_dr.stump.geometry import cross_section, stump_geometry

__all__ = ["MIN_LAMBDA_CUT", "StumpedMesh", "make_stumped_mesh", "stump_measurements"]

MIN_LAMBDA_CUT = 0.14  # the cut plane stays this far along the segment (clean single-loop cut)


@dataclass(frozen=True)
class StumpedMesh:
    """A posed body with its residual limbs cut and closed by true stumps (camera frame).

    verts: (V, 3); faces: (F, 3) outward; vertex_segment: (V,) labels (``SEGMENT_NAMES``; stump
    vertices get the residual segment); source_vertex: (V,) index of the intact body vertex each
    vertex is (-1 for new vertices); limbs: the residual limbs' truth, in the order made.
    """

    verts: np.ndarray
    faces: np.ndarray
    vertex_segment: np.ndarray
    source_vertex: np.ndarray
    limbs: tuple[LimbTruth, ...]


@dataclass(frozen=True)
class _ClosedLimb:
    """One residual limb cut and closed on the mesh of its step: the mesh after it (verts (V', 3),
    faces, vertex_segment, vertex_map: (V',) the step's input vertex of each vertex, -1 for new
    ones), the stump's apex (its vertex index there) and the limb's truth without the tip
    index and measurements (known on the finished mesh)."""

    verts: np.ndarray
    faces: np.ndarray
    vertex_segment: np.ndarray
    vertex_map: np.ndarray
    apex: int
    spec: ResidualSpec
    shape: StumpShape
    lam_cut: float
    anchor: np.ndarray
    target: np.ndarray
    axis: np.ndarray
    seg_len: float
    cut_radius_m: float


def _close_limb(
    *,
    verts: np.ndarray,
    faces: np.ndarray,
    labels: np.ndarray,
    joints_cam: np.ndarray,
    spec: ResidualSpec,
    num_rings: int,
) -> _ClosedLimb:
    """Cut one residual limb and close it with its stump so that the tip lands at ``spec.lam``
    (:func:`make_stumped_mesh`)."""
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
    return _ClosedLimb(
        verts=np.concatenate([new_verts, stump.verts]),
        faces=np.concatenate([cut.faces, stump.faces]),
        vertex_segment=np.concatenate([cut.vertex_segment, np.full(len(stump.verts), residual_id)]),
        vertex_map=np.concatenate([cut.vertex_map, np.full(len(stump.verts), -1)]),
        apex=int(stump.apex),
        spec=spec,
        shape=shape,
        lam_cut=float(lam_cut),
        anchor=anchor,
        target=target,
        axis=axis,
        seg_len=seg_len,
        cut_radius_m=loop_r,
    )


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
    cut atrophies by the shape's ``atrophy``. Each limb's :class:`LimbTruth` is measured on the
    finished mesh (:func:`stump_measurements`). Raises CutError where a cut fails.
    """
    verts = np.asarray(verts_cam, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    labels = np.asarray(vertex_segment, dtype=np.int64)
    source = np.arange(len(verts))
    closed: list[_ClosedLimb] = []
    tips: list[int] = []
    for spec in residuals:
        step = _close_limb(
            verts=verts, faces=faces, labels=labels, joints_cam=joints_cam, spec=spec, num_rings=num_rings
        )
        # Later cuts touch only other limbs but renumber the vertices they keep: follow the earlier tips.
        tips = [kept_vertex_index(step.vertex_map, tip) for tip in tips] + [step.apex]
        source = np.where(step.vertex_map >= 0, source[np.maximum(step.vertex_map, 0)], -1)
        verts, faces, labels = step.verts, step.faces, step.vertex_segment
        closed.append(step)
    if boundary_loops(faces):
        raise CutError("the stumped mesh is not closed")
    limbs = []
    for step, tip_index in zip(closed, tips, strict=True):
        tip = step.verts[step.apex]
        cut_point = step.anchor + step.lam_cut * step.seg_len * step.axis
        limbs.append(
            LimbTruth(
                limb_name=step.spec.limb_name,
                status=step.spec.status,
                type_name=step.spec.type_name,
                shape=step.shape,
                lam=float((tip - step.anchor) @ step.axis / step.seg_len),
                lam_cut=step.lam_cut,
                anchor_cam=step.anchor,
                target_cam=step.target,
                endpoint_cam=tip,
                tip_index=tip_index,
                cut_point_cam=cut_point,
                axis_cam=step.axis,
                cap_length_m=float((tip - step.anchor) @ step.axis - step.lam_cut * step.seg_len),
                cut_radius_m=step.cut_radius_m,
                measurements=_measure(
                    verts,
                    faces,
                    labels,
                    limb_name=step.spec.limb_name,
                    status=step.spec.status,
                    anchor=step.anchor,
                    target=step.target,
                    tip=tip,
                    cut_point=cut_point,
                    axis=step.axis,
                ),
            )
        )
    return StumpedMesh(verts=verts, faces=faces, vertex_segment=labels, source_vertex=source, limbs=tuple(limbs))


def stump_measurements(mesh: StumpedMesh, limb: LimbTruth, *, num_stations: int = 10) -> StumpMeasurements:
    """Ground-truth measurements of one stump on the true mesh (stump/geometry.py functions):
    residual length (m, fraction), volume distal of J_a (m^3), cross-sections at ``num_stations``
    stations, and the section at the cut plane. ``limb.measurements`` holds these for 10 stations."""
    return _measure(
        mesh.verts,
        mesh.faces,
        mesh.vertex_segment,
        limb_name=limb.limb_name,
        status=limb.status,
        anchor=limb.anchor_cam,
        target=limb.target_cam,
        tip=limb.endpoint_cam,
        cut_point=limb.cut_point_cam,
        axis=limb.axis_cam,
        num_stations=num_stations,
    )


def _measure(
    verts: np.ndarray,
    faces: np.ndarray,
    vertex_segment: np.ndarray,
    *,
    limb_name: str,
    status: LimbStatus,
    anchor: np.ndarray,
    target: np.ndarray,
    tip: np.ndarray,
    cut_point: np.ndarray,
    axis: np.ndarray,
    num_stations: int = 10,
) -> StumpMeasurements:
    """:func:`stump_measurements` of one limb (J_a, J_t, tip, cut point: (3,); axis: (3,) unit)
    on a mesh (verts (V, 3), faces (F, 3), vertex_segment (V,))."""
    mask = vertex_segment == SEGMENT_INDEX[LIMB_BY_NAME[limb_name].residual_segment(status)]
    geo = stump_geometry(
        verts=verts,
        faces=faces,
        residual_mask=mask,
        anchor=anchor,
        target=target,
        tip=tip,
        num_stations=num_stations,
        limb_name=limb_name,
        status=status.value,
    )
    region = faces[mask[faces].all(axis=1)]
    cut_sec = cross_section(verts, region, cut_point - 1e-4 * axis, axis)
    return StumpMeasurements(geo, cut_sec.area_m2, cut_sec.perimeter_m)
