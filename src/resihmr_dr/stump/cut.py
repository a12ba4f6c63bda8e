"""Cut a posed body mesh at a residual-limb endpoint (ResiHMR stage 3, first half).

The cut is a *level-set clip* of one scalar value per vertex (pure numpy functions):

- residual-segment vertices: the signed distance ``s = (v - R) . a`` to the plane through the
  endpoint ``R`` normal to the limb axis ``a = (J_t - J_a) / |J_t - J_a|`` (positive = distal);
- vertices of the segments distal to the residual segment (coarse removal by labels, e.g. the
  foot for a transtibial limb): ``max(s, +offset)``, so they are always removed;
- every other vertex (torso, head, the other limbs): ``min(s, -offset)``, so it is always kept.

Faces whose values change sign are split on their crossing edges (each crossing point is a new
vertex, an interpolation of the edge's two end vertices with fixed weights), so the kept side is
an edge-manifold mesh whose new boundary follows the plane across the residual segment.

Pieces of the residual segment beyond the plane are removed when they connect (through vertices
beyond the plane) to the distal segments or to the residual segment's most distal vertex; other
such pieces (islands of residual labels between torso labels, when the endpoint is close to the
anchor joint) are kept, since cutting them would open further holes. Kept pieces cut loose by the
plane are dropped; the result must have exactly one new boundary loop, else :class:`CutError`.
Kept residual vertices within ``sliver_fraction`` of an edge from the plane are moved onto it.

Frames: any (the body's vertices, joints and endpoint must share one frame, metres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import torch

from resihmr_dr.body.base import SEGMENT_INDEX, SEGMENT_NAMES
from resihmr_dr.data.ldpose import Limb, LimbStatus

__all__ = [
    "CutError",
    "LimbCut",
    "boundary_loops",
    "clip_by_values",
    "cut_limb",
    "endpoint_from_lambda",
    "limb_axis",
]


class CutError(ValueError):
    """A cut or cap cannot be made (bad input, or a cut that does not give one clean hole)."""


def limb_axis(anchor: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(3,) unit axis from the anchor joint J_a (3,) to the target joint J_t (3,)."""
    anchor = _point(anchor, "anchor")
    target = _point(target, "target")
    length = float(np.linalg.norm(target - anchor))
    if not length > 1e-6:
        raise CutError(f"anchor and target joints coincide (|J_t - J_a| = {length:.3g} m)")
    return (target - anchor) / length


def endpoint_from_lambda(anchor: np.ndarray, target: np.ndarray, lam: float) -> np.ndarray:
    """(3,) residual endpoint ``R = J_a + lam (J_t - J_a)``; ``lam`` must lie in (0, 1]."""
    if not 0.0 < float(lam) <= 1.0:
        raise CutError(f"lam must lie in (0, 1], got {lam}")
    anchor = _point(anchor, "anchor")
    return anchor + float(lam) * (_point(target, "target") - anchor)


