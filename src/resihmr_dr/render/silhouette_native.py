"""Native soft-silhouette backend: pure PyTorch (CPU or GPU), no compiled extension.

For each pixel p of the output image it computes PyTorch3D's soft-silhouette alpha

    alpha_p = 1 - prod_f (1 - sigmoid(-d_fp / sigma)) = 1 - exp(S_p),
    S_p = sum_f log(1 - sigmoid(-d_fp / sigma)) = sum_f logsigmoid(d_fp / sigma),

over *every* face f with ``d_fp < blur_radius`` or containing p (no truncation to K faces).
``d_fp`` is PyTorch3D's signed squared 2D distance from the pixel centre to the projected triangle
(min over its three edges, negative inside), in NDC units: ``d = d_px / s**2`` with
``s = min(H, W) / 2`` output pixels per NDC unit. Distances do not depend on PyTorch3D's axis flips,
so pixel coordinates are used directly.

Algorithm: project the vertices to output pixels; give every face a pixel window (its bounding box
grown by the blur radius, clipped to the image); group faces by window shape (kh, kw) so that each
group is a dense (n, kh, kw) tensor computed by broadcasting; scatter-add the per-pair terms into
the image (``index_add_``). The group tensors are processed in chunks of at most ``max_pairs``
(face, pixel) pairs, so memory stays bounded at any resolution. The backward pass (a custom
autograd function) recomputes each chunk and applies the closed-form gradient of the squared
point-segment distance: for the nearest point ``c = a + t (b - a)`` of edge (a, b) and
``q = c - p``, ``d|q|^2/da = 2 (1 - t) q`` and ``d|q|^2/db = 2 t q`` (the t-derivative vanishes at
the optimum and t is constant where clamped). Gradients reach the 3D vertices through autograd of
the projection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from resihmr_dr.render.silhouette import RenderIntrinsics, SilhouetteConfig

MIN_DEPTH_M = 1e-6  # faces with a vertex at or behind this depth are skipped
DEFAULT_MAX_PAIRS = 1 << 18  # (face, pixel) pairs per chunk


@dataclass(frozen=True)
class _Chunk:
    """Faces sharing one window shape. face_ids: (n,) long; x0, y0: (n,) long window origins."""

    face_ids: torch.Tensor
    x0: torch.Tensor
    y0: torch.Tensor
    kh: int
    kw: int


def render_silhouette_native(
    *,
    verts_cam: torch.Tensor,
    faces: torch.Tensor,
    intrinsics: RenderIntrinsics,
    config: SilhouetteConfig,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> torch.Tensor:
    """(B, V, 3) camera-frame vertices, (F, 3) faces -> (B, H, W) soft silhouette alpha."""
    H, W = intrinsics.height, intrinsics.width
    faces = faces.to(device=verts_cam.device, dtype=torch.long)
    verts_px = intrinsics.project(verts_cam, min_depth=MIN_DEPTH_M)  # (B, V, 2)
    in_front = verts_cam[..., 2] > MIN_DEPTH_M  # (B, V)
    scale = intrinsics.ndc_scale_px
    sigma_px = config.sigma * scale**2  # sigma in squared output pixels
    blur_px = config.effective_blur_radius * scale**2  # blur radius in squared output pixels
    images = []
    for b in range(verts_cam.shape[0]):
        face_ok = in_front[b][faces].all(dim=1)
        log_sum = _SoftSilhouetteLogSum.apply(verts_px[b], faces[face_ok], H, W, sigma_px, blur_px, max_pairs)
        images.append(-torch.expm1(log_sum).view(H, W))
    return torch.stack(images)


def plan_chunks(
    tri_px: torch.Tensor, *, height: int, width: int, blur_px: float, max_pairs: int = DEFAULT_MAX_PAIRS
) -> list[_Chunk]:
    """Pixel windows of the faces, grouped by shape and cut into chunks of <= max_pairs pairs.

    tri_px: (F, 3, 2) projected triangles in output pixels (x right, y down; pixel centres at
    integers). A face's window holds every pixel centre within sqrt(blur_px) of its bounding box,
    clipped to the image; zero-area and off-image faces get no window.
    """
    radius = math.sqrt(blur_px)
    lo = tri_px.amin(dim=1)
    hi = tri_px.amax(dim=1)
    x0 = torch.ceil(lo[:, 0] - radius).clamp_min(0)
    y0 = torch.ceil(lo[:, 1] - radius).clamp_min(0)
    x1 = torch.floor(hi[:, 0] + radius).clamp_max(width - 1)
    y1 = torch.floor(hi[:, 1] + radius).clamp_max(height - 1)
    e1 = tri_px[:, 1] - tri_px[:, 0]
    e2 = tri_px[:, 2] - tri_px[:, 0]
    area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    finite = torch.isfinite(tri_px).all(dim=(1, 2))
    kw = (x1 - x0 + 1).nan_to_num(0).clamp(0, width)
    kh = (y1 - y0 + 1).nan_to_num(0).clamp(0, height)
    keep = finite & (kw >= 1) & (kh >= 1) & (area2 != 0)
    ids = torch.nonzero(keep).squeeze(1)
    if ids.numel() == 0:
        return []
    kw_l, kh_l = kw[ids].long(), kh[ids].long()
    key = kh_l * (width + 1) + kw_l
    order = torch.argsort(key)
    ids, key = ids[order], key[order]
    uniq, counts = torch.unique_consecutive(key, return_counts=True)
    x0_l, y0_l = x0[ids].long(), y0[ids].long()
    chunks = []
    start = 0
    for k, c in zip(uniq.tolist(), counts.tolist()):
        kh_g, kw_g = divmod(k, width + 1)
        per = max(1, max_pairs // (kh_g * kw_g))
        for s in range(start, start + c, per):
            e = min(s + per, start + c)
            chunks.append(_Chunk(ids[s:e], x0_l[s:e], y0_l[s:e], kh_g, kw_g))
        start += c
    return chunks


def pair_log_terms(tri: torch.Tensor, chunk: _Chunk, *, inv_sigma_px: float, blur_px: float) -> torch.Tensor:
    """Per-pair terms logsigmoid(d / sigma) of a chunk, zero for pairs beyond the blur radius.

    tri: (n, 3, 2) triangles in output pixels. Returns (n, kh * kw) terms for the pixels of each
    face's window in row-major order (see :func:`pixel_index`). Differentiable w.r.t. ``tri``.
    ``d`` is the squared distance to the nearest edge, negated inside the triangle (all three edge
    functions with the strict sign of the face's area, as PyTorch3D's barycentric test); a pixel
    on the line of an edge counts as outside (its distance is then 0 when it is on the edge).
    """
    n, kh, kw = tri.shape[0], chunk.kh, chunk.kw
    dtype, device = tri.dtype, tri.device
    lx = torch.arange(kw, device=device, dtype=dtype).repeat(kh)  # (P,)
    ly = torch.arange(kh, device=device, dtype=dtype).repeat_interleave(kw)  # (P,)
    v = tri.detach()
    # Orientation sign of each face, so that "inside" is "all edge functions > 0".
    area_sign = torch.sign(
        (v[:, 1, 0] - v[:, 0, 0]) * (v[:, 2, 1] - v[:, 0, 1]) - (v[:, 1, 1] - v[:, 0, 1]) * (v[:, 2, 0] - v[:, 0, 0])
    ).view(n, 1)
    ox = chunk.x0.to(dtype).view(n, 1)
    oy = chunk.y0.to(dtype).view(n, 1)
    d2_min = None
    edge_min = None
    for ia, ib in ((0, 1), (1, 2), (2, 0)):
        # Window-local coordinates: pixel - a = (l + origin - a).
        ax = (tri[:, ia, 0:1] - ox)  # (n, 1)
        ay = (tri[:, ia, 1:2] - oy)
        ex = tri[:, ib, 0:1] - tri[:, ia, 0:1]
        ey = tri[:, ib, 1:2] - tri[:, ia, 1:2]
        inv_l2 = 1.0 / (ex * ex + ey * ey).clamp_min(1e-30)
        wx = lx - ax  # (n, P)
        wy = ly - ay
        t = torch.addcmul(wx * (ex * inv_l2), wy, ey * inv_l2).clamp(0.0, 1.0)
        rx = torch.addcmul(wx, t, ex, value=-1.0)  # pixel - nearest point
        ry = torch.addcmul(wy, t, ey, value=-1.0)
        d2 = torch.addcmul(rx * rx, ry, ry)
        with torch.no_grad():
            edge_fn = torch.addcmul(wy * (ex * area_sign), wx, ey * area_sign, value=-1.0)
            edge_min = edge_fn if edge_min is None else torch.minimum(edge_min, edge_fn)
        d2_min = d2 if d2_min is None else torch.minimum(d2_min, d2)
    # inside <=> all edge functions > 0 ; signed distance = -d2 inside, +d2 outside.
    inside = edge_min > 0
    signed = torch.where(inside, -d2_min, d2_min)
    x = signed * inv_sigma_px
    term = torch.clamp_max(x, 0.0) - torch.log1p(torch.exp(-x.abs()))  # logsigmoid(x), stable
    return term * (signed < blur_px)


def pixel_index(chunk: _Chunk, width: int) -> torch.Tensor:
    """(n, kh * kw) flat pixel indices (row * width + column) of the chunk's windows."""
    device = chunk.x0.device
    local = (torch.arange(chunk.kh, device=device)[:, None] * width + torch.arange(chunk.kw, device=device)).view(1, -1)
    return (chunk.y0 * width + chunk.x0).view(-1, 1) + local


