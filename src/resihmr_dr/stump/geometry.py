"""Stump geometry of a capped residual limb: length, volume, cross-section profile (numpy).

Measurements use the residual-limb faces (faces whose three vertices are in the mask m_r), so
planes that also cross the torso or another limb do not pick those up (sections near the anchor
may fall back to the whole mesh, see *profile*).

- *length*: from the anchor joint J_a to the cap tip along the limb axis ``a = (J_t - J_a)/|.|``,
  in metres and as a fraction of the intact segment length ``|J_t - J_a|``.
- *volume*: the residual-limb surface distal of the plane through J_a normal to ``a``, closed
  where it is open: on the plane (the anchor cross-section) and, where the residual segment's
  label border lies distal of that plane, over that border (a fan to each hole's centroid).
  Divergence theorem about J_a (a point of the plane, so plane lids contribute nothing).
- *profile*: area and perimeter of the cross-section at ``N`` stations ``(i + 1/2) / N`` of the
  way from J_a to the tip; at each station the section loop around the axis is used (the one
  enclosing the axis point, else the one nearest to it). Near the anchor the residual segment's
  label border can cross the plane, leaving an open section; the whole mesh's loop is used
  there when it stays within the limb's girth (``max_radius_ratio`` times the closed sections'
  median radius), else the open section closed by a chord (``section_closed`` False).

Frames: any, metres (the mesh, joints and tip must share one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from resihmr_dr.stump.cap import ResidualBody
from resihmr_dr.stump.cut import CutError, clip_by_values, limb_axis

__all__ = [
    "EMPTY_SECTION",
    "Section",
    "StumpGeometry",
    "closed_volume_distal",
    "cross_section",
    "residual_body_geometry",
    "residual_length",
    "stump_geometry",
]


@dataclass(frozen=True)
class StumpGeometry:
    """Measurements of one residual limb (metres, m^2, m^3); see the module docstring.

    station_m, area_m2, perimeter_m: (N,) distance of each station from J_a along the axis,
    section area and perimeter; section_closed: (N,) whether the section was a closed loop.
    """

    limb_name: str
    status: str
    length_m: float
    length_fraction: float
    segment_length_m: float
    volume_m3: float
    station_m: tuple[float, ...]
    area_m2: tuple[float, ...]
    perimeter_m: tuple[float, ...]
    section_closed: tuple[bool, ...]

    def to_dict(self) -> dict:
        """JSON-friendly dict (floats, lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def residual_length(anchor: np.ndarray, target: np.ndarray, tip: np.ndarray) -> tuple[float, float]:
    """(length_m, fraction of |J_t - J_a|) of the tip's projection on the axis from J_a.

    anchor, target, tip: (3,) points.
    """
    anchor, target, tip = (np.asarray(p, dtype=np.float64) for p in (anchor, target, tip))
    axis = limb_axis(anchor, target)
    length = float((tip - anchor) @ axis)
    return length, length / float(np.linalg.norm(target - anchor))


def closed_volume_distal(verts: np.ndarray, faces: np.ndarray, origin: np.ndarray, normal: np.ndarray) -> float:
    """Volume (m^3) enclosed by a surface's part on the ``+normal`` side of a plane, holes fanned shut.

    verts: (V, 3); faces: (F, 3) outward winding (may be open); origin, normal: (3,) the plane.
    The clipped surface's open boundary is closed by a fan from each boundary component's
    centroid; lids on the plane contribute nothing (volumes are taken about ``origin``).
    """
    normal = np.asarray(normal, dtype=np.float64)
    normal = normal / np.linalg.norm(normal)
    origin = np.asarray(origin, dtype=np.float64)
    if len(faces) == 0:
        return 0.0
    values = -((verts - origin) @ normal)
    values[np.abs(values) < 1e-12] = 1e-12
    v, f, _, _ = clip_by_values(verts, faces, values)
    if len(f) == 0:
        return 0.0
    rel = v - origin
    volume = _signed_volume(rel, f)
    # Close the open boundary: fan each boundary component to its centroid.
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    n = len(v)
    code = directed[:, 0] * n + directed[:, 1]
    rev = directed[:, 1] * n + directed[:, 0]
    open_edges = directed[~np.isin(rev, code)]
    if len(open_edges):
        graph = scipy.sparse.coo_matrix((np.ones(len(open_edges)), (open_edges[:, 0], open_edges[:, 1])), shape=(n, n))
        comp = scipy.sparse.csgraph.connected_components(graph, directed=False)[1]
        edge_comp = comp[open_edges[:, 0]]
        for c in np.unique(edge_comp):
            edges = open_edges[edge_comp == c]
            centre = rel[np.unique(edges)].mean(axis=0)
            a, b = rel[edges[:, 1]], rel[edges[:, 0]]  # reversed boundary edge, then the centre
            volume += float(np.einsum("ij,ij->i", a, np.cross(b, centre)).sum()) / 6.0
    return volume


@dataclass(frozen=True)
class Section:
    """One plane section: area (m^2) and perimeter (m) of the polyline (an open one closed by a
    chord), whether it was closed, and its largest distance from the plane origin (m)."""

    area_m2: float
    perimeter_m: float
    closed: bool
    max_radius_m: float


EMPTY_SECTION = Section(0.0, 0.0, False, 0.0)


def cross_section(verts: np.ndarray, faces: np.ndarray, origin: np.ndarray, normal: np.ndarray) -> Section:
    """The section polyline around ``origin`` of a plane cut through a triangle mesh.

    verts: (V, 3); faces: (F, 3); origin, normal: (3,) the plane. The section's polylines are
    chained exactly through shared mesh edges; the one enclosing ``origin`` (else the one whose
    centroid is nearest) is measured. ``EMPTY_SECTION`` when the plane misses the surface.
    """
    normal = np.asarray(normal, dtype=np.float64)
    normal = normal / np.linalg.norm(normal)
    origin = np.asarray(origin, dtype=np.float64)
    values = (verts - origin) @ normal
    values[np.abs(values) < 1e-12] = 1e-12
    sign = values[faces] > 0
    crossing = faces[sign.any(axis=1) & ~sign.all(axis=1)]
    if len(crossing) == 0:
        return EMPTY_SECTION
    # The two crossing edges of each face, as keys of undirected edges.
    n = len(verts)
    pairs = []
    for i, j in ((0, 1), (1, 2), (2, 0)):
        a, b = crossing[:, i], crossing[:, j]
        crosses = (values[a] > 0) != (values[b] > 0)
        pairs.append(np.where(crosses, np.minimum(a, b) * n + np.maximum(a, b), -1))
    pairs = np.sort(np.stack(pairs, axis=1), axis=1)[:, 1:]  # drop the -1 (non-crossing edge)
    keys, inverse = np.unique(pairs, return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    lo, hi = keys // n, keys % n
    t = values[lo] / (values[lo] - values[hi])
    points = verts[lo] + t[:, None] * (verts[hi] - verts[lo])
    basis_u = np.cross(normal, [1.0, 0.0, 0.0])
    if np.linalg.norm(basis_u) < 0.1:
        basis_u = np.cross(normal, [0.0, 1.0, 0.0])
    basis_u /= np.linalg.norm(basis_u)
    basis_w = np.cross(normal, basis_u)
    uv = np.stack([(points - origin) @ basis_u, (points - origin) @ basis_w], axis=1)

    best = None
    for chain, closed in _chains(len(keys), inverse):
        poly = uv[chain]
        ring = np.concatenate([poly, poly[:1]])
        area = 0.5 * abs(float(np.sum(ring[:-1, 0] * ring[1:, 1] - ring[1:, 0] * ring[:-1, 1])))
        perimeter = float(np.linalg.norm(np.diff(ring, axis=0), axis=1).sum())
        score = (0 if _contains_origin(poly) else 1, float(np.linalg.norm(poly.mean(axis=0))))
        if best is None or score < best[0]:
            best = (score, Section(area, perimeter, closed, float(np.linalg.norm(poly, axis=1).max())))
    return best[1]


def stump_geometry(
    *,
    verts: np.ndarray,
    faces: np.ndarray,
    residual_mask: np.ndarray,
    anchor: np.ndarray,
    target: np.ndarray,
    tip: np.ndarray,
    num_stations: int = 10,
    max_radius_ratio: float = 1.5,
    limb_name: str = "",
    status: str = "",
) -> StumpGeometry:
    """Measure one capped residual limb (see the module docstring).

    verts: (V, 3) capped mesh; faces: (F, 3); residual_mask: (V,) bool m_r of this limb;
    anchor, target: (3,) J_a, J_t; tip: (3,) the cap tip; num_stations: N >= 1.
    max_radius_ratio: where the residual faces' section is open, the whole mesh's closed loop
    around the axis replaces it if it stays within this times the median largest radius of the
    closed sections, i.e. if it does not run around the torso or another limb.
    """
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    mask = np.asarray(residual_mask, dtype=bool)
    if mask.shape != (len(verts),):
        raise CutError(f"residual_mask must have shape ({len(verts)},), got {mask.shape}")
    if int(num_stations) != num_stations or num_stations < 1:
        raise CutError(f"num_stations must be an integer >= 1, got {num_stations}")
    anchor, target = np.asarray(anchor, dtype=np.float64), np.asarray(target, dtype=np.float64)
    axis = limb_axis(anchor, target)
    length, fraction = residual_length(anchor, target, tip)
    if not length > 0:
        raise CutError(f"{limb_name}: the cap tip does not lie beyond the anchor joint")
    region = faces[mask[faces].all(axis=1)]
    volume = closed_volume_distal(verts, region, anchor, axis)
    stations = length * (np.arange(num_stations) + 0.5) / num_stations
    sections = [cross_section(verts, region, anchor + station * axis, axis) for station in stations]
    closed_radii = [sec.max_radius_m for sec in sections if sec.closed]
    if closed_radii:
        limit = max_radius_ratio * float(np.median(closed_radii))
        for i, station in enumerate(stations):
            if not sections[i].closed:  # the residual segment's label border crosses this plane
                whole = cross_section(verts, faces, anchor + station * axis, axis)
                if whole.closed and whole.max_radius_m <= limit:
                    sections[i] = whole
    return StumpGeometry(
        limb_name=limb_name,
        status=status,
        length_m=length,
        length_fraction=fraction,
        segment_length_m=float(np.linalg.norm(target - anchor)),
        volume_m3=volume,
        station_m=tuple(float(s) for s in stations),
        area_m2=tuple(sec.area_m2 for sec in sections),
        perimeter_m=tuple(sec.perimeter_m for sec in sections),
        section_closed=tuple(sec.closed for sec in sections),
    )


def residual_body_geometry(body: ResidualBody, *, num_stations: int = 10) -> tuple[StumpGeometry, ...]:
    """:func:`stump_geometry` for every residual limb of a cut-and-capped body, in step order."""
    return tuple(
        stump_geometry(
            verts=body.verts,
            faces=body.faces,
            residual_mask=mask,
            anchor=step.cut.anchor,
            target=step.cut.target,
            tip=body.verts[tip],
            num_stations=num_stations,
            limb_name=step.cut.limb_name,
            status=step.cut.status.value,
        )
        for step, tip, mask in zip(body.steps, body.tip_indices, body.limb_masks)
    )


def _signed_volume(rel: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = rel[faces[:, 0]], rel[faces[:, 1]], rel[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0


def _chains(num_nodes: int, segments: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """Order the nodes of each connected polyline of (S, 2) node segments; (nodes, closed)."""
    neighbours: list[list[int]] = [[] for _ in range(num_nodes)]
    for a, b in segments.tolist():
        neighbours[a].append(b)
        neighbours[b].append(a)
    seen = np.zeros(num_nodes, dtype=bool)
    chains = []
    starts = [i for i in range(num_nodes) if len(neighbours[i]) == 1] + list(range(num_nodes))
    for start in starts:
        if seen[start] or not neighbours[start]:
            continue
        chain, prev, cur = [start], -1, start
        seen[start] = True
        while True:
            nxt = [m for m in neighbours[cur] if m != prev and not seen[m]]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            seen[cur] = True
            chain.append(cur)
        closed = len(chain) > 2 and start in neighbours[cur]
        chains.append((np.asarray(chain), closed))
    return chains


def _contains_origin(poly: np.ndarray) -> bool:
    """Even-odd test: does the closed polygon (P, 2) contain (0, 0)?"""
    x, y = poly[:, 0], poly[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    crosses = (y > 0) != (yn > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x + (0 - y) * (xn - x) / (yn - y)
    return bool(np.sum(crosses & (x_at > 0)) % 2)