@dataclass(frozen=True)
class LimbCut:
    """A body mesh with one limb cut at its residual endpoint (numpy, float64 / int64).

    verts: (V', 3) in the input's frame; faces: (F', 3) with the input's winding.
    vertex_segment: (V',) labels (``SEGMENT_NAMES``); cut vertices get the residual segment.
    src_index, src_weight: (V', 2) each new vertex is ``w0 * old[i0] + w1 * old[i1]`` of the
        input vertices (kept vertices: ``(i, i)``, ``(1, 0)``), so the cut can be replayed on
        other (e.g. optimised, differentiable) vertex positions with :meth:`interpolate`.
    vertex_map: (V',) input vertex index of each kept vertex, -1 for the cut vertices (new
        crossing points, and residual vertices moved onto the plane to avoid slivers).
    boundary_loop: (L,) the new open boundary, ordered along the faces' edge direction.
    residual_mask: (V',) bool, vertices of the residual segment (cut vertices included).
    plane_point: (3,) the endpoint R; axis: (3,) unit limb axis J_a -> J_t (the plane normal).
    anchor, target: (3,) J_a and J_t.
    """

    verts: np.ndarray
    faces: np.ndarray
    vertex_segment: np.ndarray
    src_index: np.ndarray
    src_weight: np.ndarray
    vertex_map: np.ndarray
    boundary_loop: np.ndarray
    residual_mask: np.ndarray
    plane_point: np.ndarray
    axis: np.ndarray
    anchor: np.ndarray
    target: np.ndarray
    limb_name: str
    status: LimbStatus
    residual_segment: str

    @property
    def lam(self) -> float:
        """Endpoint position along the segment: ``(R - J_a) . a / |J_t - J_a|``."""
        return float((self.plane_point - self.anchor) @ self.axis / np.linalg.norm(self.target - self.anchor))

    def interpolate(self, verts_in: torch.Tensor) -> torch.Tensor:
        """Replay the cut on other positions of the input vertices, differentiably.

        verts_in: (..., V, 3) positions of the *input* mesh's vertices -> (..., V', 3).
        """
        idx = torch.as_tensor(self.src_index, device=verts_in.device)
        w = torch.as_tensor(self.src_weight, device=verts_in.device, dtype=verts_in.dtype)
        return verts_in[..., idx[:, 0], :] * w[:, :1] + verts_in[..., idx[:, 1], :] * w[:, 1:]


