"""Soft silhouettes: native vs PyTorch3D parity on the Anny body, gradients, crops, losses, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from resihmr_dr.camera import PinholeCamera
from resihmr_dr.render.silhouette import (
    SilhouetteConfig,
    bce_loss,
    l2_loss,
    render_silhouette,
    silhouette_loss,
    soft_iou_loss,
)
from resihmr_dr.render.silhouette_config import ndc_scale_px

NATIVE = SilhouetteConfig(backend="native")
P3D = SilhouetteConfig(backend="pytorch3d")
# 512 x 512 camera image; the body (1.7 m at 3 m) spans ~450 px of it.
CAMERA = PinholeCamera(fx=800.0, fy=800.0, cx=255.5, cy=255.5, width=512, height=512)


@pytest.fixture(scope="module")
def body_mesh(anny_body):
    """(1, V, 3) float32 camera-frame vertices of the default Anny body 3 m away, and its faces."""
    with torch.no_grad():
        verts = anny_body(anny_body.default_params(1, depth_m=3.0)).verts.float()
    return verts, anny_body.faces


def _untruncated(verts, faces, *, image_size, crop=None, config=P3D):
    """(H, W) bool: pixels where PyTorch3D's K slots are not all used, i.e. where it blends every
    face within the blur radius, exactly the native quantity. Elsewhere K truncation drops faces."""
    from resihmr_dr.render.silhouette_pytorch3d import (
        config_in_output_ndc,
        rasterize_soft,
    )

    render_camera = CAMERA.resampled(image_size=image_size, crop=crop)
    scale = ndc_scale_px(CAMERA, image_size=image_size, crop=crop)
    with torch.no_grad():
        fragments, _ = rasterize_soft(
            verts_cam=verts,
            faces=faces,
            camera=render_camera,
            config=config_in_output_ndc(config, render_camera, scale),
        )
    return fragments.pix_to_face[0, ..., -1] < 0


@pytest.fixture(scope="module")
def parity_128(body_mesh):
    """Both backends at 128 x 128 with vertex gradients of a soft-IoU loss against a shifted mask."""
    verts, faces = body_mesh
    with torch.no_grad():
        target = render_silhouette(
            verts_cam=verts + torch.tensor([0.03, 0.02, 0.0]),
            faces=faces,
            camera=CAMERA,
            image_size=(128, 128),
            config=NATIVE,
        )
        target = (target > 0.5).float()
    out = {}
    for name, config in (("native", NATIVE), ("pytorch3d", P3D)):
        v = verts.clone().requires_grad_(True)
        alpha = render_silhouette(verts_cam=v, faces=faces, camera=CAMERA, image_size=(128, 128), config=config)
        (grad,) = torch.autograd.grad(soft_iou_loss(alpha, target).sum(), v)
        out[name] = (alpha.detach()[0], grad[0])
    out["valid"] = _untruncated(verts, faces, image_size=(128, 128))
    return out


def test_parity_full_body_128(parity_128):
    a_nat, a_p3d, valid = parity_128["native"][0], parity_128["pytorch3d"][0], parity_128["valid"]
    diff = (a_nat - a_p3d).abs()
    # Where PyTorch3D blends every face within the blur radius both compute the same quantity.
    assert valid.float().mean() > 0.85
    assert diff[valid].max() < 2e-3 and diff[valid].mean() < 1e-5
    # Everywhere: only truncation holes (PyTorch3D below native) differ; measured 0.0132.
    assert diff.mean() < 0.02
    assert (a_p3d - a_nat)[~valid].max() < 1e-3  # truncation can only lose faces
    assert (a_nat > 0.5).sum() > 2000  # a real silhouette


def test_gradient_agreement_128(parity_128):
    g_nat, g_p3d = parity_128["native"][1], parity_128["pytorch3d"][1]
    assert torch.isfinite(g_nat).all() and g_nat.abs().sum() > 0
    cos = F.cosine_similarity(g_nat.flatten(), g_p3d.flatten(), dim=0)
    assert cos > 0.75  # measured 0.813 (0.862 at 256^2): the rest is PyTorch3D's K truncation


@pytest.mark.parametrize(
    "crop, with_grad", [((160.0, 20.0, 288.0, 148.0), True), ((120.0, 300.0, 312.0, 428.0), False)]
)
def test_parity_crop_at_256_scale(body_mesh, crop, with_grad):
    """Windows at 256-px scale (head; legs, non-square): PyTorch3D's shifted principal point and
    rescaled sigma agree with the native backend, in values and in vertex gradients of a loss on
    the pixels where PyTorch3D is not K-truncated."""
    verts, faces = body_mesh
    size = (int((crop[3] - crop[1]) / 2), int((crop[2] - crop[0]) / 2))  # 512-px camera -> 256 scale
    valid = _untruncated(verts, faces, image_size=size, crop=crop)
    target = torch.zeros(size)
    target[size[0] // 4 :, : size[1] // 2] = 1.0
    a, grads = {}, {}
    for name, config in (("native", NATIVE), ("pytorch3d", P3D)):
        v = verts.clone().requires_grad_(with_grad)
        alpha = render_silhouette(verts_cam=v, faces=faces, camera=CAMERA, image_size=size, crop=crop, config=config)
        if with_grad:
            loss = ((alpha[0] - target).square() * valid).sum()
            grads[name] = torch.autograd.grad(loss, v)[0].flatten()
        a[name] = alpha.detach()[0]
    diff = (a["native"] - a["pytorch3d"]).abs()
    assert valid.float().mean() > 0.5
    assert diff[valid].max() < 2e-3  # measured <= 3e-4 (float32 rounding at the blur cut-off)
    assert a["native"].max() > 0.99 and a["native"].min() < 0.01
    if with_grad:
        assert F.cosine_similarity(grads["native"], grads["pytorch3d"], dim=0) > 0.999  # measured 1.0000


def test_native_fast_passes_match_autograd_reference(body_mesh):
    """The hand-written forward/backward equal plain autograd through pair_log_terms."""
    from resihmr_dr.render import silhouette_native as sn

    verts, faces = body_mesh
    size = 96
    verts_px = CAMERA.resampled(image_size=(size, size)).project(verts[0]).detach()
    s = ndc_scale_px(CAMERA, image_size=(size, size))
    sigma_px, blur_px = NATIVE.sigma * s * s, NATIVE.effective_blur_radius * s * s
    weights = torch.rand(size * size, generator=torch.Generator().manual_seed(1))
    v_fast = verts_px.clone().requires_grad_(True)
    fast = sn._SoftSilhouetteLogSum.apply(v_fast, faces, size, size, sigma_px, blur_px, 4096, 1)
    (fast * weights).sum().backward()
    v_ref = verts_px.clone().requires_grad_(True)
    plan = sn.plan_chunks(verts_px[faces], height=size, width=size, blur_px=blur_px, max_pairs=4096)
    tri = v_ref[faces[plan.face_ids]]
    ref = torch.zeros(size * size)
    with sn._intra_op_threads(1, torch.device("cpu")):  # many small ops: see _intra_op_threads
        for chunk in plan.chunks:
            terms = sn.pair_log_terms(tri[chunk.start : chunk.stop], chunk, inv_sigma_px=1 / sigma_px, blur_px=blur_px)
            ref = ref.index_add(0, sn.pixel_index(chunk, size).view(-1), terms.reshape(-1))
        (ref * weights).sum().backward()
    torch.testing.assert_close(fast, ref.detach(), rtol=1e-4, atol=1e-3)
    assert F.cosine_similarity(v_fast.grad.flatten(), v_ref.grad.flatten(), dim=0) > 0.99999
    torch.testing.assert_close(v_fast.grad, v_ref.grad, rtol=1e-3, atol=1e-3 * float(v_ref.grad.abs().max()))


def test_numba_vertex_scatter_is_index_add_bit_for_bit():
    """The Numba backward sums each vertex's corner gradients in face order, as ``index_add_``."""
    pytest.importorskip("numba")
    from resihmr_dr.render.silhouette_numba import scatter_vertex_grads

    gen = torch.Generator().manual_seed(0)
    faces = torch.randint(0, 500, (2000, 3), generator=gen)
    for dtype in (torch.float32, torch.float64):
        grad_tri = torch.randn(2000, 3, 2, generator=gen, dtype=dtype) * 10.0 ** torch.randint(-6, 3, (2000, 3, 1))
        expected = torch.zeros(600, 2, dtype=dtype).index_add_(0, faces.reshape(-1), grad_tri.view(-1, 2))
        got = torch.from_numpy(scatter_vertex_grads(faces.numpy(), grad_tri.numpy(), 600))
        assert got.dtype == dtype and torch.equal(got, expected)


