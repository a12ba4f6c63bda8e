"""Seal a cut limb with a smooth convex dome of concentric rings (ResiHMR stage 3, second half).

Cap layout (fixed topology, only positions move): the cut's boundary loop is ring 0; rings
1..R each hold one vertex per loop vertex; a tip vertex closes the dome. Ring ``k`` is the loop
scaled about its centroid ``c`` by ``profile[k]`` and lifted by ``heights[k]`` along the limb
axis; :func:`cap_vertices` is a pure torch function of the loop, so the cap follows the body
and its per-vertex offsets along the dome's normal and its height can be optimised (the
silhouette refinement) while the mesh stays watertight. The default profile is a quarter
ellipse: ``profile = cos(theta)``,
``heights = H sin(theta)`` for ``theta_k = k / (R + 1) * pi / 2``, ``H = height_fraction *``
mean loop radius; it meets the limb with a tangent along the axis (smooth) and is convex when
the loop is. :func:`cut_and_cap_to_tips` places the cut so that the cap's tip is the residual
endpoint (the pipeline's use: the endpoint keypoint marks the end of the limb).

Frames: that of the cut mesh (metres).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from resihmr_dr.body.base import JOINT_INDEX, SEGMENT_INDEX, limb_segment_joints
from resihmr_dr.data.ldpose import Limb, LimbStatus
from resihmr_dr.stump.cut import (
    CutError,
    LimbCut,
    cut_limb,
    endpoint_from_lambda,
    limb_axis,
)

__all__ = [
    "CapConfig",
    "CappedLimb",
    "CutSpec",
    "ResidualBody",
    "cap_cut",
    "cap_faces",
    "cap_vertices",
    "cut_and_cap",
    "cut_and_cap_to_tips",
    "cut_spec",
    "limb_radius_at",
    "plane_for_tip",
    "dome_profile",
]


# The smallest cap height, as a fraction of the ring's radius, when a tip is given.
MIN_TIP_FRACTION = 0.1


@dataclass(frozen=True)
class CapConfig:
    """num_rings: interior rings R (>= 1); height_fraction: dome height / mean loop radius (> 0);
    min_plane_fraction: when the cap's tip is given (:func:`cut_and_cap_to_tips`), the cut plane
    lies at least this fraction of the tip's distance from the anchor joint (in (0, 1))."""

    num_rings: int = 6
    height_fraction: float = 0.6
    min_plane_fraction: float = 0.5

    def __post_init__(self) -> None:
        if int(self.num_rings) != self.num_rings or self.num_rings < 1:
            raise CutError(f"CapConfig.num_rings must be an integer >= 1, got {self.num_rings}")
        if not (math.isfinite(self.height_fraction) and self.height_fraction > 0):
            raise CutError(f"CapConfig.height_fraction must be > 0, got {self.height_fraction}")
        if not 0.0 < self.min_plane_fraction < 1.0:
            raise CutError(f"CapConfig.min_plane_fraction must lie in (0, 1), got {self.min_plane_fraction}")


