"""A hard z-buffer rasteriser for masks, overlays and figures.

PyTorch3D's hard rasteriser runs its naive per-pixel loop on CPU (minutes for a 640x480 body);
this one enumerates each face's own pixel window instead: compiled loops on CPU
(:mod:`~resihmr_dr.render.zbuffer_numba`, milliseconds), vectorised PyTorch elsewhere or without
Numba (``use_numba=False``). Not differentiable: use ``render.silhouette`` for losses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from resihmr_dr.camera import IN_FRONT_DEPTH_M, PinholeCamera


@dataclass(frozen=True)
class Fragments:
    """face_index: (H, W) long, -1 where no face covers the pixel centre; depth: (H, W) camera z
    (metres, +inf on the background); bary: (H, W, 3) screen-space barycentric coordinates of the
    pixel centre in its face (zeros on the background)."""

    face_index: torch.Tensor
    depth: torch.Tensor
    bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(H, W) bool: pixels covered by a face."""
        return self.face_index >= 0


def rasterize(
    *,
    verts_cam: torch.Tensor,
    faces: torch.Tensor,
    camera: PinholeCamera,
    max_pairs: int = 4_000_000,
    use_numba: bool = True,
) -> Fragments:
    """Nearest face at each pixel centre (pixel (i, j) centre at x = j, y = i).

    verts_cam: (V, 3) camera frame (OpenCV, metres); faces: (F, 3) long. Faces with a vertex
    not in front of the camera (z <= ``camera.IN_FRONT_DEPTH_M``, 1 mm) are skipped.
    ``max_pairs`` bounds the (face, pixel) pairs held in memory at once (PyTorch path).
    ``use_numba``: the compiled CPU kernel where it imports (equal results; of equally near faces
    it keeps the first, the PyTorch path any).
    """
    height, width = camera.height, camera.width
    face_ids, tri, z = _front_triangles(verts_cam, faces, camera)
    device = verts_cam.device

    kernel = _numba_zbuffer() if use_numba and device.type == "cpu" else None
    if kernel is not None:
        face, depth, bary = kernel.zbuffer(tri.numpy(), z.numpy(), height, width)
        face = torch.from_numpy(face)
        face_index = torch.where(face >= 0, face_ids[face.clamp_min(0)], face)
        return Fragments(
            face_index=face_index.view(height, width),
            depth=torch.from_numpy(depth).view(height, width).float(),
            bary=torch.from_numpy(bary).view(height, width, 3).float(),
        )
    lo = tri.amin(dim=1).ceil().long()
    hi = tri.amax(dim=1).floor().long()
    lo[:, 0].clamp_(0, width)
    lo[:, 1].clamp_(0, height)
    hi[:, 0].clamp_(-1, width - 1)
    hi[:, 1].clamp_(-1, height - 1)
    size = (hi - lo + 1).clamp_min(0)  # (F', 2) window width/height in pixels
    visible = (size > 0).all(dim=1)
    face_ids, tri, z, lo, size = face_ids[visible], tri[visible], z[visible], lo[visible], size[visible]

    best_depth = torch.full((height * width,), float("inf"), dtype=torch.float64, device=device)
    best_face = torch.full((height * width,), -1, dtype=torch.long, device=device)
    best_bary = torch.zeros((height * width, 3), dtype=torch.float64, device=device)
    # Faces grouped by window size (powers of two), so each group enumerates a tight grid.
    extent = size.amax(dim=1)
    bucket = torch.ceil(torch.log2(extent.double())).long().clamp_min(0)
    for b in torch.unique(bucket).tolist():
        sel = torch.nonzero(bucket == b).flatten()
        side = 2**b
        per_chunk = max(1, max_pairs // (side * side))
        grid = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="xy"), dim=-1)
        grid = grid.reshape(-1, 2).to(device)  # (side², 2) as (dx, dy)
        for start in range(0, sel.numel(), per_chunk):
            idx = sel[start : start + per_chunk]
            _raster_chunk(
                tri=tri[idx],
                z=z[idx],
                lo=lo[idx],
                size=size[idx],
                face_ids=face_ids[idx],
                grid=grid,
                width=width,
                best_depth=best_depth,
                best_face=best_face,
                best_bary=best_bary,
            )
    return Fragments(
        face_index=best_face.view(height, width),
        depth=best_depth.view(height, width).float(),
        bary=best_bary.view(height, width, 3).float(),
    )


def nearest_faces(*, verts_cam: torch.Tensor, faces: torch.Tensor, camera: PinholeCamera) -> torch.Tensor:
    """(H, W) long: :func:`rasterize`'s ``face_index`` alone (the same faces; on CPU with Numba one
    compiled pass that gathers the corners itself and computes no barycentrics, about 3x as fast)."""
    kernel = _numba_zbuffer() if verts_cam.device.type == "cpu" else None
    if kernel is None:
        return rasterize(verts_cam=verts_cam, faces=faces, camera=camera).face_index
    verts = verts_cam.detach().to(torch.float64)
    xy = camera.project(verts)  # (V, 2) px
    face = kernel.zbuffer_mesh_faces(
        xy.numpy(),
        verts[:, 2].contiguous().numpy(),
        faces.long().numpy(),
        camera.height,
        camera.width,
        IN_FRONT_DEPTH_M,
    )
    return torch.from_numpy(face).view(camera.height, camera.width)