def cut_limb(
    *,
    verts: np.ndarray | torch.Tensor,
    faces: np.ndarray | torch.Tensor,
    vertex_segment: np.ndarray | torch.Tensor,
    limb: Limb,
    status: LimbStatus,
    anchor: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    endpoint: np.ndarray | torch.Tensor,
    offset_m: float = 1e-4,
    sliver_fraction: float = 0.05,
) -> LimbCut:
    """Remove the part of ``limb`` distal to ``endpoint`` (see the module docstring).

    Args:
        verts: (V, 3) posed body vertices, any frame (metres); faces: (F, 3) outward winding.
        vertex_segment: (V,) labels indexing ``SEGMENT_NAMES``.
        limb, status: the limb and its residual status (not INTACT).
        anchor, target: (3,) joints J_a and J_t of the residual segment (``Limb.segment_joint_names``).
        endpoint: (3,) the residual endpoint R (``endpoint_from_lambda``); the cut plane passes
            through it, normal to the axis J_a -> J_t. It must lie strictly beyond J_a.
        offset_m: how far the level set is pushed off vertices that must always be kept or
            removed (the torso, other limbs; the distal segments), metres.
        sliver_fraction: a kept residual-segment vertex closer to the plane than this fraction
            of a cut edge is moved onto the plane (to that edge's crossing point) and the
            near-coincident crossing points merged into it, so the cut leaves no sliver faces.

    Raises:
        CutError: bad shapes or labels, an endpoint not beyond the anchor, nothing to remove, or
            a cut that does not leave exactly one new boundary loop.
    """
    if not (math.isfinite(offset_m) and offset_m > 0):
        raise CutError(f"offset_m must be > 0, got {offset_m}")
    if not 0.0 <= sliver_fraction < 0.5:
        raise CutError(f"sliver_fraction must lie in [0, 0.5), got {sliver_fraction}")
    verts_np = _array(verts, np.float64, "verts")
    faces_np = _array(faces, np.int64, "faces")
    labels = _array(vertex_segment, np.int64, "vertex_segment")
    if verts_np.ndim != 2 or verts_np.shape[1] != 3:
        raise CutError(f"verts must have shape (V, 3), got {verts_np.shape}")
    if faces_np.ndim != 2 or faces_np.shape[1] != 3 or faces_np.shape[0] == 0:
        raise CutError(f"faces must have shape (F, 3) with F > 0, got {faces_np.shape}")
    num_verts = verts_np.shape[0]
    if faces_np.min() < 0 or faces_np.max() >= num_verts:
        raise CutError(f"faces index vertices outside [0, {num_verts})")
    if labels.shape != (num_verts,):
        raise CutError(f"vertex_segment must have shape ({num_verts},), got {labels.shape}")
    if not np.isfinite(verts_np).all():
        raise CutError("verts contain non-finite values")
    if labels.min() < 0 or labels.max() >= len(SEGMENT_NAMES):
        raise CutError(f"vertex_segment labels must lie in [0, {len(SEGMENT_NAMES)})")
    try:
        residual_name, distal_names = limb.residual_segment(status), limb.distal_segments(status)
    except ValueError as error:
        raise CutError(str(error)) from None
    anchor_np, target_np = _point(anchor, "anchor"), _point(target, "target")
    axis = limb_axis(anchor_np, target_np)
    point = _point(endpoint, "endpoint")
    if not (point - anchor_np) @ axis > 0.0:
        raise CutError(f"{limb.name}: the endpoint must lie beyond the anchor joint along J_a -> J_t")

    residual_id = SEGMENT_INDEX[residual_name]
    is_residual = labels == residual_id
    is_distal = np.isin(labels, [SEGMENT_INDEX[n] for n in distal_names])
    if not is_residual.any():
        raise CutError(f"{limb.name}: the mesh has no {residual_name!r} vertices")
    if not is_distal.any():
        raise CutError(f"{limb.name}: the mesh has no {'/'.join(distal_names)} vertices to remove (already cut?)")

    signed = (verts_np - point) @ axis
    values = np.where(is_distal, np.maximum(signed, offset_m), np.minimum(signed, -offset_m))
    values = np.where(is_residual, signed, values)
    values[np.abs(values) < 1e-12] = -1e-12  # no vertex exactly on the level set
    # The residual segment's distal end: its vertex farthest along the axis (this also finds it
    # on bodies made of separate closed tubes, where the segments are not connected).
    distal_end = np.zeros(num_verts, dtype=bool)
    distal_end[np.flatnonzero(is_residual)[np.argmax(signed[is_residual])]] = True
    values = _keep_connected_distal(values, faces_np, is_distal | distal_end, offset_m)

    new_verts, new_faces, src_index, src_weight = clip_by_values(verts_np, faces_np, values)
    new_verts, new_faces, src_index, src_weight = _collapse_slivers(
        new_verts, new_faces, src_index, src_weight, values, movable=is_residual, max_fraction=sliver_fraction
    )
    is_cut = src_index[:, 0] != src_index[:, 1]
    new_verts, new_faces, src_index, src_weight, is_cut = _drop_loose_pieces(
        new_verts, new_faces, src_index, src_weight, is_cut
    )
    loops = [loop for loop in boundary_loops(new_faces) if is_cut[loop].any()]
    if len(loops) != 1:
        raise CutError(
            f"{limb.name} ({status.value}): the cut left {len(loops)} new boundary loops, expected 1 "
            f"(endpoint too close to a joint, or a self-touching mesh?)"
        )
    new_labels = np.where(is_cut, residual_id, labels[src_index[:, 0]])
    return LimbCut(
        verts=new_verts,
        faces=new_faces,
        vertex_segment=new_labels,
        src_index=src_index,
        src_weight=src_weight,
        vertex_map=np.where(is_cut, -1, src_index[:, 0]),
        boundary_loop=loops[0],
        residual_mask=new_labels == residual_id,
        plane_point=point,
        axis=axis,
        anchor=anchor_np,
        target=target_np,
        limb_name=limb.name,
        status=status,
        residual_segment=residual_name,
    )


# --------------------------------------------------------------------------------------------
# Pure mesh helpers (also used by geometry.py)


