"""Pinhole camera in the OpenCV frame (x right, y down, z forward; metres; pixels for images)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from resihmr_dr.data.ldpose import DEFAULT_FOCAL_PX

if TYPE_CHECKING:  # the record only: the renderers need not import the annotation reader (PIL)
    from resihmr_dr.data.records import ImageRecord


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
        """(..., 3) camera-frame points -> (..., 2) pixel coordinates."""
        return project_points(points_cam, fx=self.fx, fy=self.fy, cx=self.cx, cy=self.cy)

    def to_dict(self) -> dict[str, float]:
        """The intrinsics and image size as a dict of numbers (``fx``, ``fy``, ``cx``, ``cy``,
        ``width``, ``height``)."""
        return asdict(self)


def project_points(
    points_cam: torch.Tensor, *, fx: float, fy: float, cx: float, cy: float, min_depth: float = 1e-6
) -> torch.Tensor:
    """Perspective projection of (..., 3) camera-frame points to (..., 2) pixels."""
    z = points_cam[..., 2:3].clamp_min(min_depth)
    xy = points_cam[..., :2] / z
    return torch.cat((xy[..., :1] * fx + cx, xy[..., 1:] * fy + cy), dim=-1)