@pytest.mark.parametrize("sigma", [1e-4, 1e-6])
@pytest.mark.parametrize("threads", [1, 2])
def test_numba_kernel_matches_torch_kernel(body_mesh, sigma, threads):
    """The compiled CPU loops and the PyTorch passes: same alpha, same vertex gradients, on the body
    at 256 px (any thread count gives the same image: one partial image per block, summed in order)."""
    verts, faces = body_mesh
    out = {}
    for kernel in ("numba", "torch"):
        config = SilhouetteConfig(backend="native", sigma=sigma, kernel=kernel, threads=threads)
        v = verts.clone().requires_grad_(True)
        alpha = render_silhouette(verts_cam=v, faces=faces, camera=CAMERA, image_size=(256, 256), config=config)
        weights = torch.rand(alpha.shape, generator=torch.Generator().manual_seed(2))
        (alpha * weights).sum().backward()
        out[kernel] = alpha.detach(), v.grad
    (a_nb, g_nb), (a_t, g_t) = out["numba"], out["torch"]
    assert a_nb.max() > 0.99 and a_nb.min() == 0.0
    torch.testing.assert_close(a_nb, a_t, rtol=0, atol=2e-5)
    assert F.cosine_similarity(g_nb.flatten(), g_t.flatten(), dim=0) > 0.99999
    torch.testing.assert_close(g_nb, g_t, rtol=1e-3, atol=1e-4 * float(g_t.abs().max()))


