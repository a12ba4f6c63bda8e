"""Settings of the soft silhouette and the intrinsics of a render (an image, or a crop of it
resampled): the records the dispatcher (:mod:`~resihmr_dr.render.silhouette`) and both backends
share, in a module of their own so that the backends do not import the dispatcher.

Pixel convention as :class:`~resihmr_dr.camera.PinholeCamera` (pixel centres at integers); crop
windows in edge coordinates (see :mod:`~resihmr_dr.render.silhouette`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from resihmr_dr.camera import PinholeCamera, project_points

__all__ = ["BACKENDS", "KERNELS", "RenderIntrinsics", "SilhouetteConfig", "render_intrinsics"]

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
        return project_points(points_cam, fx=self.fx, fy=self.fy, cx=self.cx, cy=self.cy, min_depth=min_depth)


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


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or any(int(s) != s or s < 1 for s in image_size):
        raise ValueError(f"image_size must be (H, W) positive integers, got {image_size!r}")
    return int(image_size[0]), int(image_size[1])
