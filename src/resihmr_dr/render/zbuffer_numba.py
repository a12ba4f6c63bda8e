"""Compiled CPU kernel of the hard z-buffer (:mod:`resihmr_dr.render.zbuffer`), Numba.

One sequential pass over the faces: each face visits the pixel centres of its bounding box, tests
them with the same barycentric rule as the PyTorch path (every weight >= -1e-9, |area| > 1e-12)
and keeps the nearest face per pixel (the first of equally near faces). The first call compiles
the kernel and caches it next to this file.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _zbuffer_into(tri, z, width, face, depth, bary, keep_bary):
    """The pass itself: fills ``face`` / ``depth`` (and ``bary`` when ``keep_bary``) in place."""
    height = face.shape[0] // width
    for f in range(tri.shape[0]):
        ax, ay = tri[f, 0, 0], tri[f, 0, 1]
        bx, by = tri[f, 1, 0], tri[f, 1, 1]
        cx, cy = tri[f, 2, 0], tri[f, 2, 1]
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if not abs(area) > 1e-12:
            continue
        x0 = max(math.ceil(min(ax, bx, cx)), 0)
        y0 = max(math.ceil(min(ay, by, cy)), 0)
        x1 = min(math.floor(max(ax, bx, cx)), width - 1)
        y1 = min(math.floor(max(ay, by, cy)), height - 1)
        for py in range(int(y0), int(y1) + 1):
            for px in range(int(x0), int(x1) + 1):
                w0 = ((cx - bx) * (py - by) - (cy - by) * (px - bx)) / area
                w1 = ((ax - cx) * (py - cy) - (ay - cy) * (px - cx)) / area
                w2 = 1.0 - w0 - w1
                if w0 >= -1e-9 and w1 >= -1e-9 and w2 >= -1e-9:
                    d = w0 * z[f, 0] + w1 * z[f, 1] + w2 * z[f, 2]
                    i = py * width + px
                    if d < depth[i]:
                        depth[i] = d
                        face[i] = f
                        if keep_bary:
                            bary[i, 0], bary[i, 1], bary[i, 2] = w0, w1, w2


@numba.njit(cache=True)
def zbuffer(tri, z, height, width):
    """(H*W,) int64 face position (-1: none), (H*W,) float64 depth (+inf: none), (H*W, 3) float64
    barycentrics of the nearest face at each pixel centre; tri (F, 3, 2) pixels, z (F, 3) depths."""
    n = height * width
    face = np.full(n, -1, dtype=np.int64)
    depth = np.full(n, np.inf)
    bary = np.zeros((n, 3))
    _zbuffer_into(tri, z, width, face, depth, bary, True)
    return face, depth, bary


@numba.njit(cache=True)
def zbuffer_faces(tri, z, height, width):
    """Only the (H*W,) face positions of :func:`zbuffer` (the same ones), without its barycentrics."""
    face = np.full(height * width, -1, dtype=np.int64)
    _zbuffer_into(tri, z, width, face, np.full(height * width, np.inf), np.zeros((0, 3)), False)
    return face


@numba.njit(cache=True)
def zbuffer_mesh_faces(xy, z, faces, height, width, min_depth):
    """:func:`zbuffer_faces` of a whole mesh: xy (V, 2) projected vertices (px), z (V,) depths,
    faces (F, 3). Faces with a vertex at depth <= ``min_depth`` are skipped; returns (H*W,) face
    ids (-1: none), the same as gathering the front faces' corners and calling :func:`zbuffer_faces`."""
    n_front = 0
    front = np.empty(faces.shape[0], dtype=np.int64)
    for f in range(faces.shape[0]):
        if z[faces[f, 0]] > min_depth and z[faces[f, 1]] > min_depth and z[faces[f, 2]] > min_depth:
            front[n_front] = f
            n_front += 1
    tri = np.empty((n_front, 3, 2))
    tz = np.empty((n_front, 3))
    for k in range(n_front):
        for c in range(3):
            v = faces[front[k], c]
            tri[k, c, 0], tri[k, c, 1], tz[k, c] = xy[v, 0], xy[v, 1], z[v]
    face = zbuffer_faces(tri, tz, height, width)
    for i in range(face.shape[0]):
        if face[i] >= 0:
            face[i] = front[face[i]]
    return face


@numba.njit(cache=True)
def edge_vertices(face_index, faces, n_verts):
    """Sorted ids of the vertices of the faces seen at the silhouette's edge pixels of a (H, W)
    face-index image (-1: no face): covered pixels with a 4-neighbour not covered or beyond the
    image."""
    height, width = face_index.shape
    edge_face = np.zeros(faces.shape[0], dtype=np.bool_)
    for y in range(height):
        for x in range(width):
            f = face_index[y, x]
            if f < 0:
                continue
            if (
                y == 0
                or x == 0
                or y == height - 1
                or x == width - 1
                or face_index[y - 1, x] < 0
                or face_index[y + 1, x] < 0
                or face_index[y, x - 1] < 0
                or face_index[y, x + 1] < 0
            ):
                edge_face[f] = True
    seen = np.zeros(n_verts, dtype=np.bool_)
    for f in range(faces.shape[0]):
        if edge_face[f]:
            seen[faces[f, 0]] = True
            seen[faces[f, 1]] = True
            seen[faces[f, 2]] = True
    return np.flatnonzero(seen)