def dome_profile(
    num_rings: int, height_m: float, *, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quarter-ellipse ring parameters: (profile (R,), heights (R,) metres) for R interior rings."""
    theta = torch.arange(1, num_rings + 1, dtype=dtype) / (num_rings + 1) * (math.pi / 2)
    return torch.cos(theta), height_m * torch.sin(theta)


def cap_vertices(
    boundary_verts: torch.Tensor,
    axis: torch.Tensor,
    profile: torch.Tensor,
    heights: torch.Tensor,
    *,
    tip_height: torch.Tensor | float,
    normal_offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Positions of the cap's ring and tip vertices (differentiable in every tensor argument).

    boundary_verts: (L, 3) the boundary loop (ring 0), in order; axis: (3,) limb axis pointing
    distally (normalised here); profile: (R,) scale of each ring about the loop centroid ``c``;
    heights: (R,) lift of each ring along the axis, metres; tip_height: scalar > 0, the tip is at
    ``c + tip_height * axis``; normal_offsets: optional (R, L) displacement of each ring vertex,
    metres, along the dome's outward normal there (the normal of the ellipse through the loop
    vertex and the tip: ``(tip_height * profile_k, rho_j * heights_k / tip_height)`` in (radial,
    axial) components, normalised). Returns (R * L + 1, 3): ring 1 vertices in loop order, ring 2,
    ..., then the tip.
    """
    if boundary_verts.ndim != 2 or boundary_verts.shape[1] != 3 or boundary_verts.shape[0] < 3:
        raise CutError(f"boundary_verts must have shape (L >= 3, 3), got {tuple(boundary_verts.shape)}")
    if profile.ndim != 1 or heights.shape != profile.shape:
        raise CutError(
            f"profile and heights must both have shape (R,), got {tuple(profile.shape)}, {tuple(heights.shape)}"
        )
    num_rings, loop_len = profile.shape[0], boundary_verts.shape[0]
    if normal_offsets is not None and normal_offsets.shape != (num_rings, loop_len):
        raise CutError(f"normal_offsets must have shape ({num_rings}, {loop_len}), got {tuple(normal_offsets.shape)}")
    axis = axis / axis.norm()
    centre = boundary_verts.mean(dim=0)
    rel = boundary_verts - centre  # (L, 3)
    tip_height = torch.as_tensor(tip_height, dtype=boundary_verts.dtype, device=boundary_verts.device)
    rings = centre + profile[:, None, None] * rel + heights[:, None, None] * axis  # (R, L, 3)
    if normal_offsets is not None:
        in_plane = rel - (rel @ axis)[:, None] * axis
        rho = in_plane.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (L, 1)
        radial = in_plane / rho
        lift = heights / tip_height  # (R,) sin(theta_k) of the quarter ellipse
        normal = (tip_height * profile)[:, None, None] * radial + (rho * lift[:, None, None]) * axis
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        rings = rings + normal_offsets[:, :, None] * normal
    tip = centre + tip_height * axis
    return torch.cat([rings.reshape(-1, 3), tip[None]], dim=0)


def cap_faces(loop: np.ndarray, first_new: int, num_rings: int) -> np.ndarray:
    """Cap triangles continuing the winding of a mesh whose open boundary runs along ``loop``.

    loop: (L,) boundary vertex ids in the faces' edge direction; the ring vertices are numbered
    ``first_new + (k - 1) * L + j`` (ring k >= 1, loop position j) and the tip last, as returned
    by :func:`cap_vertices`. Every boundary edge is used reversed, so the winding continues the
    mesh's. Returns (L * (2 R + 1), 3).
    """
    loop = np.asarray(loop, dtype=np.int64)
    size = len(loop)
    ring_ids = [loop] + [first_new + k * size + np.arange(size) for k in range(num_rings)]
    tip = first_new + num_rings * size
    j = np.arange(size)
    jn = (j + 1) % size
    tris = []
    for k in range(num_rings):
        a, b = ring_ids[k], ring_ids[k + 1]
        tris.append(np.stack([a[jn], a[j], b[j]], axis=1))
        tris.append(np.stack([a[jn], b[j], b[jn]], axis=1))
    last = ring_ids[num_rings]
    tris.append(np.stack([last[jn], last[j], np.full(size, tip)], axis=1))
    return np.concatenate(tris, axis=0)


@dataclass(frozen=True)
class CappedLimb:
    """A cut mesh sealed with a dome (numpy, float64 / int64).

    verts: (V'', 3) = cut vertices then the cap's ring vertices and tip; faces: (F'', 3).
    vertex_segment: (V'',) labels; cap vertices get the residual segment.
    residual_mask: (V'',) bool, m_r: residual-segment vertices plus the cap vertices.
    cap_vertex_ids: (N,) ids of the cap vertices (N = R L + 1, tip last); tip_index: the tip.
    cap_ring_index: (N,) ring k in 1..R of each cap vertex, R + 1 for the tip.
    cap_ring_angle: (N,) angle (rad) of each ring vertex about the axis from ``angle_ref``
        (0 for the tip); ring vertices with the same loop position share an angle.
    profile, heights: (R,) ring parameters; tip_height: metres; loop_radius: mean loop radius.
    cut: the cut this cap seals (its ``interpolate`` replays the cut on new positions).
    """

    verts: np.ndarray
    faces: np.ndarray
    vertex_segment: np.ndarray
    residual_mask: np.ndarray
    cap_vertex_ids: np.ndarray
    tip_index: int
    cap_ring_index: np.ndarray
    cap_ring_angle: np.ndarray
    angle_ref: np.ndarray
    profile: np.ndarray
    heights: np.ndarray
    tip_height: float
    loop_radius: float
    cut: LimbCut

    @property
    def tip(self) -> np.ndarray:
        """(3,) the cap tip."""
        return self.verts[self.tip_index]

    @property
    def num_rings(self) -> int:
        """Number of interior cap rings R."""
        return len(self.profile)

    def replay(
        self,
        verts_in: torch.Tensor,
        *,
        normal_offsets: torch.Tensor | None = None,
        axis: torch.Tensor | None = None,
        tip_height: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Capped-mesh vertices from other positions of the *uncut* input vertices, differentiably.

        verts_in: (V, 3) -> (V'', 3); the cap is rebuilt on the replayed loop with the stored
        profile and ring lifts (and optional (R, L) ``normal_offsets``), along ``axis`` (3,) when
        given (e.g. from re-posed joints), else the stored axis; ``tip_height`` (scalar > 0,
        metres beyond the loop centroid; default the stored one) moves the tip along the axis and
        the rings' lifts with it. The cut itself (which vertices, the crossing weights) stays
        fixed.
        """
        cut_verts = self.cut.interpolate(verts_in)
        loop = torch.as_tensor(self.cut.boundary_loop, device=verts_in.device)

        def as_t(a) -> torch.Tensor:
            return torch.as_tensor(a, dtype=verts_in.dtype, device=verts_in.device)

        height = self.tip_height if tip_height is None else tip_height
        cap = cap_vertices(
            cut_verts[loop],
            as_t(self.cut.axis) if axis is None else axis,
            as_t(self.profile),
            as_t(self.heights / self.tip_height) * height,
            tip_height=height,
            normal_offsets=normal_offsets,
        )
        return torch.cat([cut_verts, cap], dim=0)


def cap_cut(cut: LimbCut, *, config: CapConfig = CapConfig(), tip_height: float | None = None) -> CappedLimb:
    """Seal ``cut``'s boundary loop with a dome (see the module docstring).

    tip_height: the dome's height beyond the loop centroid along the axis, metres (> 0); None
    gives ``config.height_fraction`` x the mean loop radius.
    """
    loop = cut.boundary_loop
    loop_pts = cut.verts[loop]
    axis = cut.axis
    centre = loop_pts.mean(axis=0)
    rel = loop_pts - centre
    in_plane = rel - np.outer(rel @ axis, axis)
    radii = np.linalg.norm(in_plane, axis=1)
    loop_radius = float(radii.mean())
    if not loop_radius > 1e-6:
        raise CutError(f"{cut.limb_name}: the cut boundary loop is degenerate (radius {loop_radius:.3g} m)")
    height = config.height_fraction * loop_radius if tip_height is None else float(tip_height)
    if not (math.isfinite(height) and height > 0):
        raise CutError(f"{cut.limb_name}: the cap's tip height must be > 0, got {height:.3g} m")
    profile, heights = dome_profile(config.num_rings, height)
    cap = cap_vertices(torch.from_numpy(loop_pts), torch.from_numpy(axis), profile, heights, tip_height=height).numpy()
    first_new = len(cut.verts)
    faces = np.concatenate([cut.faces, cap_faces(loop, first_new, config.num_rings)], axis=0)
    verts = np.concatenate([cut.verts, cap], axis=0)
    residual_id = SEGMENT_INDEX[cut.residual_segment]
    labels = np.concatenate([cut.vertex_segment, np.full(len(cap), residual_id)])
    num_cap = len(cap)
    cap_ids = first_new + np.arange(num_cap)

    # Angular position of each loop vertex about the axis (a right-handed in-plane basis).
    ref = in_plane[int(np.argmax(radii))] / radii.max()
    other = np.cross(axis, ref)
    angles = np.arctan2(in_plane @ other, in_plane @ ref)
    ring_index = np.concatenate([np.repeat(np.arange(1, config.num_rings + 1), len(loop)), [config.num_rings + 1]])
    ring_angle = np.concatenate([np.tile(angles, config.num_rings), [0.0]])
    return CappedLimb(
        verts=verts,
        faces=faces,
        vertex_segment=labels,
        residual_mask=np.concatenate([cut.residual_mask, np.ones(num_cap, dtype=bool)]),
        cap_vertex_ids=cap_ids,
        tip_index=int(cap_ids[-1]),
        cap_ring_index=ring_index,
        cap_ring_angle=ring_angle,
        angle_ref=ref,
        profile=profile.numpy(),
        heights=heights.numpy(),
        tip_height=float(height),
        loop_radius=loop_radius,
        cut=cut,
    )


@dataclass(frozen=True)
class CutSpec:
    """One residual limb to cut: the limb, its status, J_a, J_t and the endpoint R, all (3,)."""

    limb: Limb
    status: LimbStatus
    anchor: np.ndarray
    target: np.ndarray
    endpoint: np.ndarray


def cut_spec(*, joints: np.ndarray | torch.Tensor, limb: Limb, status: LimbStatus, lam: float) -> CutSpec:
    """The :class:`CutSpec` of ``limb`` ending at ``lam`` along its residual segment.

    joints: (len(JOINT_NAMES), 3) named joints (``BodyOutput.joints[b]``), any frame.
    """
    joints_np = joints.detach().cpu().numpy() if isinstance(joints, torch.Tensor) else np.asarray(joints)
    if joints_np.shape != (len(JOINT_INDEX), 3):
        raise CutError(f"joints must have shape ({len(JOINT_INDEX)}, 3), got {joints_np.shape}")
    anchor, target = (j.astype(np.float64) for j in limb_segment_joints(joints_np, limb, status))
    return CutSpec(limb, status, anchor, target, endpoint_from_lambda(anchor, target, lam))


@dataclass(frozen=True)
class ResidualBody:
    """A body after one or more sequential cut+cap steps.

    verts: (V'', 3); faces: (F'', 3); vertex_segment: (V'',); residual_mask: (V'',) bool, the
    union of every residual limb's m_r; steps: the per-limb :class:`CappedLimb` in order (each
    step's input is the previous step's output); tip_indices: each step's tip in the final mesh;
    limb_masks: per step, the (V'',) bool m_r of that limb in the final mesh.
    """

    verts: np.ndarray
    faces: np.ndarray
    vertex_segment: np.ndarray
    residual_mask: np.ndarray
    steps: tuple[CappedLimb, ...]
    tip_indices: tuple[int, ...]
    limb_masks: tuple[np.ndarray, ...]

    def replay(
        self,
        verts_in: torch.Tensor,
        *,
        normal_offsets: Sequence[torch.Tensor | None] | None = None,
        tip_heights: Sequence[torch.Tensor | float | None] | None = None,
        axes: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Final vertices from other positions of the original body's vertices (differentiable).

        verts_in: (V, 3) -> (V'', 3). Per step (each optional, one entry per step):
        normal_offsets, an (R, L_step) tensor (or None) of ring-vertex offsets along the dome's
        normal, metres (see :func:`cap_vertices`); tip_heights, the dome's height beyond the loop
        centroid (None: the stored one); axes, a (3,) limb axis replacing the stored one (e.g.
        the T-pose's or the re-posed body's).
        """
        for name, values in (("normal_offsets", normal_offsets), ("tip_heights", tip_heights), ("axes", axes)):
            if values is not None and len(values) != len(self.steps):
                raise CutError(f"{name} needs one entry per step ({len(self.steps)}), got {len(values)}")
        for i, step in enumerate(self.steps):
            verts_in = step.replay(
                verts_in,
                normal_offsets=None if normal_offsets is None else normal_offsets[i],
                tip_height=None if tip_heights is None else tip_heights[i],
                axis=None if axes is None else axes[i],
            )
        return verts_in


def cut_and_cap(
    *,
    verts: np.ndarray | torch.Tensor,
    faces: np.ndarray | torch.Tensor,
    vertex_segment: np.ndarray | torch.Tensor,
    cuts: Sequence[CutSpec],
    config: CapConfig = CapConfig(),
    tip_points: Sequence[np.ndarray] | None = None,
) -> ResidualBody:
    """Cut and cap each residual limb in turn (bilateral / multi-limb loss).

    verts: (V, 3) posed body, any frame; faces: (F, 3); vertex_segment: (V,). Each limb may
    appear once; each spec's ``endpoint`` is where its cut plane passes. tip_points: optional,
    per spec a (3,) point beyond the plane: that cap's tip is lifted to its level along the axis,
    but at least ``MIN_TIP_FRACTION`` x the ring's radius beyond the ring's centroid (else the
    dome is ``config.height_fraction`` x the loop radius high). Raises CutError (see
    :func:`cut_limb`). :func:`cut_and_cap_to_tips` places the planes for given tips.
    """
    if tip_points is not None and len(tip_points) != len(cuts):
        raise CutError(f"tip_points needs one point per cut ({len(cuts)}), got {len(tip_points)}")
    names = [spec.limb.name for spec in cuts]
    if len(set(names)) != len(names):
        raise CutError(f"each limb may be cut once, got {names}")
    if not names:
        raise CutError("no cuts given")
    steps: list[CappedLimb] = []
    tips: list[int] = []
    cur_verts, cur_faces, cur_labels = verts, faces, vertex_segment
    for i, spec in enumerate(cuts):
        cut = cut_limb(
            verts=cur_verts,
            faces=cur_faces,
            vertex_segment=cur_labels,
            limb=spec.limb,
            status=spec.status,
            anchor=spec.anchor,
            target=spec.target,
            endpoint=spec.endpoint,
        )
        tip_height = None
        if tip_points is not None:
            centre = cut.verts[cut.boundary_loop].mean(axis=0)
            tip_height = float((np.asarray(tip_points[i], dtype=np.float64) - centre) @ cut.axis)
            # Near a joint the ring is not planar (it follows the segment's label border), and its
            # centroid may lie level with or beyond the tip: the cap then keeps a minimal height.
            radius = float(np.linalg.norm(cut.verts[cut.boundary_loop] - centre, axis=1).mean())
            tip_height = max(tip_height, MIN_TIP_FRACTION * radius)
        capped = cap_cut(cut, config=config, tip_height=tip_height)
        tips = [kept_vertex_index(cut.vertex_map, t) for t in tips] + [capped.tip_index]
        steps.append(capped)
        cur_verts, cur_faces, cur_labels = capped.verts, capped.faces, capped.vertex_segment
    final = steps[-1]
    masks = tuple(final.vertex_segment == SEGMENT_INDEX[s.limb.residual_segment(s.status)] for s in cuts)
    return ResidualBody(
        verts=final.verts,
        faces=final.faces,
        vertex_segment=final.vertex_segment,
        residual_mask=np.logical_or.reduce(masks),
        steps=tuple(steps),
        tip_indices=tuple(tips),
        limb_masks=masks,
    )


def limb_radius_at(*, verts: np.ndarray, vertex_segment: np.ndarray, spec: CutSpec, band_m: float = 0.015) -> float:
    """Median distance (metres) from the axis J_a -> J_t of the residual segment's vertices
    within ``band_m`` of the plane through ``spec.endpoint`` (all of them if none are)."""
    verts = np.asarray(verts, dtype=np.float64)
    axis = limb_axis(spec.anchor, spec.target)
    segment = SEGMENT_INDEX[spec.limb.residual_segment(spec.status)]
    rel = verts[np.asarray(vertex_segment) == segment] - spec.anchor
    if not len(rel):
        raise CutError(f"{spec.limb.name}: the mesh has no residual-segment vertices")
    along = rel @ axis
    radial = np.linalg.norm(rel - along[:, None] * axis, axis=1)
    near = np.abs(along - (spec.endpoint - spec.anchor) @ axis) < band_m
    return float(np.median(radial[near] if near.any() else radial))


def plane_for_tip(
    spec: CutSpec, *, radius_m: float, config: CapConfig = CapConfig(), cap_length_m: float | None = None
) -> CutSpec:
    """The cut whose cap ends at ``spec.endpoint`` (the tip): the plane lies proximal of the tip by
    the cap's length (``cap_length_m``, default ``config.height_fraction * radius_m``), but no
    closer to the anchor than ``config.min_plane_fraction`` of the tip's distance from it (short
    residual limbs get a flatter cap)."""
    axis = limb_axis(spec.anchor, spec.target)
    tip_along = float((spec.endpoint - spec.anchor) @ axis)
    if not tip_along > 0:
        raise CutError(f"{spec.limb.name}: the tip must lie beyond the anchor joint along J_a -> J_t")
    length = config.height_fraction * radius_m if cap_length_m is None else float(cap_length_m)
    plane_along = max(tip_along - length, config.min_plane_fraction * tip_along)
    return dataclasses.replace(spec, endpoint=spec.anchor + plane_along * axis)


def cut_and_cap_to_tips(
    *,
    verts: np.ndarray | torch.Tensor,
    faces: np.ndarray | torch.Tensor,
    vertex_segment: np.ndarray | torch.Tensor,
    tips: Sequence[CutSpec],
    config: CapConfig = CapConfig(),
    cap_lengths_m: Sequence[float | None] | None = None,
) -> ResidualBody:
    """Cut and cap each residual limb so that its cap's tip is at ``spec.endpoint`` (the residual
    endpoint marks the end of the limb): the plane of :func:`plane_for_tip` (per limb an optional
    cap length, else the default), a dome up to the tip's level. Raises CutError (see
    :func:`cut_limb`)."""
    lengths = [None] * len(tips) if cap_lengths_m is None else list(cap_lengths_m)
    if len(lengths) != len(tips):
        raise CutError(f"cap_lengths_m needs one entry per tip ({len(tips)}), got {len(lengths)}")
    verts_np = verts.detach().cpu().numpy() if isinstance(verts, torch.Tensor) else np.asarray(verts)
    labels = (
        vertex_segment.detach().cpu().numpy()
        if isinstance(vertex_segment, torch.Tensor)
        else np.asarray(vertex_segment)
    )
    planes = [
        plane_for_tip(
            spec,
            radius_m=limb_radius_at(verts=verts_np, vertex_segment=labels, spec=spec),
            config=config,
            cap_length_m=length,
        )
        for spec, length in zip(tips, lengths)
    ]
    return cut_and_cap(
        verts=verts,
        faces=faces,
        vertex_segment=vertex_segment,
        cuts=planes,
        config=config,
        tip_points=[spec.endpoint for spec in tips],
    )


def kept_vertex_index(vertex_map: np.ndarray, old: int) -> int:
    """The new index of input vertex ``old`` after a cut (``LimbCut.vertex_map``: the input vertex
    of each new vertex); CutError where the cut removed it."""
    new = np.flatnonzero(vertex_map == old)
    if len(new) != 1:
        raise CutError("a later cut removed an earlier cap (two cuts on overlapping segments?)")
    return int(new[0])
