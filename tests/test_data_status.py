"""Limb-status derivation from LDpose keypoints: rule tables, contradictions, properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resihmr_dr.data.errors import DataError
from resihmr_dr.data.ldpose import KEYPOINT_INDEX, LIMB_BY_NAME, LIMBS, NUM_KEYPOINTS, LimbStatus
from resihmr_dr.data.status import derive_limb_status, residual_limbs

S = LimbStatus
INTACT = {limb.name: S.INTACT for limb in LIMBS}


def keypoints(labelled: list[str] | tuple[str, ...] = (), *, v: int = 2) -> np.ndarray:
    """(25, 3) array with the named keypoints labelled (others absent)."""
    kp = np.zeros((NUM_KEYPOINTS, 3))
    kp[:, :2] = 10.0
    for name in labelled:
        kp[KEYPOINT_INDEX[name], 2] = v
    return kp


COCO_ALL = [
    "nose",
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
]


def without(names: list[str], *drop: str) -> list[str]:
    return [n for n in names if n not in drop]


# (labelled keypoints, expected non-intact statuses)
SINGLE_LIMB_TABLE = [
    (without(COCO_ALL, "left_elbow", "left_wrist") + ["above_left_elbow_end"], {"left_arm": S.TRANSHUMERAL}),
    (without(COCO_ALL, "right_elbow", "right_wrist") + ["above_right_elbow_end"], {"right_arm": S.TRANSHUMERAL}),
    (without(COCO_ALL, "left_wrist") + ["below_left_elbow_end"], {"left_arm": S.TRANSRADIAL}),
    (without(COCO_ALL, "right_wrist") + ["below_right_elbow_end"], {"right_arm": S.TRANSRADIAL}),
    (without(COCO_ALL, "left_knee", "left_ankle") + ["above_left_knee_end"], {"left_leg": S.TRANSFEMORAL}),
    (without(COCO_ALL, "right_knee", "right_ankle") + ["above_right_knee_end"], {"right_leg": S.TRANSFEMORAL}),
    (without(COCO_ALL, "left_ankle") + ["below_left_knee_end"], {"left_leg": S.TRANSTIBIAL}),
    (without(COCO_ALL, "right_ankle") + ["below_right_knee_end"], {"right_leg": S.TRANSTIBIAL}),
]


@pytest.mark.parametrize(("labelled", "expected"), SINGLE_LIMB_TABLE)
def test_single_limb_types_and_sides(labelled, expected):
    status = derive_limb_status(keypoints(labelled))
    assert status == {**INTACT, **expected}


@pytest.mark.parametrize(
    ("labelled", "expected"),
    [
        # bilateral transfemoral
        (
            without(COCO_ALL, "left_knee", "left_ankle", "right_knee", "right_ankle")
            + ["above_left_knee_end", "above_right_knee_end"],
            {"left_leg": S.TRANSFEMORAL, "right_leg": S.TRANSFEMORAL},
        ),
        # bilateral transradial
        (
            without(COCO_ALL, "left_wrist", "right_wrist") + ["below_left_elbow_end", "below_right_elbow_end"],
            {"left_arm": S.TRANSRADIAL, "right_arm": S.TRANSRADIAL},
        ),
        # mixed levels on the two legs
        (
            without(COCO_ALL, "left_knee", "left_ankle", "right_ankle")
            + ["above_left_knee_end", "below_right_knee_end"],
            {"left_leg": S.TRANSFEMORAL, "right_leg": S.TRANSTIBIAL},
        ),
        # all four limbs
        (
            without(COCO_ALL, "left_elbow", "left_wrist", "right_wrist", "left_ankle", "right_knee", "right_ankle")
            + ["above_left_elbow_end", "below_right_elbow_end", "below_left_knee_end", "above_right_knee_end"],
            {
                "left_arm": S.TRANSHUMERAL,
                "right_arm": S.TRANSRADIAL,
                "left_leg": S.TRANSTIBIAL,
                "right_leg": S.TRANSFEMORAL,
            },
        ),
    ],
)
def test_bilateral_and_multi_limb(labelled, expected):
    assert derive_limb_status(keypoints(labelled)) == {**INTACT, **expected}


def test_intact_including_nothing_labelled():
    assert derive_limb_status(keypoints(COCO_ALL)) == INTACT
    assert derive_limb_status(keypoints([])) == INTACT


def test_occluded_endpoint_counts_as_labelled():
    # v = 1 (labelled, occluded) still marks the residual limb.
    status = derive_limb_status(keypoints(["below_left_knee_end"], v=1))
    assert status["left_leg"] is S.TRANSTIBIAL


def test_absent_endpoint_with_coordinates_is_ignored():
    kp = keypoints(COCO_ALL)
    kp[KEYPOINT_INDEX["above_left_elbow_end"]] = (50.0, 60.0, 0.0)  # coordinates but v = 0
    assert derive_limb_status(kp) == INTACT


CONTRADICTIONS = []
for _limb in LIMBS:
    _n = {"above": _limb.above_end, "below": _limb.below_end, "mid": _limb.middle, "dist": _limb.distal}
    _names = {k: list(KEYPOINT_INDEX)[i] for k, i in _n.items()}
    CONTRADICTIONS += [
        pytest.param([_names["above"], _names["below"]], _limb.name, id=f"{_limb.name}-two-ends"),
        pytest.param([_names["above"], _names["mid"]], _limb.name, id=f"{_limb.name}-above+middle"),
        pytest.param([_names["above"], _names["dist"]], _limb.name, id=f"{_limb.name}-above+distal"),
        pytest.param([_names["below"], _names["dist"]], _limb.name, id=f"{_limb.name}-below+distal"),
    ]


@pytest.mark.parametrize(("labelled", "limb_name"), CONTRADICTIONS)
def test_contradictions_raise(labelled, limb_name):
    with pytest.raises(DataError) as info:
        derive_limb_status(keypoints(labelled))
    assert info.value.field == "keypoints"
    assert limb_name in str(info.value)
    for name in labelled:
        assert name in str(info.value)


def test_contradiction_on_one_limb_is_not_masked_by_valid_others():
    names = without(COCO_ALL, "left_wrist") + ["below_left_elbow_end", "above_right_knee_end"]
    with pytest.raises(DataError, match="right_leg"):
        derive_limb_status(keypoints(names))  # right_knee is still labelled


def test_below_end_with_middle_joint_is_fine():
    status = derive_limb_status(keypoints(["left_elbow", "below_left_elbow_end"]))
    assert status["left_arm"] is S.TRANSRADIAL


@pytest.mark.parametrize("shape", [(24, 3), (25, 2), (75,)])
def test_wrong_shape_raises(shape):
    with pytest.raises(DataError, match="25, 3"):
        derive_limb_status(np.zeros(shape))


def test_residual_limbs_in_limb_order():
    status = {**INTACT, "right_leg": S.TRANSTIBIAL, "left_arm": S.TRANSHUMERAL}
    got = residual_limbs(status)
    assert [(limb.name, s) for limb, s in got] == [("left_arm", S.TRANSHUMERAL), ("right_leg", S.TRANSTIBIAL)]
    assert got[0][0] is LIMB_BY_NAME["left_arm"]


# ---------------------------------------------------------------------------- properties
_LIMB_POINTS = {i for limb in LIMBS for i in (limb.middle, limb.distal, limb.above_end, limb.below_end)}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0, 1, 2]), min_size=NUM_KEYPOINTS, max_size=NUM_KEYPOINTS))
def test_any_visibility_pattern_raises_dataerror_or_obeys_rules(vis):
    kp = np.zeros((NUM_KEYPOINTS, 3))
    kp[:, 2] = vis
    lab = kp[:, 2] > 0
    try:
        status = derive_limb_status(kp)
    except DataError as err:
        # Some limb really is contradictory.
        assert any(
            (lab[limb.above_end] and (lab[limb.below_end] or lab[limb.middle] or lab[limb.distal]))
            or (lab[limb.below_end] and lab[limb.distal])
            for limb in LIMBS
        ), err
        return
    for limb in LIMBS:
        s = status[limb.name]
        if lab[limb.above_end]:
            assert s is limb.above_status
            assert not (lab[limb.middle] or lab[limb.distal] or lab[limb.below_end])
        elif lab[limb.below_end]:
            assert s is limb.below_status
            assert not lab[limb.distal]
        else:
            assert s is S.INTACT


@settings(max_examples=200, deadline=None)
@given(st.tuples(*[st.sampled_from(["intact", "above", "below"]) for _ in LIMBS]), st.data())
def test_generated_statuses_round_trip(choices, data):
    """Keypoints built for a chosen status per limb derive exactly that status."""
    kp = np.zeros((NUM_KEYPOINTS, 3))
    kp[:, 2] = [data.draw(st.sampled_from([0, 1, 2])) if i not in _LIMB_POINTS else 0 for i in range(NUM_KEYPOINTS)]
    expected = {}
    for limb, choice in zip(LIMBS, choices):
        opt = st.sampled_from([0, 1, 2])
        if choice == "intact":
            kp[limb.middle, 2] = data.draw(opt)
            kp[limb.distal, 2] = data.draw(opt)
            expected[limb.name] = S.INTACT
        elif choice == "above":
            kp[limb.above_end, 2] = data.draw(st.sampled_from([1, 2]))
            expected[limb.name] = limb.above_status
        else:
            kp[limb.middle, 2] = data.draw(opt)
            kp[limb.below_end, 2] = data.draw(st.sampled_from([1, 2]))
            expected[limb.name] = limb.below_status
    assert derive_limb_status(kp) == expected
    n_residual = sum(c != "intact" for c in choices)
    assert len(residual_limbs(expected)) == n_residual


def test_all_status_combinations_are_reachable():
    seen = set()
    for combo in itertools.product(["intact", "above", "below"], repeat=len(LIMBS)):
        kp = np.zeros((NUM_KEYPOINTS, 3))
        for limb, c in zip(LIMBS, combo):
            if c == "above":
                kp[limb.above_end, 2] = 2
            elif c == "below":
                kp[limb.below_end, 2] = 2
        seen.add(tuple(derive_limb_status(kp).values()))
    assert len(seen) == 3 ** len(LIMBS)
