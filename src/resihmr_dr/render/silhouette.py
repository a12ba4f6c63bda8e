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
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from resihmr_dr.camera import PinholeCamera

Backend = Literal["auto", "native", "pytorch3d"]
BACKENDS: tuple[str, ...] = ("auto", "native", "pytorch3d")
Kernel = Literal["auto", "numba", "torch"]
KERNELS: tuple[str, ...] = ("auto", "numba", "torch")


@dataclass(frozen=True)
class SilhouetteConfig:
    """Soft-silhouette settings.

    backend: "auto" (= "native"), "native" or "pytorch3d".
    sigma: sharpness of the sigmoid, in squared NDC units (PyTorch3D ``BlendParams.sigma``).
    gamma: PyTorch3D ``BlendParams.gamma`` (unused by the alpha channel; kept for parity).
    faces_per_pixel: K of PyTorch3D's rasteriser (pytorch3d backend only).
    blur_radius: squared NDC distance beyond which faces are ignored; None gives
        ``log(1 / 1e-4 - 1) * sigma`` (PyTorch3D's tutorial: the sigmoid is 1e-4 there).
    kernel: how the native backend computes on CPU: "numba" (compiled loops,
        :mod:`~resihmr_dr.render.silhouette_numba`), "torch" (broadcast PyTorch passes, also the
        GPU path) or "auto" (Numba on CPU when it imports, PyTorch otherwise and on GPU).
    threads: worker threads of the Numba kernel (None: as many as torch's intra-op threads,
        ``torch.get_num_threads()``; the kernel never changes torch's thread settings).
    """

    backend: Backend = "auto"
    sigma: float = 1e-4
    gamma: float = 1e-4
    faces_per_pixel: int = 50
    blur_radius: float | None = None
    kernel: Kernel = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown silhouette backend {self.backend!r}; expected one of {BACKENDS}")
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be a positive finite number, got {self.sigma}")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be positive, got {self.gamma}")
        if int(self.faces_per_pixel) != self.faces_per_pixel or self.faces_per_pixel < 1:
            raise ValueError(f"faces_per_pixel must be a positive integer, got {self.faces_per_pixel}")
        if self.blur_radius is not None and not (self.blur_radius >= 0 and math.isfinite(self.blur_radius)):
            raise ValueError(f"blur_radius must be a non-negative finite number or None, got {self.blur_radius}")
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown silhouette kernel {self.kernel!r}; expected one of {KERNELS}")
        if self.threads is not None and (int(self.threads) != self.threads or self.threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads}")

    @property
    def effective_blur_radius(self) -> float:
        """Blur radius in squared NDC units."""
        if self.blur_radius is not None:
            return float(self.blur_radius)
        return math.log(1.0 / 1e-4 - 1.0) * self.sigma

    def resolved_backend(self, device: torch.device | str) -> str:
        """The backend that runs: "auto" always resolves to "native" (see the module docstring)."""
        del device  # the rule does not depend on the device today; kept so callers pass it
        return "native" if self.backend == "auto" else self.backend


@dataclass(frozen=True)
class RenderIntrinsics:
    """Pinhole intrinsics of the *output* image (after crop and rescale), centre-of-pixel convention.

    ``project`` maps (..., 3) camera-frame points to (..., 2) output pixel coordinates.
    ndc_scale_px: output pixels per NDC unit in which sigma and the blur radius are measured
    (``min(H, W) / 2`` of the whole camera image at the output's pixel size).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    height: int
    width: int
    ndc_scale_px: float

    def project(self, points_cam: torch.Tensor, *, min_depth: float = 1e-6) -> torch.Tensor:
        """(..., 2) pixel positions of camera-frame points (..., 3); depths are clamped to
        ``min_depth``."""
        z = points_cam[..., 2:3].clamp_min(min_depth)
        xy = points_cam[..., :2] / z
        return torch.cat((xy[..., :1] * self.fx + self.cx, xy[..., 1:] * self.fy + self.cy), dim=-1)


def render_intrinsics(
    *, camera: PinholeCamera, image_size: tuple[int, int], crop: tuple[float, float, float, float] | None = None
) -> RenderIntrinsics:
    """Intrinsics of the window ``crop`` (edge coordinates, default the whole image) of ``camera``'s
    image resampled to ``image_size = (H, W)`` output pixels.

    With edge coordinates ``u_e = u + 0.5``: ``u_out + 0.5 = (u + 0.5 - x0) * W / (x1 - x0)``.
    """
    height, width = _check_image_size(image_size)
    if crop is None:
        crop = (0.0, 0.0, float(camera.width), float(camera.height))
    if len(crop) != 4:
        raise ValueError(f"crop must be (x0, y0, x1, y1), got {crop!r}")
    x0, y0, x1, y1 = (float(c) for c in crop)
    if not all(math.isfinite(c) for c in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"crop must be a finite window with x1 > x0 and y1 > y0, got {crop!r}")
    sx = width / (x1 - x0)
    sy = height / (y1 - y0)
    return RenderIntrinsics(
        fx=camera.fx * sx,
        fy=camera.fy * sy,
        cx=(camera.cx + 0.5 - x0) * sx - 0.5,
        cy=(camera.cy + 0.5 - y0) * sy - 0.5,
        height=height,
        width=width,
        ndc_scale_px=min(camera.height * sy, camera.width * sx) / 2.0,
    )


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
    camera: intrinsics of the full image; they are rescaled to ``image_size`` (and ``crop``).
    image_size: (H, W) of the output.
    crop: optional (x0, y0, x1, y1) window of the camera image, edge coordinates (see module doc).
    Returns (B, H, W) alpha in [0, 1], differentiable with respect to ``verts_cam``.
    Faces with a vertex at depth <= 1e-6 m (behind or on the camera plane) are skipped.
    """
    _check_mesh(verts_cam, faces)
    if not isinstance(config, SilhouetteConfig):
        raise TypeError(f"config must be a SilhouetteConfig, got {type(config).__name__}")
    intr = render_intrinsics(camera=camera, image_size=image_size, crop=crop)
    backend = config.resolved_backend(verts_cam.device)
    if backend == "native":
        from resihmr_dr.render.silhouette_native import render_silhouette_native

        return render_silhouette_native(verts_cam=verts_cam, faces=faces, intrinsics=intr, config=config)
    if importlib.util.find_spec("pytorch3d") is None:
        raise ImportError(
            "the 'pytorch3d' silhouette backend needs PyTorch3D: pip install 'resihmr-dr[pytorch3d]' "
            "(or use backend 'native', the default)"
        )
    from resihmr_dr.render.silhouette_pytorch3d import render_silhouette_pytorch3d

    return render_silhouette_pytorch3d(verts_cam=verts_cam, faces=faces, intrinsics=intr, config=config)


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


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or any(int(s) != s or s < 1 for s in image_size):
        raise ValueError(f"image_size must be (H, W) positive integers, got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


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
