"""Derive each limb's :class:`LimbStatus` from LDpose keypoints (pure functions).

Rules (DESIGN.md section 2), per limb ``(middle, distal, above_end, below_end)``, where a
keypoint is *labelled* when its visibility ``v > 0``:

- ``above_end`` labelled -> transhumeral (arm) / transfemoral (leg);
- ``below_end`` labelled -> transradial (arm) / transtibial (leg);
- neither -> intact.

Contradictions raise :class:`DataError` (field ``keypoints``): both endpoints on one limb; an
``above_end`` together with the middle joint it replaces, or with the distal joint (which lies
beyond it); a ``below_end`` together with the distal joint it replaces. Bilateral and
multi-limb loss are normal.
"""

from __future__ import annotations

import numpy as np

from resihmr_dr.data.errors import DataError
from resihmr_dr.data.ldpose import KEYPOINT_NAMES, LIMBS, NUM_KEYPOINTS, Limb, LimbStatus

__all__ = ["derive_limb_status", "limb_status", "residual_limbs", "labelled"]


def labelled(keypoints_px: np.ndarray) -> np.ndarray:
    """Bool (25,): keypoints labelled (``v > 0``) in a (25, 3) ``[x_px, y_px, v]`` array."""
    kp = np.asarray(keypoints_px)
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise DataError(
            f"expected a ({NUM_KEYPOINTS}, 3) keypoint array, got shape {kp.shape}",
            field="keypoints",
        )
    return kp[:, 2] > 0


def limb_status(is_labelled: np.ndarray, limb: Limb) -> LimbStatus:
    """Status of one limb from the bool (25,) ``is_labelled`` vector; raises on contradictions."""
    above = bool(is_labelled[limb.above_end])
    below = bool(is_labelled[limb.below_end])
    middle = bool(is_labelled[limb.middle])
    distal = bool(is_labelled[limb.distal])
    names = KEYPOINT_NAMES

    def fail(a: int, b: int, why: str) -> DataError:
        return DataError(f"{limb.name}: {names[a]} and {names[b]} are both labelled ({why})", field="keypoints")

    if above and below:
        raise fail(limb.above_end, limb.below_end, "two residual endpoints on one limb")
    if above and middle:
        raise fail(limb.above_end, limb.middle, f"{names[limb.above_end]} replaces the joint")
    if above and distal:
        raise fail(limb.above_end, limb.distal, "the limb ends above the middle joint")
    if below and distal:
        raise fail(limb.below_end, limb.distal, f"{names[limb.below_end]} replaces the joint")
    if above:
        return limb.above_status
    if below:
        return limb.below_status
    return LimbStatus.INTACT


def derive_limb_status(keypoints_px: np.ndarray) -> dict[str, LimbStatus]:
    """Limb name (``"left_arm"``, ``"right_arm"``, ``"left_leg"``, ``"right_leg"``) -> status.

    Args:
        keypoints_px: (25, 3) ``[x_px, y_px, v]`` in image pixels; ``v = 0`` means absent.

    Raises:
        DataError: (field ``keypoints``) on a wrong shape or a contradictory limb.
    """
    is_labelled = labelled(keypoints_px)
    return {limb.name: limb_status(is_labelled, limb) for limb in LIMBS}


def residual_limbs(status: dict[str, LimbStatus]) -> list[tuple[Limb, LimbStatus]]:
    """The residual limbs of a status dict, in ``LIMBS`` order, as ``(Limb, LimbStatus)``."""
    return [(limb, status[limb.name]) for limb in LIMBS if status[limb.name].is_residual]
