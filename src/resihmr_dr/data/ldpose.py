"""The 25-keypoint LDpose schema and the rules that derive each limb's status.

Keypoints 0-16 are COCO's; 17-24 are residual-limb endpoints. Each limb is a group of four
keypoints: (middle joint, distal joint, endpoint replacing the middle joint, endpoint replacing
the distal joint), e.g. the left arm is (left_elbow, left_wrist, above_left_elbow_end,
below_left_elbow_end).

Keypoint triplets are read by position, in :data:`KEYPOINT_NAMES` order;
:func:`keypoint_names_problem` checks the names a file lists against it (other spellings, see
:func:`canonical_keypoint_name`, and the few :data:`KEYPOINT_ALIASES` accepted).
:data:`LDPOSE_SKELETON` is COCO's skeleton plus each residual endpoint joined to its anchor joint;
:func:`coco_category` is the COCO ``categories`` entry with the names and that skeleton.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Images whose annotation gives no intrinsics get SMPLify-X's default focal length (pixels),
# centred on the image (``data.records.Intrinsics.default_for``, ``camera.PinholeCamera.for_image``).
DEFAULT_FOCAL_PX = 5000.0

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "above_left_elbow_end",
    "above_right_elbow_end",
    "below_left_elbow_end",
    "below_right_elbow_end",
    "above_left_knee_end",
    "above_right_knee_end",
    "below_left_knee_end",
    "below_right_knee_end",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)  # 25
NUM_COCO_KEYPOINTS = 17
KEYPOINT_INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# OKS sigmas: COCO's 17, then the residual endpoints 17-24 (LDpose).
OKS_SIGMAS: tuple[float, ...] = (
    0.026,
    0.025,
    0.025,
    0.035,
    0.035,
    0.079,
    0.079,
    0.072,
    0.072,
    0.062,
    0.062,
    0.107,
    0.107,
    0.087,
    0.087,
    0.089,
    0.089,
    0.072,
    0.072,
    0.062,
    0.062,
    0.087,
    0.087,
    0.089,
    0.089,
)

# COCO skeleton (0-based) for drawing.
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
)


class Side(str, enum.Enum):
    """The person's left or right."""

    LEFT = "left"
    RIGHT = "right"


class LimbKind(str, enum.Enum):
    """Arm or leg."""

    ARM = "arm"
    LEG = "leg"


class LimbStatus(str, enum.Enum):
    """Status of one limb. The residual types name where the residual limb ends."""

    INTACT = "intact"
    TRANSHUMERAL = "transhumeral"  # ends on the upper arm (above the elbow)
    TRANSRADIAL = "transradial"  # ends on the forearm (below the elbow)
    TRANSFEMORAL = "transfemoral"  # ends on the thigh (above the knee)
    TRANSTIBIAL = "transtibial"  # ends on the shank (below the knee)

    @property
    def is_residual(self) -> bool:
        """True for every status but ``INTACT``."""
        return self is not LimbStatus.INTACT


