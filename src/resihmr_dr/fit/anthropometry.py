"""Anthropometric segment lengths as fractions of body height (pure functions).

Fractions of standing height H for the distance between the joint centres that bound each segment
(Drillis & Contini 1966, as tabulated by Winter, *Biomechanics and Motor Control of Human
Movement*): upper arm (shoulder-elbow) 0.186, forearm (elbow-wrist) 0.146, hand (wrist to the
tip of the middle finger) 0.108, thigh (hip-knee) 0.245, shank (knee-ankle) 0.246, foot
(heel-toe length) 0.152. They describe adults; expect individual deviations of ~5-10 %, and
larger ones in children and in body models whose rig differs from anatomical joint centres
(Anny's mean adult upper arm is ~0.155 H).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "SEGMENT_LENGTH_FRACTIONS",
    "expected_segment_length_m",
]

# Segment (side-less, as in ``body.base.SEGMENT_NAMES`` without "left_"/"right_") -> length / H.
SEGMENT_LENGTH_FRACTIONS: Mapping[str, float] = MappingProxyType(
    {
        "upper_arm": 0.186,
        "forearm": 0.146,
        "hand": 0.108,
        "thigh": 0.245,
        "shank": 0.246,
        "foot": 0.152,
    }
)


def expected_segment_length_m(segment: str, *, body_height_m: float) -> float:
    """Expected joint-to-joint length (metres) of ``segment`` for a person ``body_height_m`` tall.

    Args:
        segment: a key of :data:`SEGMENT_LENGTH_FRACTIONS` ("upper_arm", "forearm", "hand",
            "thigh", "shank", "foot"); a "left_"/"right_" prefix is accepted and ignored.
        body_height_m: standing height in metres, finite and > 0.

    Raises:
        ValueError: on an unknown segment or a non-positive / non-finite height.
    """
    base = segment.removeprefix("left_").removeprefix("right_")
    if base not in SEGMENT_LENGTH_FRACTIONS:
        known = ", ".join(SEGMENT_LENGTH_FRACTIONS)
        raise ValueError(f"unknown segment {segment!r}; expected one of: {known}")
    if not (isinstance(body_height_m, (int, float)) and math.isfinite(body_height_m) and body_height_m > 0):
        raise ValueError(f"body_height_m must be a finite positive number of metres, got {body_height_m!r}")
    return SEGMENT_LENGTH_FRACTIONS[base] * float(body_height_m)