class _SoftSilhouetteLogSum(torch.autograd.Function):
    """verts_px (V, 2) -> S (H*W,), S_p = sum_f logsigmoid(d_fp / sigma) over faces near p.

    The backward pass recomputes each chunk with autograd (memory bounded by the chunk size).
    """

    @staticmethod
    def forward(ctx, verts_px, faces, height, width, sigma_px, blur_px, max_pairs):
        with torch.no_grad():
            tri_all = verts_px[faces]  # (F, 3, 2)
            chunks = plan_chunks(tri_all, height=height, width=width, blur_px=blur_px, max_pairs=max_pairs)
            log_sum = torch.zeros(height * width, dtype=verts_px.dtype, device=verts_px.device)
            for chunk in chunks:
                term = pair_log_terms(tri_all[chunk.face_ids], chunk, inv_sigma_px=1.0 / sigma_px, blur_px=blur_px)
                log_sum.index_add_(0, pixel_index(chunk, width).view(-1), term.view(-1))
        ctx.save_for_backward(verts_px, faces)
        ctx.chunks = chunks
        ctx.consts = (width, sigma_px, blur_px)
        return log_sum

    @staticmethod
    def backward(ctx, grad_log_sum):
        if not ctx.needs_input_grad[0]:
            return (None,) * 7
        verts_px, faces = ctx.saved_tensors
        width, sigma_px, blur_px = ctx.consts
        grad_verts = torch.zeros_like(verts_px)
        grad_log_sum = grad_log_sum.contiguous()
        tri_all = verts_px.detach()[faces]
        for chunk in ctx.chunks:
            with torch.enable_grad():
                tri = tri_all[chunk.face_ids].requires_grad_(True)
                term = pair_log_terms(tri, chunk, inv_sigma_px=1.0 / sigma_px, blur_px=blur_px)
                (grad_tri,) = torch.autograd.grad(term, tri, grad_outputs=grad_log_sum[pixel_index(chunk, width)])
            grad_verts.index_add_(0, faces[chunk.face_ids].view(-1), grad_tri.view(-1, 2))
        return grad_verts, None, None, None, None, None, None