def test_kernel_choice_and_errors(monkeypatch):
    from resihmr_dr.render.silhouette_native import _use_numba

    assert _use_numba("auto", torch.device("cpu")) and _use_numba("numba", torch.device("cpu"))
    assert not _use_numba("torch", torch.device("cpu")) and not _use_numba("auto", torch.device("cuda"))
    with pytest.raises(ValueError, match="CPU only"):
        _use_numba("numba", torch.device("cuda"))
    # Without Numba, "auto" falls back to the PyTorch passes and "numba" says what is missing.
    monkeypatch.setattr("resihmr_dr.render.silhouette_native.numba_available", lambda: False)
    assert not _use_numba("auto", torch.device("cpu"))
    with pytest.raises(ImportError, match="pip install numba"):
        _use_numba("numba", torch.device("cpu"))
    with pytest.raises(ValueError, match="kernel"):
        SilhouetteConfig(kernel="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads"):
        SilhouetteConfig(threads=0)


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_default_threads_change_no_thread_setting(monkeypatch, kernel):
    """With ``threads=None`` neither kernel sets torch's or Numba's thread counts (forward and
    backward); an explicit count runs the PyTorch passes on that many intra-op threads and restores
    torch's setting after each pass."""
    import numba

    def refuse(n):
        raise AssertionError(f"a thread setting was changed to {n}")

    verts, faces = _small_mesh()
    camera = PinholeCamera(fx=40.0, fy=40.0, cx=11.5, cy=11.5, width=24, height=24)

    def render(config):
        v = verts.clone().requires_grad_(True)
        alpha = render_silhouette(verts_cam=v, faces=faces, camera=camera, image_size=(24, 24), config=config)
        alpha.square().sum().backward()
        return alpha.detach(), v.grad

    with monkeypatch.context() as patch:
        patch.setattr(torch, "set_num_threads", refuse)
        patch.setattr(numba, "set_num_threads", refuse)
        default = render(SilhouetteConfig(backend="native", kernel=kernel))
    before = torch.get_num_threads()
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    explicit = render(SilhouetteConfig(backend="native", kernel=kernel, threads=before + 1))
    assert calls == ([before + 1, before] * 2 if kernel == "torch" else [])
    torch.testing.assert_close(explicit, default, rtol=0, atol=1e-12)


