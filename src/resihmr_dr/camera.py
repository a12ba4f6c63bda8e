"""Pinhole camera in the OpenCV frame (x right, y down, z forward; metres; pixels for images)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from resihmr_dr.data.ldpose import DEFAULT_FOCAL_PX

if TYPE_CHECKING:  # the record only: the renderers need not import the annotation reader (PIL)
    from resihmr_dr.data.records import ImageRecord

# Projection divides by the depth clamped to at least this (metres); the soft silhouettes skip
# faces with a vertex at or behind it.
MIN_DEPTH_M = 1e-6
# A point counts as in front of the camera beyond this depth (metres): RAFO's segment joints, the
# faces the hard z-buffer draws.
IN_FRONT_DEPTH_M = 1e-3


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of one image. Pixel (0, 0) is the centre of the top-left pixel."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @staticmethod
    def for_image(image: ImageRecord, *, focal_px: float = DEFAULT_FOCAL_PX) -> "PinholeCamera":
        """The image's own intrinsics, else SMPLify-X's default (``focal_px``, centred)."""
        intr = image.intrinsics_or_default(focal_px)
        return PinholeCamera(intr.fx, intr.fy, intr.cx, intr.cy, image.width, image.height)

    def K(self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(3, 3) intrinsic matrix."""
        return torch.tensor(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], device=device, dtype=dtype
        )

    def project(self, points_cam: torch.Tensor) -> torch.Tensor:
        """(..., 3) camera-frame points -> (..., 2) pixel coordinates (depths clamped to
        ``MIN_DEPTH_M``)."""
        return project_points(points_cam, fx=self.fx, fy=self.fy, cx=self.cx, cy=self.cy)

    def resample_scale(
        self, *, image_size: tuple[int, int], crop: tuple[float, float, float, float] | None = None
    ) -> tuple[float, float]:
        """(sx, sy): output pixels per image pixel when the window ``crop`` of this camera's image
        is resampled to ``image_size`` (see ``resampled``)."""
        _, _, sx, sy = self._window(image_size, crop)
        return sx, sy

    def resampled(
        self, *, image_size: tuple[int, int], crop: tuple[float, float, float, float] | None = None
    ) -> "PinholeCamera":
        """The camera of the window ``crop`` of this camera's image resampled to ``image_size =
        (H, W)`` output pixels (the whole image by default: a rescaled camera).

        ``crop`` is ``(x0, y0, x1, y1)`` in edge coordinates, numpy-slice style: the window
        ``(0, 0, width, height)`` is the whole image. With edge coordinates ``u_e = u + 0.5``:
        ``u_out + 0.5 = (u + 0.5 - x0) * W / (x1 - x0)``. Raises ValueError for a size that is not
        two positive integers or a crop that is not a finite window with x1 > x0 and y1 > y0.
        """
        x0, y0, sx, sy = self._window(image_size, crop)
        return PinholeCamera(
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5 - x0) * sx - 0.5,
            cy=(self.cy + 0.5 - y0) * sy - 0.5,
            width=int(image_size[1]),
            height=int(image_size[0]),
        )

    def _window(
        self, image_size: tuple[int, int], crop: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float]:
        """(x0, y0, sx, sy) of the window ``crop`` (default: the whole image) at ``image_size``, checked."""
        if len(image_size) != 2 or any(int(s) != s or s < 1 for s in image_size):
            raise ValueError(f"image_size must be (H, W) positive integers, got {image_size!r}")
        height, width = int(image_size[0]), int(image_size[1])
        if crop is None:
            crop = (0.0, 0.0, float(self.width), float(self.height))
        if len(crop) != 4:
            raise ValueError(f"crop must be (x0, y0, x1, y1), got {crop!r}")
        x0, y0, x1, y1 = (float(c) for c in crop)
        if not all(math.isfinite(c) for c in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
            raise ValueError(f"crop must be a finite window with x1 > x0 and y1 > y0, got {crop!r}")
        return x0, y0, width / (x1 - x0), height / (y1 - y0)

    def to_dict(self) -> dict[str, float]:
        """The intrinsics and image size as a dict of numbers (``fx``, ``fy``, ``cx``, ``cy``,
        ``width``, ``height``)."""
        return asdict(self)


def project_points(
    points_cam: torch.Tensor, *, fx: float, fy: float, cx: float, cy: float, min_depth: float = MIN_DEPTH_M
) -> torch.Tensor:
    """Perspective projection of (..., 3) camera-frame points to (..., 2) pixels; depths are
    clamped to ``min_depth`` metres."""
    z = points_cam[..., 2:3].clamp_min(min_depth)
    xy = points_cam[..., :2] / z
    return torch.cat((xy[..., :1] * fx + cx, xy[..., 1:] * fy + cy), dim=-1)
