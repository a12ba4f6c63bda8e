"""Differentiable soft silhouettes of a mesh seen by a pinhole camera, and silhouette losses.

The soft silhouette is PyTorch3D's ``SoftSilhouetteShader`` quantity (SoftRasterizer, Liu et al.
2019): for each pixel,

    alpha = 1 - prod_f (1 - sigmoid(-d_f / sigma))

over the faces ``f`` whose signed squared 2D distance ``d_f`` to the pixel centre is below the blur
radius (``d_f < 0`` inside the projected triangle). Distances are measured in PyTorch3D's NDC units:
one NDC unit is ``min(H, W) / 2`` output pixels, so ``sigma`` and ``blur_radius`` keep PyTorch3D's
meaning (and default values) for any image size.

Two backends compute it:

- ``"native"`` (:mod:`resihmr_dr.render.silhouette_native`): sums over *every* face within the
  blur radius (no truncation to K faces); compiled Numba loops on CPU, broadcast PyTorch passes
  (memory bounded by chunking) on GPU or without Numba (``SilhouetteConfig.kernel``).
- ``"pytorch3d"`` (:mod:`resihmr_dr.render.silhouette_pytorch3d`): ``MeshRasterizer`` +
  ``SoftSilhouetteShader``; only the ``faces_per_pixel`` faces nearest in depth are blended, which
  leaves holes on dense parts (face, hands, feet) where faces in front of a pixel fill the K slots.

``"auto"`` picks ``"native"`` everywhere: it is the exact (untruncated) quantity, and on CPU it is
two to three orders of magnitude faster than PyTorch3D's CPU rasteriser
(``bench_silhouette.py``). PyTorch3D is only chosen when asked for by name (e.g. to compare with
published PyTorch3D pipelines).

Pixel convention (as :class:`~resihmr_dr.camera.PinholeCamera`): pixel ``(i, j)`` of an image has
its centre at pixel coordinate ``(x=j, y=i)``; its area spans ``[j - 0.5, j + 0.5]``. A crop window
``(x0, y0, x1, y1)`` is given in *edge* coordinates of the camera image, numpy-slice style: the
window ``(0, 0, camera.width, camera.height)`` is the whole image, and rendering the crop
``(x0, y0, x1, y1)`` at ``image_size=(y1 - y0, x1 - x0)`` gives ``full[y0:y1, x0:x1]`` for integer
windows.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch

from resihmr_dr.camera import PinholeCamera
from resihmr_dr.render.silhouette_config import SilhouetteConfig, ndc_scale_px

__all__ = [
    "SilhouetteConfig",
    "bce_loss",
    "l2_loss",
    "render_silhouette",
    "silhouette_loss",
    "soft_iou_loss",
]


def render_silhouette(
    *,
    verts_cam: torch.Tensor,
    faces: torch.Tensor,
    camera: PinholeCamera,
    image_size: tuple[int, int],
    crop: tuple[float, float, float, float] | None = None,
    config: SilhouetteConfig = SilhouetteConfig(),
) -> torch.Tensor:
    """Soft silhouette of a batch of meshes sharing one topology.

    verts_cam: (B, V, 3) vertices in the OpenCV camera frame (x right, y down, z forward), metres.
    faces: (F, 3) long vertex indices (orientation is ignored).
    camera: intrinsics of the full image; they are rescaled to ``image_size`` (and ``crop``;
    ``PinholeCamera.resampled``).
    image_size: (H, W) of the output.
    crop: optional (x0, y0, x1, y1) window of the camera image, edge coordinates (see module doc).
    Returns (B, H, W) alpha in [0, 1], differentiable with respect to ``verts_cam``.
    Faces with a vertex at depth <= ``resihmr_dr.camera.MIN_DEPTH_M`` (behind or on the camera
    plane) are skipped.
    """
    _check_mesh(verts_cam, faces)
    if not isinstance(config, SilhouetteConfig):
        raise TypeError(f"config must be a SilhouetteConfig, got {type(config).__name__}")
    render_camera = camera.resampled(image_size=image_size, crop=crop)
    scale = ndc_scale_px(camera, image_size=image_size, crop=crop)
    backend = config.resolved_backend(verts_cam.device)
    if backend == "native":
        from resihmr_dr.render.silhouette_native import render_silhouette_native

        return render_silhouette_native(
            verts_cam=verts_cam, faces=faces, camera=render_camera, ndc_scale_px=scale, config=config
        )
    if importlib.util.find_spec("pytorch3d") is None:
        raise ImportError(
            "the 'pytorch3d' silhouette backend needs PyTorch3D: pip install 'resihmr-dr[pytorch3d]' "
            "(or use backend 'native', the default)"
        )
    from resihmr_dr.render.silhouette_pytorch3d import render_silhouette_pytorch3d

    return render_silhouette_pytorch3d(
        verts_cam=verts_cam, faces=faces, camera=render_camera, ndc_scale_px=scale, config=config
    )


# ----------------------------------------------------------------------------------------- losses


def soft_iou_loss(alpha: torch.Tensor, mask: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """1 - soft IoU, per image: ``1 - sum(a m) / sum(a + m - a m)``.

    alpha, mask: (B, H, W) or (H, W) in [0, 1]. Returns (B,) (or a scalar for 2D input).
    Two empty images give 0 (identical).
    """
    alpha, mask = _check_pair(alpha, mask)
    inter = (alpha * mask).flatten(-2).sum(-1)
    union = (alpha + mask - alpha * mask).flatten(-2).sum(-1)
    return 1.0 - (inter + eps) / (union + eps)


def bce_loss(alpha: torch.Tensor, mask: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """Mean binary cross-entropy per image; alpha is clamped to [eps, 1 - eps]. Returns (B,) or scalar."""
    alpha, mask = _check_pair(alpha, mask)
    a = alpha.clamp(eps, 1.0 - eps)
    bce = -(mask * torch.log(a) + (1.0 - mask) * torch.log1p(-a))
    return bce.flatten(-2).mean(-1)


def l2_loss(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared difference per image. Returns (B,) or scalar."""
    alpha, mask = _check_pair(alpha, mask)
    return (alpha - mask).square().flatten(-2).mean(-1)