def test_numba_gradient_does_not_depend_on_the_blocks(body_mesh):
    """The backward's faces run in blocks, each face's gradient its own sum: bit-identical for any
    number of blocks (the forward sums one partial image per block: equal to rounding)."""
    from resihmr_dr.render import silhouette_native as sn

    verts, faces = body_mesh
    size = 64
    verts_px = CAMERA.resampled(image_size=(size, size)).project(verts[0]).detach()
    s = ndc_scale_px(CAMERA, image_size=(size, size))
    sigma_px, blur_px = 1e-5 * s * s, SilhouetteConfig(sigma=1e-5).effective_blur_radius * s * s
    weights = torch.rand(size * size, generator=torch.Generator().manual_seed(3))
    sums, grads = [], []
    for blocks in (1, 2, 3):
        v = verts_px.clone().requires_grad_(True)
        log_sum = sn._NumbaLogSum.apply(v, faces, size, size, sigma_px, blur_px, blocks)
        (log_sum * weights).sum().backward()
        sums.append(log_sum.detach())
        grads.append(v.grad)
    assert grads[0].abs().sum() > 0
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])
    torch.testing.assert_close(sums[1], sums[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sums[2], sums[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["native", "pytorch3d"])
def test_vertex_lands_on_projected_pixel(backend):
    """A tiny triangle around a point: the brightest pixel is the one PinholeCamera.project names."""
    camera = PinholeCamera(fx=300.0, fy=310.0, cx=40.2, cy=29.7, width=80, height=60)
    centre = torch.tensor([0.11, -0.07, 2.0])
    offsets = torch.tensor([[0.0, -1.0, 0.0], [-0.9, 0.5, 0.0], [0.9, 0.5, 0.0]]) * 1e-3  # ~0.15 px
    verts = (centre + offsets)[None]
    faces = torch.tensor([[0, 1, 2]])
    for image_size, crop in (((60, 80), None), ((120, 160), None), ((50, 50), (40.0, 10.0, 65.0, 35.0))):
        uv = camera.resampled(image_size=image_size, crop=crop).project(centre)
        alpha = render_silhouette(
            verts_cam=verts,
            faces=faces,
            camera=camera,
            image_size=image_size,
            crop=crop,
            config=SilhouetteConfig(backend=backend),
        )[0]
        row, col = divmod(int(alpha.argmax()), image_size[1])
        assert (col, row) == (round(float(uv[0])), round(float(uv[1]))), (image_size, crop)
    # Full-image intrinsics are the camera's own.
    uv_cam = camera.project(centre)
    uv_full = camera.resampled(image_size=(60, 80)).project(centre)
    torch.testing.assert_close(uv_cam, uv_full)


def _small_mesh(dtype=torch.float64):
    """Three triangles (one back-facing, one overlapping) ~1.5 m in front of the camera."""
    verts = torch.tensor(
        [
            [-0.20, -0.15, 1.5],
            [0.15, -0.10, 1.6],
            [-0.05, 0.20, 1.4],
            [0.22, 0.18, 1.7],
            [-0.25, 0.05, 1.5],
            [0.05, 0.02, 1.2],
        ],
        dtype=dtype,
    )[None]
    faces = torch.tensor([[0, 1, 2], [1, 3, 2], [4, 5, 0]])
    return verts, faces


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_native_gradient_matches_finite_differences(kernel):
    verts, faces = _small_mesh()
    camera = PinholeCamera(fx=40.0, fy=40.0, cx=11.5, cy=11.5, width=24, height=24)
    # A soft sigma keeps many pixels in the smooth part of the sigmoid.
    config = SilhouetteConfig(backend="native", sigma=3e-3, kernel=kernel)

    def render(v):
        return render_silhouette(verts_cam=v, faces=faces, camera=camera, image_size=(24, 24), config=config)

    alpha = render(verts)
    assert 0.05 < alpha.mean() < 0.9
    weights = torch.rand(alpha.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = verts.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((render(v) * weights).sum(), v)
    fd = torch.zeros_like(verts)
    eps = 1e-6
    for i in range(verts.shape[1]):
        for k in range(3):
            step = torch.zeros_like(verts)
            step[0, i, k] = eps
            fd[0, i, k] = ((render(verts + step) * weights).sum() - (render(verts - step) * weights).sum()) / (2 * eps)
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-6)
    assert grad.abs().max() > 1.0


@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_native_gradcheck_tiny(kernel):
    verts, faces = _small_mesh()
    camera = PinholeCamera(fx=20.0, fy=20.0, cx=5.5, cy=5.5, width=12, height=12)
    config = SilhouetteConfig(backend="native", sigma=1e-2, kernel=kernel)

    def fn(v):
        return render_silhouette(verts_cam=v, faces=faces, camera=camera, image_size=(12, 12), config=config)

    assert torch.autograd.gradcheck(fn, (verts.clone().requires_grad_(True),), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_native_crop_equals_window_of_full_render(body_mesh):
    verts, faces = body_mesh
    camera = PinholeCamera(fx=200.0, fy=200.0, cx=63.5, cy=63.5, width=128, height=128)
    full = render_silhouette(verts_cam=verts, faces=faces, camera=camera, image_size=(128, 128), config=NATIVE)[0]
    # Same NDC scale needs the same min(H, W); a square 128-px crop of a 256-px render does.
    big = PinholeCamera(fx=400.0, fy=400.0, cx=127.5, cy=127.5, width=256, height=256)
    full_big = render_silhouette(verts_cam=verts, faces=faces, camera=big, image_size=(256, 256), config=NATIVE)[0]
    x0, y0 = 70, 10
    crop = render_silhouette(
        verts_cam=verts,
        faces=faces,
        camera=big,
        image_size=(128, 128),
        crop=(x0, y0, x0 + 128, y0 + 128),
        config=NATIVE,
    )[0]
    torch.testing.assert_close(crop, full_big[y0 : y0 + 128, x0 : x0 + 128], atol=1e-5, rtol=0)
    # Rescaling the camera: the 128-px camera at 128 px equals the 256-px camera at 128 px.
    half = render_silhouette(verts_cam=verts, faces=faces, camera=big, image_size=(128, 128), config=NATIVE)[0]
    torch.testing.assert_close(half, full, atol=1e-5, rtol=0)


def test_native_batch_and_behind_camera():
    verts, faces = _small_mesh(torch.float32)
    camera = PinholeCamera(fx=40.0, fy=40.0, cx=11.5, cy=11.5, width=24, height=24)

    def render(v):
        return render_silhouette(verts_cam=v, faces=faces, camera=camera, image_size=(24, 24), config=NATIVE)

    behind = verts.clone()
    behind[..., 2] *= -1.0
    out = render(torch.cat((verts, behind)))
    assert out.shape == (2, 24, 24)
    torch.testing.assert_close(out[0], render(verts)[0])
    assert out[1].abs().max() == 0.0
    # One vertex behind the camera drops the faces using it, not the others.
    partly = verts.clone()
    partly[0, 5, 2] = -0.5
    only_two = render_silhouette(verts_cam=verts, faces=faces[:2], camera=camera, image_size=(24, 24), config=NATIVE)
    torch.testing.assert_close(render(partly), only_two)


def test_losses_on_hand_made_masks():
    mask = torch.zeros(2, 8, 8)
    mask[:, 2:5, 2:6] = 1.0
    disjoint = torch.zeros(2, 8, 8)
    disjoint[:, 6:, 6:] = 1.0
    torch.testing.assert_close(soft_iou_loss(mask, mask), torch.zeros(2))
    torch.testing.assert_close(soft_iou_loss(disjoint, mask), torch.ones(2), atol=1e-6, rtol=0)
    half = mask.clone()
    half[:, 2:5, 4:6] = 0.0  # 6 of 12 pixels
    torch.testing.assert_close(soft_iou_loss(half, mask), torch.full((2,), 0.5), atol=1e-6, rtol=0)
    assert float(soft_iou_loss(torch.full((4, 4), 0.5), torch.ones(4, 4))) == pytest.approx(0.5)
    torch.testing.assert_close(l2_loss(mask, mask), torch.zeros(2))
    assert float(l2_loss(disjoint[0], mask[0])) == pytest.approx(16 / 64)
    assert float(bce_loss(mask[0], mask[0])) < 1e-5
    assert float(bce_loss(torch.full((4, 4), 0.5), torch.ones(4, 4))) == pytest.approx(math.log(2.0), rel=1e-5)
    assert silhouette_loss("iou") is soft_iou_loss and silhouette_loss("bce") is bce_loss
    assert silhouette_loss("l2") is l2_loss


def test_iou_loss_gradient_points_towards_mask():
    mask = torch.zeros(8, 8)
    mask[2:6, 2:6] = 1.0
    alpha = torch.full((8, 8), 0.5, requires_grad=True)
    soft_iou_loss(alpha, mask).backward()
    assert (alpha.grad[mask > 0] < 0).all() and (alpha.grad[mask == 0] > 0).all()


def test_bad_inputs():
    verts, faces = _small_mesh(torch.float32)
    kw = {"camera": CAMERA, "image_size": (16, 16), "config": NATIVE}
    with pytest.raises(ValueError, match="faces is empty"):
        render_silhouette(verts_cam=verts, faces=faces[:0], **kw)
    with pytest.raises(ValueError, match=r"\(B, V, 3\)"):
        render_silhouette(verts_cam=verts[0], faces=faces, **kw)
    with pytest.raises(ValueError, match=r"\(F, 3\)"):
        render_silhouette(verts_cam=verts, faces=faces[:, :2], **kw)
    with pytest.raises(ValueError, match="integer"):
        render_silhouette(verts_cam=verts, faces=faces.float(), **kw)
    with pytest.raises(ValueError, match="index vertices"):
        render_silhouette(verts_cam=verts, faces=faces + 10, **kw)
    with pytest.raises(ValueError, match="unknown silhouette backend"):
        SilhouetteConfig(backend="opengl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma"):
        SilhouetteConfig(sigma=0.0)
    with pytest.raises(ValueError, match="image_size"):
        render_silhouette(verts_cam=verts, faces=faces, camera=CAMERA, image_size=(0, 16), config=NATIVE)
    with pytest.raises(ValueError, match="crop"):
        render_silhouette(verts_cam=verts, faces=faces, camera=CAMERA, image_size=(16, 16), crop=(5, 5, 5, 9))
    with pytest.raises(ValueError, match="unknown silhouette loss"):
        silhouette_loss("dice")
    with pytest.raises(ValueError, match="differs"):
        soft_iou_loss(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5))
    with pytest.raises(TypeError, match="SilhouetteConfig"):
        render_silhouette(verts_cam=verts, faces=faces, camera=CAMERA, image_size=(16, 16), config="native")  # type: ignore[arg-type]


def test_auto_backend_is_native():
    assert SilhouetteConfig().resolved_backend("cpu") == "native"
    assert SilhouetteConfig(backend="pytorch3d").resolved_backend("cpu") == "pytorch3d"
    assert SilhouetteConfig().effective_blur_radius == pytest.approx(math.log(1 / 1e-4 - 1) * 1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_native_matches_cpu(body_mesh):
    """The GPU path (the PyTorch kernel on CUDA tensors) against the CPU default (Numba)."""
    verts, faces = body_mesh
    out = {}
    for device in ("cpu", "cuda"):
        v = verts.to(device).clone().requires_grad_(True)
        alpha = render_silhouette(
            verts_cam=v,
            faces=faces.to(device),
            camera=CAMERA,
            image_size=(256, 256),
            config=SilhouetteConfig(sigma=1e-5),
        )
        alpha.square().sum().backward()
        out[device] = alpha.detach().cpu(), v.grad.cpu()
    torch.testing.assert_close(out["cuda"][0], out["cpu"][0], rtol=0, atol=2e-5)
    assert F.cosine_similarity(out["cuda"][1].flatten(), out["cpu"][1].flatten(), dim=0) > 0.99999


def test_pytorch3d_backend_without_pytorch3d_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytorch3d" else real(name, *a))
    verts, faces = _small_mesh(torch.float32)
    camera = PinholeCamera(fx=40.0, fy=40.0, cx=11.5, cy=11.5, width=24, height=24)
    with pytest.raises(ImportError, match=r"pip install 'resihmr-dr\[pytorch3d\]'"):
        render_silhouette(verts_cam=verts, faces=faces, camera=camera, image_size=(24, 24), config=P3D)
