"""Settings of the soft silhouette and the NDC unit of a render (an image, or a crop of it
resampled): what the dispatcher (:mod:`~resihmr_dr.render.silhouette`) and both backends share, in
a module of their own so that the backends do not import the dispatcher. A render's intrinsics are
the camera's, resampled to the output (:meth:`~resihmr_dr.camera.PinholeCamera.resampled`).

Pixel convention as :class:`~resihmr_dr.camera.PinholeCamera` (pixel centres at integers); crop
windows in edge coordinates (see :mod:`~resihmr_dr.render.silhouette`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from resihmr_dr.camera import PinholeCamera

__all__ = ["BACKENDS", "KERNELS", "SilhouetteConfig", "ndc_scale_px"]

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
    threads: CPU threads of the native kernels, an explicit opt-in. None (default): the process's
        settings are used and none is changed; the Numba kernel splits the faces into
        ``torch.get_num_threads()`` blocks and runs them on Numba's threads. n: the Numba kernel
        splits them into n blocks (at most n of Numba's threads work; its settings are not
        changed), and the PyTorch kernel runs with n intra-op threads, torch's process-wide
        setting being set for each pass and restored after it. The forward sum of the Numba kernel
        depends on the number of blocks (one partial image per block, summed in order), not on
        the schedule.
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


def ndc_scale_px(
    camera: PinholeCamera, *, image_size: tuple[int, int], crop: tuple[float, float, float, float] | None = None
) -> float:
    """Output pixels per NDC unit, the unit of ``sigma`` and the blur radius, when the window ``crop``
    of ``camera``'s image is rendered at ``image_size = (H, W)``: ``min(H, W) / 2`` of the whole
    camera image at the output's pixel size (``min(H, W) / 2`` of the output without a crop)."""
    sx, sy = camera.resample_scale(image_size=image_size, crop=crop)
    return min(camera.height * sy, camera.width * sx) / 2.0