@dataclass(frozen=True)
class Limb:
    """One limb and its four LDpose keypoints (indices into the 25-keypoint array).

    ``root`` is the proximal joint (shoulder / hip), ``middle`` the elbow / knee, ``distal``
    the wrist / ankle. ``above_end`` replaces ``middle`` (the residual limb ends on the proximal
    segment); ``below_end`` replaces ``distal`` (it ends on the middle segment).
    """

    name: str  # "left_arm", ...
    side: Side
    kind: LimbKind
    root: int
    middle: int
    distal: int
    above_end: int
    below_end: int

    @property
    def above_status(self) -> LimbStatus:
        """The status of a cut above the middle joint: transhumeral (arm) or transfemoral (leg)."""
        return LimbStatus.TRANSHUMERAL if self.kind is LimbKind.ARM else LimbStatus.TRANSFEMORAL

    @property
    def below_status(self) -> LimbStatus:
        """The status of a cut below the middle joint: transradial (arm) or transtibial (leg)."""
        return LimbStatus.TRANSRADIAL if self.kind is LimbKind.ARM else LimbStatus.TRANSTIBIAL

    def endpoint_index(self, status: LimbStatus) -> int:
        """Keypoint index of the residual endpoint for ``status``."""
        if status is self.above_status:
            return self.above_end
        if status is self.below_status:
            return self.below_end
        raise ValueError(f"{self.name} has no residual endpoint for status {status.value!r}")

    def segment_joints(self, status: LimbStatus) -> tuple[int, int]:
        """(anchor J_a, target J_t) keypoint indices of the segment the residual limb ends on."""
        if status is self.above_status:
            return self.root, self.middle
        if status is self.below_status:
            return self.middle, self.distal
        raise ValueError(f"{self.name} has no residual segment for status {status.value!r}")

    def segment_joint_names(self, status: LimbStatus) -> tuple[str, str]:
        """(anchor J_a, target J_t) names of the residual segment's joints (keypoint names, which
        are also the body models' joint names, ``body.base.JOINT_NAMES``)."""
        anchor, target = self.segment_joints(status)
        return KEYPOINT_NAMES[anchor], KEYPOINT_NAMES[target]

    def residual_segment(self, status: LimbStatus) -> str:
        """Name of the body segment the residual limb ends on (``body.base.SEGMENT_NAMES``), e.g.
        (left_leg, transtibial) -> "left_shank"."""
        return self._segment_chain(status)[0]

    def distal_segments(self, status: LimbStatus) -> tuple[str, ...]:
        """Names of the segments distal to the residual one (removed by the cut), e.g.
        (right_arm, transhumeral) -> ("right_forearm", "right_hand")."""
        return self._segment_chain(status)[1:]

    def _segment_chain(self, status: LimbStatus) -> tuple[str, ...]:
        status = LimbStatus(status)
        if not status.is_residual:
            raise ValueError(f"{self.name}: status {status.value!r} is not a residual-limb status")
        if status is self.above_status:
            first = 0
        elif status is self.below_status:
            first = 1
        else:
            raise ValueError(f"{self.name}: status {status.value!r} does not apply to a {self.kind.value}")
        parts = ("upper_arm", "forearm", "hand") if self.kind is LimbKind.ARM else ("thigh", "shank", "foot")
        return tuple(f"{self.side.value}_{part}" for part in parts[first:])


_K = KEYPOINT_INDEX
LIMBS: tuple[Limb, ...] = (
    Limb(
        "left_arm",
        Side.LEFT,
        LimbKind.ARM,
        _K["left_shoulder"],
        _K["left_elbow"],
        _K["left_wrist"],
        _K["above_left_elbow_end"],
        _K["below_left_elbow_end"],
    ),
    Limb(
        "right_arm",
        Side.RIGHT,
        LimbKind.ARM,
        _K["right_shoulder"],
        _K["right_elbow"],
        _K["right_wrist"],
        _K["above_right_elbow_end"],
        _K["below_right_elbow_end"],
    ),
    Limb(
        "left_leg",
        Side.LEFT,
        LimbKind.LEG,
        _K["left_hip"],
        _K["left_knee"],
        _K["left_ankle"],
        _K["above_left_knee_end"],
        _K["below_left_knee_end"],
    ),
    Limb(
        "right_leg",
        Side.RIGHT,
        LimbKind.LEG,
        _K["right_hip"],
        _K["right_knee"],
        _K["right_ankle"],
        _K["above_right_knee_end"],
        _K["below_right_knee_end"],
    ),
)
LIMB_BY_NAME = {limb.name: limb for limb in LIMBS}