SILHOUETTE_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "iou": soft_iou_loss,
    "bce": bce_loss,
    "l2": l2_loss,
}


def silhouette_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function called ``name`` ("iou", "bce" or "l2")."""
    try:
        return SILHOUETTE_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown silhouette loss {name!r}; expected one of {tuple(SILHOUETTE_LOSSES)}") from None


# ------------------------------------------------------------------------------------- validation


def _check_mesh(verts_cam: torch.Tensor, faces: torch.Tensor) -> None:
    if not torch.is_tensor(verts_cam) or verts_cam.ndim != 3 or verts_cam.shape[-1] != 3:
        shape = tuple(verts_cam.shape) if torch.is_tensor(verts_cam) else type(verts_cam).__name__
        raise ValueError(f"verts_cam must be a (B, V, 3) tensor, got {shape}")
    if not verts_cam.is_floating_point():
        raise ValueError(f"verts_cam must be floating point, got {verts_cam.dtype}")
    if not torch.is_tensor(faces) or faces.ndim != 2 or faces.shape[-1] != 3:
        shape = tuple(faces.shape) if torch.is_tensor(faces) else type(faces).__name__
        raise ValueError(f"faces must be an (F, 3) tensor, got {shape}")
    if faces.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"faces must be an integer (long) tensor, got {faces.dtype}")
    if faces.shape[0] == 0:
        raise ValueError("faces is empty: a silhouette needs at least one face")
    if verts_cam.shape[1] == 0:
        raise ValueError("verts_cam has no vertices")
    if int(faces.min()) < 0 or int(faces.max()) >= verts_cam.shape[1]:
        raise ValueError(
            f"faces index vertices in [{int(faces.min())}, {int(faces.max())}] but there are {verts_cam.shape[1]}"
        )


def _check_pair(alpha: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if alpha.ndim not in (2, 3):
        raise ValueError(f"alpha must be (B, H, W) or (H, W), got {tuple(alpha.shape)}")
    if mask.shape != alpha.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from alpha shape {tuple(alpha.shape)}")
    return alpha, mask.to(alpha.dtype)
