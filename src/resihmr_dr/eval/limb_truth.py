"""One residual limb's ground truth, as the synthetic benchmark makes it and ``gt.json`` stores it.

:mod:`resihmr_dr.eval.synth` builds a :class:`LimbTruth` per residual limb when it cuts and
closes the true stump; :mod:`resihmr_dr.eval.groundtruth` reads them back from ``gt.json``'s
``residual_limbs`` (:meth:`LimbTruth.from_dict`, the inverse of :meth:`LimbTruth.to_dict`).

Frames: camera frame (OpenCV x right, y down, z forward, metres).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from resihmr_dr.data.ldpose import LIMB_BY_NAME, Limb, LimbStatus
from resihmr_dr.eval.stump_shapes import StumpShape
from resihmr_dr.stump.geometry import StumpGeometry

__all__ = ["LimbTruth", "StumpMeasurements"]


@dataclass(frozen=True)
class StumpMeasurements:
    """The true stump measured on the true mesh.

    geometry: residual length (m, fraction of the segment), volume distal of J_a (m^3) and the
    cross-sections at its stations (:func:`resihmr_dr.stump.geometry.stump_geometry`);
    cut_section_area_m2, cut_section_perimeter_m: the section just proximal of the cut plane.
    """

    geometry: StumpGeometry
    cut_section_area_m2: float
    cut_section_perimeter_m: float

    def to_dict(self) -> dict[str, Any]:
        """``gt.json``'s ``measurements``: the geometry's fields, then the cut section's."""
        return {
            **self.geometry.to_dict(),
            "cut_section_area_m2": self.cut_section_area_m2,
            "cut_section_perimeter_m": self.cut_section_perimeter_m,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StumpMeasurements:
        """The inverse of :meth:`to_dict` (lists back to tuples); KeyError / TypeError where a field is
        missing or malformed."""
        names = [f.name for f in dataclasses.fields(StumpGeometry)]
        geometry = StumpGeometry(**{k: tuple(data[k]) if isinstance(data[k], list) else data[k] for k in names})
        return cls(geometry, _number(data["cut_section_area_m2"]), _number(data["cut_section_perimeter_m"]))


def _number(value: Any) -> float:
    """A float read back from JSON, where ``null`` stands for a non-finite value (NaN)."""
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class LimbTruth:
    """One residual limb's truth (camera frame, metres).

    limb_name: the limb (``left_leg``, ...); status: its residual status; type_name:
    ``<side>_<status>`` (``left_transtibial``); shape: the stump shape as built (its cap length
    possibly shortened to fit the segment); lam: the tip's fraction along J_a -> J_t; lam_cut:
    the cut plane's; anchor_cam, target_cam: (3,) J_a and J_t; endpoint_cam: (3,) the stump's tip;
    tip_index: the tip's vertex in the stumped mesh; cut_point_cam: (3,) the cut plane's point on
    the axis; axis_cam: (3,) the unit axis J_a -> J_t; cap_length_m: the tip's distance beyond
    the cut plane along the axis; cut_radius_m: the cut loop's mean radius (before atrophy);
    measurements: the stump measured on the stumped mesh.
    """

    limb_name: str
    status: LimbStatus
    type_name: str
    shape: StumpShape
    lam: float
    lam_cut: float
    anchor_cam: np.ndarray
    target_cam: np.ndarray
    endpoint_cam: np.ndarray
    tip_index: int
    cut_point_cam: np.ndarray
    axis_cam: np.ndarray
    cap_length_m: float
    cut_radius_m: float
    measurements: StumpMeasurements

    def __post_init__(self) -> None:
        if self.limb_name not in LIMB_BY_NAME:
            raise ValueError(f"unknown limb {self.limb_name!r}; expected one of {sorted(LIMB_BY_NAME)}")

    @property
    def limb(self) -> Limb:
        """The limb's definition (``LIMB_BY_NAME``)."""
        return LIMB_BY_NAME[self.limb_name]

    @property
    def residual_segment(self) -> str:
        """The body segment the residual limb ends on (``SEGMENT_NAMES``; its stump included)."""
        return self.limb.residual_segment(self.status)

    def to_dict(self) -> dict[str, Any]:
        """``gt.json``'s ``residual_limbs`` entry (arrays as they are: the writer makes them lists)."""
        return {
            "limb": self.limb_name,
            "status": self.status.value,
            "type": self.type_name,
            "shape": self.shape.to_dict(),
            "lambda": self.lam,
            "lambda_cut": self.lam_cut,
            "anchor_cam": self.anchor_cam,
            "target_cam": self.target_cam,
            "endpoint_cam": self.endpoint_cam,
            "tip_index": self.tip_index,
            "cut_point_cam": self.cut_point_cam,
            "axis_cam": self.axis_cam,
            "cap_length_m": self.cap_length_m,
            "cut_radius_m": self.cut_radius_m,
            "measurements": self.measurements.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LimbTruth:
        """The inverse of :meth:`to_dict` (points as (3,) float64 arrays); KeyError, TypeError or
        ValueError where a field is missing or malformed."""

        def point(key: str) -> np.ndarray:
            value = np.asarray(data[key], dtype=np.float64)
            if value.shape != (3,):
                raise ValueError(f"{key}: expected 3 numbers, got shape {value.shape}")
            return value

        return cls(
            limb_name=str(data["limb"]),
            status=LimbStatus(data["status"]),
            type_name=str(data["type"]),
            shape=StumpShape.from_dict(data["shape"]),
            lam=float(data["lambda"]),
            lam_cut=float(data["lambda_cut"]),
            anchor_cam=point("anchor_cam"),
            target_cam=point("target_cam"),
            endpoint_cam=point("endpoint_cam"),
            tip_index=int(data["tip_index"]),
            cut_point_cam=point("cut_point_cam"),
            axis_cam=point("axis_cam"),
            cap_length_m=float(data["cap_length_m"]),
            cut_radius_m=float(data["cut_radius_m"]),
            measurements=StumpMeasurements.from_dict(data["measurements"]),
        )