def silhouette_edge_vertices(face_index: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Ids of the vertices of the faces seen at the rendered silhouette's edge pixels (covered
    pixels with a 4-neighbour not covered or beyond the image). face_index: (H, W) long, -1 where
    no face is seen (:attr:`Fragments.face_index`, :func:`nearest_faces`); faces: (F, 3). Sorted
    ids; on CPU with Numba from one compiled pass (the same ids)."""
    kernels = _numba_zbuffer() if face_index.device.type == "cpu" else None
    if kernels is not None:  # the same ids from one compiled pass
        if len(faces) == 0:
            return faces.new_zeros(0, dtype=torch.long)
        ids = kernels.edge_vertices(
            np.ascontiguousarray(face_index.numpy()), faces.long().numpy(), int(faces.max()) + 1
        )
        return torch.from_numpy(ids)
    covered = face_index >= 0
    padded = F.pad(covered[None, None].float(), (1, 1, 1, 1))[0, 0] > 0
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge_faces = face_index[covered & ~interior].unique()
    return faces.to(face_index.device)[edge_faces].reshape(-1).unique()


def _front_triangles(
    verts_cam: torch.Tensor, faces: torch.Tensor, camera: PinholeCamera
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The faces with every vertex in front of the camera: their ids (F',), projected corners
    (F', 3, 2) px and depths (F', 3), float64."""
    if verts_cam.ndim != 2 or verts_cam.shape[1] != 3:
        raise ValueError(f"verts_cam must be (V, 3), got {tuple(verts_cam.shape)}")
    verts = verts_cam.detach().to(torch.float64)
    corners = faces.to(verts.device).long()
    z = verts[corners, 2]  # (F, 3)
    face_ids = torch.nonzero((z > IN_FRONT_DEPTH_M).all(dim=1)).flatten()
    xy = camera.project(verts)  # (V, 2) px
    return face_ids, xy[corners[face_ids]], z[face_ids]


@functools.cache
def _numba_zbuffer():
    """The compiled kernels' module (:mod:`resihmr_dr.render.zbuffer_numba`), or None without Numba
    (asked once)."""
    try:
        from resihmr_dr.render import zbuffer_numba
    except ImportError:
        return None
    return zbuffer_numba


def _raster_chunk(*, tri, z, lo, size, face_ids, grid, width, best_depth, best_face, best_bary) -> None:
    pix = lo[:, None, :] + grid[None]  # (F, G, 2)
    inside_window = (grid[None] < size[:, None, :]).all(dim=-1)
    p = pix.to(tri.dtype)
    a, b, c = tri[:, None, 0], tri[:, None, 1], tri[:, None, 2]
    area = _edge(a, b, c)  # (F, 1)
    w0 = _edge(b, c, p) / area
    w1 = _edge(c, a, p) / area
    w2 = 1.0 - w0 - w1
    eps = -1e-9
    covered = inside_window & (w0 >= eps) & (w1 >= eps) & (w2 >= eps) & (area.abs() > 1e-12)
    depth = w0 * z[:, None, 0] + w1 * z[:, None, 1] + w2 * z[:, None, 2]
    fi, gi = torch.nonzero(covered, as_tuple=True)
    if fi.numel() == 0:
        return
    lin = pix[fi, gi, 1] * width + pix[fi, gi, 0]
    d = depth[fi, gi]
    best_depth.scatter_reduce_(0, lin, d, reduce="amin")
    win = d <= best_depth[lin]
    best_face.scatter_(0, lin[win], face_ids[fi[win]])
    bary = torch.stack((w0[fi, gi], w1[fi, gi], w2[fi, gi]), dim=-1)
    best_bary[lin[win]] = bary[win]


def _edge(a: torch.Tensor, b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Twice the signed area of (a, b, p); (..., 2) inputs."""
    return (b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0])


def shade(
    *,
    verts_cam: torch.Tensor,
    faces: torch.Tensor,
    fragments: Fragments,
    face_rgb: np.ndarray | None = None,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """Flat-shaded (H, W, 3) float image in [0, 1], lit from the camera.

    Smooth (Gouraud-style) shading: vertex normals interpolated with the fragments' barycentrics.
    face_rgb: (F, 3) per-face colours (default light skin); background: (H, W, 3) or None (white).
    """
    verts = verts_cam.detach().double().cpu()
    faces = faces.cpu().long()
    tri = verts[faces]
    face_normals = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)  # area-weighted
    vert_normals = torch.zeros_like(verts).index_add_(0, faces.flatten(), face_normals.repeat_interleave(3, dim=0))
    if face_rgb is None:
        face_rgb = np.tile(np.array([0.86, 0.70, 0.60]), (faces.shape[0], 1))
    fi = fragments.face_index.cpu()
    h, w = fi.shape
    out = np.ones((h, w, 3)) if background is None else background.astype(np.float64).copy()
    covered = fi >= 0
    pix_faces = faces[fi[covered]]  # (N, 3)
    bary = fragments.bary.cpu().double()[covered]  # (N, 3)
    normal = torch.nn.functional.normalize((vert_normals[pix_faces] * bary[..., None]).sum(dim=1), dim=1)
    point = (verts[pix_faces] * bary[..., None]).sum(dim=1)
    view = torch.nn.functional.normalize(-point, dim=1)  # towards the camera
    lambert = (normal * view).sum(dim=1).abs().numpy()  # two-sided
    intensity = 0.3 + 0.7 * lambert
    out[covered.numpy()] = np.clip(face_rgb[fi[covered].numpy()] * intensity[:, None], 0.0, 1.0)
    return out
