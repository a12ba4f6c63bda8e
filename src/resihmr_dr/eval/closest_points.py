"""Exact closest points on segments and triangle surfaces (the evaluator's distance queries).

:class:`SurfaceQuery` finds the exact closest point of a triangle surface for many points at
once (a KD-tree of the triangles' centroids bounds the search); :func:`closest_on_segments` the
closest points on line segments. Any frame, metres.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["SurfaceQuery", "closest_on_segments"]


@dataclass(frozen=True)
class SurfaceQuery:
    """Exact closest points on a triangle surface, fast: the nearest few triangles (KD-tree of
    their centroids) bound a point's distance d from above; a triangle can be nearer only if
    its centroid lies within d + its radius, and all of those are checked.

    triangles: (F', 3, 3) the surface's triangles, long ones bisected (the same surface, so the
    same closest points) until none reaches far from its centroid; centres: (F', 3) their
    centroids (``tree`` over them); radii: (F',) the largest distance of each triangle's
    vertices from its centroid; normals: (F', 3) their unit normals (0 where degenerate).
    """

    triangles: np.ndarray
    centres: np.ndarray
    radii: np.ndarray
    normals: np.ndarray
    tree: cKDTree

    @classmethod
    def build(cls, verts: np.ndarray, faces: np.ndarray) -> SurfaceQuery:
        """The query structure of verts (V, 3), faces (F >= 1, 3)."""
        tri = np.asarray(verts, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
        if not len(tri):
            raise ValueError("SurfaceQuery needs at least one face")
        limit = 2.0 * float(np.median(_triangle_radii(tri)))
        for _ in range(64):  # bisect the longest edge of every triangle reaching beyond the limit
            long = _triangle_radii(tri) > limit
            if not long.any():
                break
            t = tri[long]
            first = np.argmax(np.linalg.norm(t - np.roll(t, -1, axis=1), axis=2), axis=1)  # edge (i, i + 1)
            t = t[np.arange(len(t))[:, None], (first[:, None] + np.arange(3)) % 3]  # longest edge first
            mid = 0.5 * (t[:, 0] + t[:, 1])
            halves = np.concatenate([np.stack([t[:, 0], mid, t[:, 2]], 1), np.stack([mid, t[:, 1], t[:, 2]], 1)])
            tri = np.concatenate([tri[~long], halves])
        centres = tri.mean(axis=1)
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norm = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)
        return cls(tri, centres, _triangle_radii(tri), normals, cKDTree(centres))

    def closest(self, points: np.ndarray, *, pairs: int = 400_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, 3) closest surface points, (N,) distances and (N, 3) unit normals there (of the
        triangle hit; 0 for a degenerate one) of ``points`` (N, 3); ``pairs``: the
        point-triangle candidates gathered at a time (memory)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        k = min(4, len(self.triangles))
        idx = self.tree.query(points, k=k)[1].reshape(len(points), k)
        bound = _closest_on_triangles(np.repeat(points, k, axis=0), self.triangles[idx.ravel()])[1]
        bound = bound.reshape(len(points), k).min(axis=1) * (1 + 1e-9) + 1e-12
        lists = self.tree.query_ball_point(points, bound + float(self.radii.max()))
        counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(points))
        near, dist, face = np.zeros_like(points), np.zeros(len(points)), np.zeros(len(points), dtype=np.int64)
        start = 0
        while start < len(points):  # blocks of points with about ``pairs`` candidates in all
            stop = start + max(1, int(np.searchsorted(np.cumsum(counts[start:]), pairs)))
            owner = np.repeat(np.arange(start, stop), counts[start:stop])
            cand = np.fromiter(itertools.chain.from_iterable(lists[start:stop]), dtype=np.int64, count=len(owner))
            # Only triangles that can come within the bound: by their centroid and radius, and by their plane.
            rel, reach = points[owner] - self.centres[cand], bound[owner]
            keep = _dot(rel, rel) <= (reach + self.radii[cand]) ** 2
            keep &= np.abs(_dot(rel, self.normals[cand])) <= reach
            owner, cand = owner[keep], cand[keep]
            q, d = _closest_on_triangles(points[owner], self.triangles[cand])
            first = np.searchsorted(owner, np.arange(start, stop))  # every point keeps its nearest
            best = np.minimum.reduceat(d, first)
            hit = np.flatnonzero(d == best[owner - start])
            _, pick = np.unique(owner[hit], return_index=True)  # the first nearest of each point
            near[start:stop], dist[start:stop], face[start:stop] = q[hit[pick]], best, cand[hit[pick]]
            start = stop
        return near, dist, self.normals[face]


def _triangle_radii(tri: np.ndarray) -> np.ndarray:
    """(F,) the largest distance of each triangle's (F, 3, 3) vertices from its centroid."""
    return np.linalg.norm(tri - tri.mean(axis=1, keepdims=True), axis=2).max(axis=1)


def _closest_on_triangles(p: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) closest points and (M,) distances of points p (M, 3) on triangles tri (M, 3, 3)
    (Ericson's Voronoi-region test, vectorised; a degenerate triangle by its edges)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    ab, ac, ap = b - a, c - a, p - a
    d00, d01, d11 = _dot(ab, ab), _dot(ab, ac), _dot(ac, ac)
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    d3, d4, d5, d6 = d1 - d00, d2 - d01, d1 - d01, d2 - d11  # the same products from b and from c
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        v, w = vb / (va + vb + vc), vc / (va + vb + vc)  # inside the face
        on_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        on_ac, on_ab = d2 / (d2 - d6), d1 / (d1 - d3)
    regions = (  # (test, v, w); the first test that holds wins, so applied last first
        ((va <= 0) & (d4 >= d3) & (d5 >= d6), 1.0 - on_bc, on_bc),  # edge bc
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), 0.0, on_ac),  # edge ac
        ((d6 >= 0) & (d5 <= d6), 0.0, 1.0),  # vertex c
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), on_ab, 0.0),  # edge ab
        ((d3 >= 0) & (d4 <= d3), 1.0, 0.0),  # vertex b
        ((d1 <= 0) & (d2 <= 0), 0.0, 0.0),  # vertex a
    )
    for test, rv, rw in regions:
        v, w = np.where(test, rv, v), np.where(test, rw, w)
    near = a + v[:, None] * ab + w[:, None] * ac
    bad = np.flatnonzero(~np.isfinite(near).all(axis=1))  # a degenerate triangle, no region held
    if len(bad):
        edges = [closest_on_segments(p[bad], s, e) for s, e in ((a[bad], b[bad]), (b[bad], c[bad]), (c[bad], a[bad]))]
        pick = np.argmin([np.linalg.norm(p[bad] - q, axis=1) for q in edges], axis=0)
        near[bad] = np.stack(edges)[pick, np.arange(len(bad))]
    return near, np.sqrt(_dot(p - near, p - near))


def closest_on_segments(p: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(M, 3) closest points of points p (M, 3) on the segments start-end: (M, 3) each, or (3,)
    one segment for all."""
    start, end = np.broadcast_to(start, p.shape), np.broadcast_to(end, p.shape)
    se = end - start
    t = np.clip(_dot(p - start, se) / np.maximum(_dot(se, se), 1e-300), 0.0, 1.0)
    return start + t[:, None] * se


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(M,) row-wise dot products of (M, 3) arrays."""
    return np.einsum("ij,ij->i", x, y)