# Residual endpoint -> its anchor joint (J_a of the segment the residual limb ends on: the shoulder /
# hip for an ``above_*`` endpoint, the elbow / knee for a ``below_*`` one), 0-based, for drawing.
RESIDUAL_SKELETON: tuple[tuple[int, int], ...] = tuple(
    sorted(
        (limb.endpoint_index(status), limb.segment_joints(status)[0])
        for limb in LIMBS
        for status in (limb.above_status, limb.below_status)
    )
)
# The whole LDpose skeleton (0-based): COCO's edges, then each residual endpoint to its anchor joint.
LDPOSE_SKELETON: tuple[tuple[int, int], ...] = COCO_SKELETON + RESIDUAL_SKELETON

# Other spellings of our names that a category's ``keypoints`` may use. Only unambiguous ones:
# ``l_``/``r_`` for ``left_``/``right_`` on the 16 sided COCO joints (``l_eye``, ``r_ankle``; no
# LDpose name starts with ``l_`` or ``r_``). Matching also ignores case, surrounding spaces and
# ``-``/space for ``_`` (see :func:`normalize_keypoint_name`), so ``Left Eye`` is ``left_eye``.
KEYPOINT_ALIASES: Mapping[str, str] = {
    f"{side[0]}_{name[len(side) + 1 :]}": name
    for name in KEYPOINT_NAMES[:NUM_COCO_KEYPOINTS]
    for side in ("left", "right")
    if name.startswith(side + "_")
}


def normalize_keypoint_name(name: str) -> str:
    """Lower case, surrounding white space dropped, runs of spaces/``-``/``_`` made one ``_``."""
    words = name.strip().lower().replace("-", " ").replace("_", " ").split()
    return "_".join(words)


def canonical_keypoint_name(name: Any) -> str | None:
    """The LDpose name ``name`` spells (itself, a normalized spelling or a
    :data:`KEYPOINT_ALIASES` alias), or ``None`` if it is not one (or not a string)."""
    if not isinstance(name, str):
        return None
    key = normalize_keypoint_name(name)
    if key in KEYPOINT_INDEX:
        return key
    return KEYPOINT_ALIASES.get(key)


def keypoint_names_problem(names: Sequence[Any]) -> str | None:
    """Why a category's ``keypoints`` names do not match :data:`KEYPOINT_NAMES` position by
    position, or ``None`` when they do (aliases and spellings accepted, see
    :func:`canonical_keypoint_name`).

    Keypoint triplets are read by position, so a permutation would put keypoints on the wrong
    joints: the message names the first mismatching position (0-based), the expected and the found
    name, and says whether the names are ours in another order or unknown.
    """
    if len(names) != NUM_KEYPOINTS:
        return f"expected the {NUM_KEYPOINTS} LDpose keypoint names, got {len(names)}"
    for position, (expected, found) in enumerate(zip(KEYPOINT_NAMES, names)):
        meaning = canonical_keypoint_name(found)
        if meaning == expected:
            continue
        head = f"position {position}: expected {expected!r}, found {found!r:.60}"
        if meaning is None:
            return f"{head}, which is not an LDpose keypoint name (see resihmr_dr.data.ldpose.KEYPOINT_NAMES)"
        spelled = "" if meaning == found else f" (read as {meaning!r})"
        meanings = sorted(str(canonical_keypoint_name(n)) for n in names)
        permuted = meanings == sorted(KEYPOINT_NAMES)
        what = "the file lists LDpose's names in another order" if permuted else "a name from another position"
        return (
            f"{head}{spelled}: {what}; keypoints are read by position, so they would land on the wrong "
            "joints: list the names in the order of resihmr_dr.data.ldpose.KEYPOINT_NAMES"
        )
    return None


def coco_category(category_id: int = 1) -> dict[str, Any]:
    """The COCO ``categories`` entry for LDpose people: name ``person``, the 25
    :data:`KEYPOINT_NAMES` and :data:`LDPOSE_SKELETON` as COCO writes it (1-based keypoint numbers)."""
    return {
        "id": category_id,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(KEYPOINT_NAMES),
        "skeleton": [[a + 1, b + 1] for a, b in LDPOSE_SKELETON],
    }