def clip_by_values(
    verts: np.ndarray, faces: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keep the part of a triangle mesh where a piecewise-linear per-vertex field is negative.

    verts: (V, 3); faces: (F, 3); values: (V,) with no exact zeros.
    Faces crossing the zero level set are split on their crossing edges (one new vertex per
    crossing edge, shared by both faces of the edge), keeping each face's winding.
    Returns (verts', faces', src_index (V', 2), src_weight (V', 2)); unreferenced vertices are
    dropped; ``verts' = w0 * verts[i0] + w1 * verts[i1]``.
    """
    num_verts = verts.shape[0]
    neg = values < 0
    kept_count = neg[faces].sum(axis=1)
    whole = faces[kept_count == 3]
    split = faces[(kept_count == 1) | (kept_count == 2)]
    split_kept = kept_count[(kept_count == 1) | (kept_count == 2)]

    # Roll each split face so that its odd vertex (the lone kept or lone removed one) is first.
    odd_is_kept = split_kept == 1
    flags = neg[split] == odd_is_kept[:, None]
    first = np.argmax(flags, axis=1)
    rolled = split[np.arange(len(split))[:, None], (first[:, None] + np.arange(3)) % 3]
    o, x, y = rolled[:, 0], rolled[:, 1], rolled[:, 2]

    # One new vertex per crossing edge.
    ea = np.concatenate([o, o])
    eb = np.concatenate([x, y])
    lo, hi = np.minimum(ea, eb), np.maximum(ea, eb)
    keys, inverse = np.unique(lo * num_verts + hi, return_inverse=True)
    edge_lo, edge_hi = keys // num_verts, keys % num_verts
    t = values[edge_lo] / (values[edge_lo] - values[edge_hi])
    cut_ids = num_verts + inverse
    p_ox, p_oy = cut_ids[: len(o)], cut_ids[len(o) :]

    tri_keep_odd = np.stack([o, p_ox, p_oy], axis=1)[odd_is_kept]
    quad = ~odd_is_kept
    tri_a = np.stack([x, y, p_oy], axis=1)[quad]
    tri_b = np.stack([x, p_oy, p_ox], axis=1)[quad]
    all_faces = np.concatenate([whole, tri_keep_odd, tri_a, tri_b], axis=0)

    src_index = np.concatenate([np.stack([np.arange(num_verts)] * 2, axis=1), np.stack([edge_lo, edge_hi], axis=1)])
    src_weight = np.concatenate([np.tile([1.0, 0.0], (num_verts, 1)), np.stack([1.0 - t, t], axis=1)], axis=0)
    used = np.zeros(len(src_index), dtype=bool)
    used[all_faces.ravel()] = True
    remap = np.cumsum(used) - 1
    src_index, src_weight = src_index[used], src_weight[used]
    new_verts = verts[src_index[:, 0]] * src_weight[:, :1] + verts[src_index[:, 1]] * src_weight[:, 1:]
    return new_verts, remap[all_faces], src_index, src_weight


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered vertex loops of the open boundary of an edge-manifold mesh.

    faces: (F, 3). A boundary edge is a directed face edge whose reverse is in no face; each
    loop follows the faces' edge direction (loop[i] -> loop[i + 1] is an edge of some face).
    Raises CutError where the boundary is not a set of simple loops (non-manifold edges/vertices).
    """
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    n = int(faces.max()) + 1 if faces.size else 0
    code = directed[:, 0] * n + directed[:, 1]
    rev = directed[:, 1] * n + directed[:, 0]
    counts = np.unique(code, return_counts=True)[1]
    if (counts > 1).any():
        raise CutError("the mesh has non-manifold or inconsistently wound edges")
    open_edges = directed[~np.isin(rev, code)]
    if len(open_edges) == 0:
        return []
    start_counts = np.unique(open_edges[:, 0], return_counts=True)[1]
    if (start_counts > 1).any():
        raise CutError("the mesh boundary touches itself (a non-manifold boundary vertex)")
    nxt = dict(zip(open_edges[:, 0].tolist(), open_edges[:, 1].tolist()))
    loops, seen = [], set()
    for start in open_edges[:, 0].tolist():
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            if v not in nxt:
                raise CutError("the mesh boundary is not closed")
            v = nxt[v]
        if v != start:
            raise CutError("the mesh boundary is not a set of simple loops")
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def vertex_components(num_verts: int, faces: np.ndarray) -> np.ndarray:
    """(V,) connected-component id of each vertex over the faces' edges."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    graph = scipy.sparse.coo_matrix(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(num_verts, num_verts)
    )
    return scipy.sparse.csgraph.connected_components(graph, directed=False)[1]


def _keep_connected_distal(values: np.ndarray, faces: np.ndarray, seeds: np.ndarray, offset: float) -> np.ndarray:
    """Flip positive vertices not connected (through positive vertices) to a positive seed vertex."""
    positive = values > 0
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = edges[positive[edges].all(axis=1)]
    num = len(values)
    graph = scipy.sparse.coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(num, num))
    comp = scipy.sparse.csgraph.connected_components(graph, directed=False)[1]
    removed_comps = np.unique(comp[positive & seeds])
    stray = positive & ~np.isin(comp, removed_comps)
    out = values.copy()
    out[stray] = -offset
    return out


def _collapse_slivers(verts, faces, src_index, src_weight, values, *, movable, max_fraction):
    """Merge crossing points lying within ``max_fraction`` of an edge from a kept, movable vertex.

    The kept vertex moves to its nearest crossing point (so it lies on the level set and stays an
    interpolation of the input vertices); faces that become degenerate are dropped. The merge is
    undone when it would leave a non-manifold boundary.
    """
    lo, hi = src_index[:, 0], src_index[:, 1]
    is_cut = lo != hi
    lo_kept = values[lo] < 0
    kept_old = np.where(lo_kept, lo, hi)
    fraction = np.where(lo_kept, src_weight[:, 1], src_weight[:, 0])
    candidate = is_cut & (fraction < max_fraction) & movable[kept_old]
    if not candidate.any():
        return verts, faces, src_index, src_weight
    old_to_new = np.full(len(values), -1)
    old_to_new[lo[~is_cut]] = np.flatnonzero(~is_cut)
    cand = np.flatnonzero(candidate)
    cand = cand[np.argsort(fraction[cand], kind="stable")]
    targets = old_to_new[kept_old[cand]]
    first = np.unique(targets, return_index=True)[1]  # nearest crossing point per kept vertex
    new_src_index, new_src_weight, new_verts = src_index.copy(), src_weight.copy(), verts.copy()
    new_src_index[targets[first]] = src_index[cand[first]]
    new_src_weight[targets[first]] = src_weight[cand[first]]
    new_verts[targets[first]] = verts[cand[first]]
    remap = np.arange(len(verts))
    remap[cand] = targets
    merged = remap[faces]
    merged = merged[(merged[:, 0] != merged[:, 1]) & (merged[:, 1] != merged[:, 2]) & (merged[:, 2] != merged[:, 0])]
    try:
        boundary_loops(merged)
    except CutError:
        return verts, faces, src_index, src_weight
    used = np.zeros(len(verts), dtype=bool)
    used[merged.ravel()] = True
    compact = np.cumsum(used) - 1
    return new_verts[used], compact[merged], new_src_index[used], new_src_weight[used]


def _drop_loose_pieces(verts, faces, src_index, src_weight, is_cut):
    """Keep untouched components (no cut vertex) and the largest component touched by the cut."""
    comp = vertex_components(len(verts), faces)
    touched = np.unique(comp[is_cut])
    if len(touched) > 1:
        sizes = np.bincount(comp[faces[:, 0]], minlength=comp.max() + 1)
        keep_touched = touched[np.argmax(sizes[touched])]
        drop = np.isin(comp, touched) & (comp != keep_touched)
        face_keep = ~drop[faces[:, 0]]
        faces = faces[face_keep]
        used = np.zeros(len(verts), dtype=bool)
        used[faces.ravel()] = True
        remap = np.cumsum(used) - 1
        verts, src_index, src_weight, is_cut = verts[used], src_index[used], src_weight[used], is_cut[used]
        faces = remap[faces]
    return verts, faces, src_index, src_weight, is_cut


def _array(value, dtype, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise CutError(f"{name}: cannot convert to a {np.dtype(dtype).name} array ({err})") from None


def _point(value, name: str) -> np.ndarray:
    arr = _array(value, np.float64, name)
    if arr.shape != (3,) or not np.isfinite(arr).all():
        raise CutError(f"{name} must be a finite (3,) point, got shape {arr.shape}")
    return arr
