"""Native soft-silhouette backend: exact (untruncated) soft silhouettes, CPU or GPU.

Two kernels compute it: compiled Numba loops on CPU (:mod:`~resihmr_dr.render.silhouette_numba`,
the default there) and the broadcast PyTorch passes below (any device; the fallback when Numba does
not import, and the GPU path). ``SilhouetteConfig.kernel`` chooses.

For each pixel p of the output image it computes PyTorch3D's soft-silhouette alpha

    alpha_p = 1 - prod_f (1 - sigmoid(-d_fp / sigma)) = 1 - exp(S_p),
    S_p = sum_f log(1 - sigmoid(-d_fp / sigma)) = sum_f logsigmoid(d_fp / sigma),

over *every* face f with ``d_fp < blur_radius`` or containing p (no truncation to K faces).
``d_fp`` is PyTorch3D's signed squared 2D distance from the pixel centre to the projected triangle
(min over its three edges, negative inside), in NDC units: ``d = d_px / s**2`` with ``s``
output pixels per NDC unit (``silhouette_config.ndc_scale_px``; ``min(H, W) / 2`` without a crop).
Distances do not depend on PyTorch3D's axis flips, so pixel coordinates are used directly.

Algorithm: project the vertices to output pixels; give every face a pixel window (its bounding box
grown by the blur radius, sides rounded up to even, kept inside the image); group faces by window
shape (kh, kw) so that each group is a dense (n, 3 edges, kh * kw) computation by broadcasting
per-face constants against window pixel coordinates; scatter-add the per-pair terms into the image
(``index_add_``). Groups are processed in chunks of at most ``max_pairs`` (face, pixel) pairs, so
temporaries stay bounded (and in cache) at any resolution; between the passes only the plan (one
window per face) is kept. The backward pass (a custom autograd function) recomputes each
chunk's geometry and applies the closed-form gradient of the squared point-segment distance: for
the nearest point ``c = a + t (b - a)`` of edge (a, b) and ``q = c - p``,
``d|q|^2/da = 2 (1 - t) q`` and ``d|q|^2/db = 2 t q`` (the t-derivative vanishes at the optimum and
t is constant where clamped); ties between edges share the gradient. Gradients reach the 3D
vertices through autograd of the projection. :func:`pair_log_terms` is the same per-pair quantity
written with plain autograd, kept as the reference the tests compare the fast passes against.

Threads: with ``SilhouetteConfig.threads`` None (the default) neither kernel changes a thread
setting: the PyTorch passes run on torch's intra-op threads, the Numba loops on Numba's threads
over ``torch.get_num_threads()`` blocks of faces. A thread count given there sets the Numba
kernel's blocks, and torch's intra-op threads while a PyTorch pass runs (restored after it).
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import torch

from resihmr_dr.camera import MIN_DEPTH_M, PinholeCamera
from resihmr_dr.render.silhouette_config import SilhouetteConfig

# (face, pixel) pairs per chunk: ~64k keeps a chunk's (n, 3, P) temporaries in cache; measured
# fastest among 32k-256k at 256^2 on CPU.
DEFAULT_MAX_PAIRS = 1 << 16
WINDOW_STEP = 2  # window sides are rounded up to multiples of this (fewer shape groups)


@contextlib.contextmanager
def _intra_op_threads(n: int | None, device: torch.device):
    """Run the block with ``n`` torch intra-op threads on CPU, restored on exit; None (or a
    non-CPU device) changes nothing. The PyTorch passes issue many small ops: measured at 256^2 on
    a 2-core machine shared with other processes, 2 threads were 5-10x *slower* than 1 (each op's
    thread barrier waits for a descheduled thread), so callers there may ask for 1."""
    if n is None or device.type != "cpu" or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class _Chunk:
    """Faces ``start:stop`` of a plan's face order, sharing one window shape (kh, kw).

    x0, y0: (n,) long window origins (top-left pixel); origin: (n, 1, 2) the same as floats;
    lx, ly: (kh * kw,) window-local pixel coordinates, row-major.
    """

    start: int
    stop: int
    x0: torch.Tensor
    y0: torch.Tensor
    kh: int
    kw: int
    origin: torch.Tensor
    lx: torch.Tensor
    ly: torch.Tensor


@dataclass(frozen=True)
class _Plan:
    """face_ids: (Fk,) long, the faces with a window, grouped by window shape; chunks cover them."""

    face_ids: torch.Tensor
    chunks: list[_Chunk]


def render_silhouette_native(
    *,
    verts_cam: torch.Tensor,
    faces: torch.Tensor,
    camera: PinholeCamera,
    ndc_scale_px: float,
    config: SilhouetteConfig,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> torch.Tensor:
    """(B, V, 3) camera-frame vertices, (F, 3) faces -> (B, H, W) soft silhouette alpha.

    camera: the render's intrinsics, its image the output (``PinholeCamera.resampled``);
    ndc_scale_px: output pixels per NDC unit (``silhouette_config.ndc_scale_px``).
    """
    H, W = camera.height, camera.width
    faces = faces.to(device=verts_cam.device, dtype=torch.long)
    verts_px = camera.project(verts_cam)  # (B, V, 2); depths clamped to MIN_DEPTH_M
    in_front = verts_cam[..., 2] > MIN_DEPTH_M  # (B, V)
    sigma_px = config.sigma * ndc_scale_px**2  # sigma in squared output pixels
    blur_px = config.effective_blur_radius * ndc_scale_px**2  # blur radius in squared output pixels
    use_numba = _use_numba(config.kernel, verts_cam.device)
    images = []
    for b in range(verts_cam.shape[0]):
        face_ok = in_front[b][faces].all(dim=1)
        if use_numba:
            blocks = config.threads or torch.get_num_threads()
            log_sum = _NumbaLogSum.apply(verts_px[b], faces[face_ok], H, W, sigma_px, blur_px, blocks)
        else:
            log_sum = _SoftSilhouetteLogSum.apply(
                verts_px[b], faces[face_ok], H, W, sigma_px, blur_px, max_pairs, config.threads
            )
        images.append(-torch.expm1(log_sum).view(H, W))
    return torch.stack(images)


@functools.cache
def numba_available() -> bool:
    """Whether the compiled CPU kernels import (Numba installed and working); asked once."""
    try:
        import resihmr_dr.render.silhouette_numba  # noqa: F401
    except ImportError:
        return False
    return True


def _use_numba(kernel: str, device: torch.device) -> bool:
    if kernel == "torch":
        return False
    if kernel == "numba":
        if device.type != "cpu":
            raise ValueError(f"the numba silhouette kernel runs on the CPU only, got tensors on {device}")
        if not numba_available():
            raise ImportError("the numba silhouette kernel needs numba (pip install numba)")
        return True
    return device.type == "cpu" and numba_available()


def _round_up(x: torch.Tensor, step: int) -> torch.Tensor:
    return (x + (step - 1)) // step * step


def plan_chunks(
    tri_px: torch.Tensor, *, height: int, width: int, blur_px: float, max_pairs: int = DEFAULT_MAX_PAIRS
) -> _Plan:
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
    finite = torch.isfinite(tri_px).all(dim=2).all(dim=1)
    kw = (x1 - x0 + 1).nan_to_num(0).clamp(0, width)
    kh = (y1 - y0 + 1).nan_to_num(0).clamp(0, height)
    keep = finite & (kw >= 1) & (kh >= 1) & (area2 != 0)
    ids = torch.nonzero(keep).squeeze(1)
    if ids.numel() == 0:
        return _Plan(ids, [])
    # Round window shapes up to multiples of WINDOW_STEP (fewer, larger groups; the extra pixels
    # lie beyond the blur radius and add exact zeros), shifting windows back inside the image.
    kw_l = _round_up(kw[ids].long(), WINDOW_STEP).clamp_max(width)
    kh_l = _round_up(kh[ids].long(), WINDOW_STEP).clamp_max(height)
    x0_l = torch.minimum(x0[ids].long(), width - kw_l)
    y0_l = torch.minimum(y0[ids].long(), height - kh_l)
    key = kh_l * (width + 1) + kw_l
    order = torch.argsort(key)
    ids, key, x0_l, y0_l = ids[order], key[order], x0_l[order], y0_l[order]
    uniq, counts = torch.unique_consecutive(key, return_counts=True)
    origin = torch.stack((x0_l, y0_l), dim=1).to(tri_px.dtype).view(-1, 1, 2)
    dtype, device = tri_px.dtype, tri_px.device
    chunks = []
    start = 0
    for k, c in zip(uniq.tolist(), counts.tolist()):
        kh_g, kw_g = divmod(k, width + 1)
        lx = torch.arange(kw_g, device=device, dtype=dtype).repeat(kh_g)
        ly = torch.arange(kh_g, device=device, dtype=dtype).repeat_interleave(kw_g)
        per = max(1, max_pairs // (kh_g * kw_g))
        for s in range(start, start + c, per):
            e = min(s + per, start + c)
            chunks.append(_Chunk(s, e, x0_l[s:e], y0_l[s:e], kh_g, kw_g, origin[s:e], lx, ly))
        start += c
    return _Plan(ids, chunks)


def pair_log_terms(tri: torch.Tensor, chunk: _Chunk, *, inv_sigma_px: float, blur_px: float) -> torch.Tensor:
    """Per-pair terms logsigmoid(d / sigma) of a chunk, zero for pairs beyond the blur radius.

    tri: (n, 3, 2) triangles in output pixels. Returns (n, kh * kw) terms for the pixels of each
    face's window in row-major order (see :func:`pixel_index`). Differentiable w.r.t. ``tri``.
    ``d`` is the squared distance to the nearest edge, negated inside the triangle (all three edge
    functions with the strict sign of the face's area, as PyTorch3D's barycentric test); a pixel
    on the line of an edge counts as outside (its distance is then 0 when it is on the edge).
    """
    n = tri.shape[0]
    lx, ly = chunk.lx, chunk.ly  # (P,)
    v = tri.detach()
    # Orientation sign of each face, so that "inside" is "all edge functions > 0".
    area_sign = torch.sign(
        (v[:, 1, 0] - v[:, 0, 0]) * (v[:, 2, 1] - v[:, 0, 1]) - (v[:, 1, 1] - v[:, 0, 1]) * (v[:, 2, 0] - v[:, 0, 0])
    ).view(n, 1)
    ox = chunk.origin[:, :, 0]  # (n, 1)
    oy = chunk.origin[:, :, 1]
    d2_min = None
    edge_min = None
    for ia, ib in ((0, 1), (1, 2), (2, 0)):
        # Window-local coordinates: pixel - a = (l + origin - a).
        ax = tri[:, ia, 0:1] - ox  # (n, 1)
        ay = tri[:, ia, 1:2] - oy
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


@torch.no_grad()
def _nearest_edges(tri: torch.Tensor, chunk: _Chunk, *, with_nearest: bool):
    """Fast (no-autograd) geometry of a chunk: the same quantities as :func:`pair_log_terms`.

    The three edges are stacked on a middle axis, (n, 3, P) with P = kh * kw window pixels.
    tri: (n, 3, 2) pixels. Returns d2 (n, P) squared distance to the nearest edge, inside (n, P)
    bool, and when with_nearest the per-edge (n, 3, P) nearest-edge weights (1 for the nearest of
    the edges (0,1), (1,2), (2,0); ties share), clamped parameters t and r = pixel - nearest point
    on each edge (rx, ry).
    """
    n, dtype = tri.shape[0], tri.dtype
    lx, ly = chunk.lx, chunk.ly  # (P,)
    a = (tri - chunk.origin).unsqueeze(-1)  # (n, 3, 2, 1) window-local vertices
    e = (tri[:, (1, 2, 0)] - tri).unsqueeze(-1)  # (n, 3, 2, 1) edge vectors
    area2 = e[:, 0, 0] * e[:, 1, 1] - e[:, 0, 1] * e[:, 1, 0]  # (n, 1)
    e_t = e / (e * e).sum(2, keepdim=True).clamp_min(1e-30)  # for t = w . e / |e|^2
    e_s = e * torch.sign(area2).view(n, 1, 1, 1)  # for the oriented edge function
    wx = lx - a[:, :, 0]  # (n, 3, P)
    wy = ly - a[:, :, 1]
    edge_fn = torch.mul(wy, e_s[:, :, 0]).addcmul_(wx, e_s[:, :, 1], value=-1.0)
    inside = edge_fn.amin(dim=1) > 0
    del edge_fn
    t = torch.mul(wx, e_t[:, :, 0]).addcmul_(wy, e_t[:, :, 1]).clamp_(0.0, 1.0)
    rx = wx.addcmul_(t, e[:, :, 0], value=-1.0)
    ry = wy.addcmul_(t, e[:, :, 1], value=-1.0)
    d2_all = torch.mul(rx, rx).addcmul_(ry, ry)
    d2 = d2_all.amin(dim=1)
    if not with_nearest:
        return d2, inside, None, None, None, None
    # Nearest-edge indicator, ties shared equally (at a shared vertex both edges give the same
    # gradient; on an interior medial line the average is a valid subgradient).
    nearest = (d2_all == d2.unsqueeze(1)).to(dtype)
    nearest.div_(nearest.sum(dim=1, keepdim=True))
    return d2, inside, nearest, t, rx, ry


def _chunk_log_terms(tri: torch.Tensor, chunk: _Chunk, *, inv_sigma_px: float, blur_px: float) -> torch.Tensor:
    """(n, P) per-pair logsigmoid(d / sigma) terms, zero beyond the blur radius (no autograd)."""
    d2, inside, *_ = _nearest_edges(tri, chunk, with_nearest=False)
    signed = torch.where(inside, -d2, d2)
    keep = signed < blur_px
    x = signed.mul_(inv_sigma_px)
    term = torch.clamp_max(x, 0.0).sub_(torch.exp(x.abs_().neg_()).log1p_())  # logsigmoid(x), stable
    return term.mul_(keep)


def _chunk_grad_tri(
    tri: torch.Tensor, chunk: _Chunk, grad_terms: torch.Tensor, *, inv_sigma_px: float, blur_px: float
) -> torch.Tensor:
    """(n, 3, 2) gradient w.r.t. the triangles of sum(grad_terms * terms), grad_terms (n, P).

    d logsigmoid(x)/dx = sigmoid(-x); x = +-d2 / sigma; d d2 / d(nearest point) = -2 r with
    r = pixel - nearest point; the nearest point is (1 - t) a + t b on edge (a, b) = (k, k+1 mod 3).
    """
    d2, inside, nearest, t, rx, ry = _nearest_edges(tri, chunk, with_nearest=True)
    signed = torch.where(inside, -d2, d2)
    keep = signed < blur_px
    # coef * r = d term / d(nearest point): coef = -+ 2 sigmoid(-x) / sigma (- outside, + inside).
    coef = torch.sigmoid(signed.mul_(-inv_sigma_px)).mul_(grad_terms).mul_(keep).mul_(-2.0 * inv_sigma_px)
    coef = torch.where(inside, -coef, coef).unsqueeze(1)  # (n, 1, P)
    x = nearest.mul_(coef)  # (n, 3, P)
    gx, gy = rx.mul_(x), ry.mul_(x)  # d term / d nearest point, per edge
    g_b = torch.stack((torch.linalg.vecdot(rx, t), torch.linalg.vecdot(ry, t)), dim=-1)  # sum_P t g
    g_a = torch.stack((gx.sum(dim=2), gy.sum(dim=2)), dim=-1).sub_(g_b)  # sum_P (1 - t) g
    return g_a + g_b.roll(1, dims=1)  # (n, 3, 2); vertex v: a of edge v, b of edge v - 1


class _SoftSilhouetteLogSum(torch.autograd.Function):
    """verts_px (V, 2) -> S (H*W,), S_p = sum_f logsigmoid(d_fp / sigma) over faces near p.

    The backward pass recomputes each chunk's geometry: memory is the chunk temporaries plus the
    plan (a window per face), independent of the number of (face, pixel) pairs.
    """

    @staticmethod
    def forward(ctx, verts_px, faces, height, width, sigma_px, blur_px, max_pairs, threads):
        with torch.no_grad(), _intra_op_threads(threads, verts_px.device):
            plan = plan_chunks(verts_px[faces], height=height, width=width, blur_px=blur_px, max_pairs=max_pairs)
            tri_all = verts_px[faces[plan.face_ids]]  # (Fk, 3, 2) in plan order
            log_sum = torch.zeros(height * width, dtype=verts_px.dtype, device=verts_px.device)
            for chunk in plan.chunks:
                term = _chunk_log_terms(
                    tri_all[chunk.start : chunk.stop], chunk, inv_sigma_px=1.0 / sigma_px, blur_px=blur_px
                )
                log_sum.index_add_(0, pixel_index(chunk, width).view(-1), term.view(-1))
        ctx.save_for_backward(verts_px, faces)
        ctx.plan = plan
        ctx.consts = (width, sigma_px, blur_px, threads)
        return log_sum

    @staticmethod
    def backward(ctx, grad_log_sum):
        if not ctx.needs_input_grad[0]:
            return (None,) * 8
        verts_px, faces = ctx.saved_tensors
        width, sigma_px, blur_px, threads = ctx.consts
        plan = ctx.plan
        grad_log_sum = grad_log_sum.contiguous()
        plan_faces = faces[plan.face_ids]
        tri_all = verts_px.detach()[plan_faces]
        grad_tri = torch.empty_like(tri_all)
        with _intra_op_threads(threads, verts_px.device):
            for chunk in plan.chunks:
                grad_tri[chunk.start : chunk.stop] = _chunk_grad_tri(
                    tri_all[chunk.start : chunk.stop],
                    chunk,
                    grad_log_sum[pixel_index(chunk, width)],
                    inv_sigma_px=1.0 / sigma_px,
                    blur_px=blur_px,
                )
        grad_verts = torch.zeros_like(verts_px)
        grad_verts.index_add_(0, plan_faces.view(-1), grad_tri.view(-1, 2))
        return grad_verts, None, None, None, None, None, None, None


class _NumbaLogSum(torch.autograd.Function):
    """verts_px (V, 2) -> S (H*W,), the same quantity as :class:`_SoftSilhouetteLogSum`, computed by
    the compiled loops of :mod:`~resihmr_dr.render.silhouette_numba` (CPU).

    Only the projected triangles are kept for the backward pass, which revisits each face's pixels.
    ``blocks``: the faces are split into this many contiguous runs, run in parallel on Numba's
    threads (so at most ``blocks`` of them work); no thread setting is changed.
    """

    @staticmethod
    def forward(ctx, verts_px, faces, height, width, sigma_px, blur_px, blocks):
        from resihmr_dr.render import silhouette_numba as kernels

        tri = verts_px.detach()[faces].numpy()  # (F, 3, 2)
        log_sum = kernels.log_sum_forward(
            tri, height, width, 1.0 / sigma_px, blur_px, blocks, kernels.SOFTPLUS_VALUE, kernels.SOFTPLUS_SLOPE
        )
        ctx.save_for_backward(faces)
        ctx.tri = tri
        ctx.consts = (height, width, sigma_px, blur_px, blocks, verts_px.shape[0])
        return torch.from_numpy(log_sum).to(verts_px.dtype)

    @staticmethod
    def backward(ctx, grad_log_sum):
        if not ctx.needs_input_grad[0]:
            return (None,) * 7
        from resihmr_dr.render import silhouette_numba as kernels

        (faces,) = ctx.saved_tensors
        height, width, sigma_px, blur_px, blocks, n_verts = ctx.consts
        grad_s = grad_log_sum.detach().to(torch.float64).contiguous().numpy()
        grad_tri = kernels.log_sum_backward(
            ctx.tri,
            grad_s,
            height,
            width,
            1.0 / sigma_px,
            blur_px,
            blocks,
            kernels.SOFTPLUS_VALUE,
            kernels.SOFTPLUS_SLOPE,
        )
        grad_tri = torch.from_numpy(grad_tri).to(grad_log_sum.dtype).numpy()  # summed in the loss's dtype
        grad_verts = torch.from_numpy(kernels.scatter_vertex_grads(faces.numpy(), grad_tri, n_verts))
        return grad_verts, None, None, None, None, None, None
