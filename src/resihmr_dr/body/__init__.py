"""Body models: one interface (``BodyModel``), Anny (default, offline) and SMPL-X adapters."""

from resihmr_dr.body.base import (
    JOINT_NAMES,
    SEGMENT_NAMES,
    BodyModel,
    BodyOutput,
    BodyParams,
)

__all__ = ["JOINT_NAMES", "SEGMENT_NAMES", "BodyModel", "BodyOutput", "BodyParams"]
