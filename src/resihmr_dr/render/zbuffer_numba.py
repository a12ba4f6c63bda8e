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
