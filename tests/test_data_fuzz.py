"""Property-based tests of the annotation loader.

(a) random valid keypoint sets load, round-trip, and get consistent limb statuses;
(b) schema-aware corruptions (deleted required keys, wrong types, NaN/Inf, out-of-range values)
    always raise DataError naming the file/annotation, and "collect" mode keeps everyone else;
    truncated JSON always raises DataError; arbitrary junk anywhere never raises anything but
    DataError.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.ldpose import LIMBS, NUM_KEYPOINTS, LimbStatus
from resihmr_dr.data.masks import mask_to_rle, write_png_mask

W, H = 40, 30
# RESIHMR_FUZZ_SCALE=20 runs 20x the examples (a thorough local run; the default keeps CI fast).
SCALE = max(1, int(os.environ.get("RESIHMR_FUZZ_SCALE", "1")))
FUZZ = settings(
    max_examples=150 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
LIMB_POINTS = {i for limb in LIMBS for i in (limb.middle, limb.distal, limb.above_end, limb.below_end)}


# ---------------------------------------------------------------------------- (a) valid keypoints
@st.composite
def valid_person(draw, *, width: int, height: int) -> tuple[list[float], dict[str, LimbStatus]]:
    """75 keypoint numbers obeying the LDpose rules, and the statuses they must derive."""
    vis = [0] * NUM_KEYPOINTS
    for i in range(NUM_KEYPOINTS):
        if i not in LIMB_POINTS:
            vis[i] = draw(st.sampled_from([0, 1, 2]))
    expected: dict[str, LimbStatus] = {}
    for limb in LIMBS:
        kind = draw(st.sampled_from(["intact", "above", "below"]))
        if kind == "intact":
            vis[limb.middle] = draw(st.sampled_from([0, 1, 2]))
            vis[limb.distal] = draw(st.sampled_from([0, 1, 2]))
            expected[limb.name] = LimbStatus.INTACT
        elif kind == "above":
            vis[limb.above_end] = draw(st.sampled_from([1, 2]))
            expected[limb.name] = limb.above_status
        else:
            vis[limb.middle] = draw(st.sampled_from([0, 1, 2]))
            vis[limb.below_end] = draw(st.sampled_from([1, 2]))
            expected[limb.name] = limb.below_status
    # Labelled: within OUTSIDE_MARGIN of the image (fractions of its size); absent: anything finite.
    frac = st.floats(-0.5, 1.5, allow_nan=False)
    fx = draw(st.lists(frac, min_size=NUM_KEYPOINTS, max_size=NUM_KEYPOINTS))
    fy = draw(st.lists(frac, min_size=NUM_KEYPOINTS, max_size=NUM_KEYPOINTS))
    as_int = draw(st.booleans())  # integer pixel coordinates, as many writers produce
    far = draw(st.sampled_from([0.0, 1e6, -1e6]))
    flat: list[float] = []
    for v, x, y in zip(vis, fx, fy):
        if v:
            x, y = x * width, y * height
            if as_int:
                x, y = math.ceil(x) if x < 0 else math.floor(x), math.ceil(y) if y < 0 else math.floor(y)
        else:
            x, y = far, -far
        flat += [x, y, v if as_int else float(v)]
    return flat, expected


@st.composite
def valid_document(draw) -> tuple[dict, list[dict[str, LimbStatus]]]:
    sizes = draw(st.lists(st.tuples(st.integers(1, 4000), st.integers(1, 4000)), min_size=1, max_size=3))
    images = [{"id": 100 + i, "file_name": f"{i}.jpg", "width": w, "height": h} for i, (w, h) in enumerate(sizes)]
    anns, expected = [], []
    n_people = draw(st.integers(1, 4))
    ids = draw(st.lists(st.integers(-(2**40), 2**40), min_size=n_people, max_size=n_people, unique=True))
    for ann_id in ids:
        image = draw(st.sampled_from(images))
        kp, status = draw(valid_person(width=image["width"], height=image["height"]))
        anns.append({"id": ann_id, "image_id": image["id"], "keypoints": kp})
        expected.append(status)
    return {"images": images, "annotations": anns}, expected


@settings(FUZZ, max_examples=100 * SCALE)
@given(valid_document())
def test_random_valid_keypoints_load_with_consistent_status(tmp_path, doc_expected):
    doc, expected = doc_expected
    path = tmp_path / "valid.json"
    path.write_text(json.dumps(doc))
    ds = load_annotations(path)
    assert [p.ann_id for p in ds] == [a["id"] for a in doc["annotations"]]
    for person, ann, status in zip(ds, doc["annotations"], expected):
        np.testing.assert_array_equal(person.keypoints_px.reshape(-1), np.asarray(ann["keypoints"], float))
        assert person.limb_status == status
        residual = dict((limb.name, s) for limb, s in person.residual_limbs)
        assert residual == {k: s for k, s in status.items() if s is not LimbStatus.INTACT}
        # every residual limb has its endpoint labelled and the replaced joint(s) absent
        for limb, s in person.residual_limbs:
            end = limb.endpoint_index(s)
            assert person.keypoints_px[end, 2] > 0
            assert person.keypoints_px[limb.distal, 2] == 0


# ---------------------------------------------------------------------------- (b) corruptions
NOT_INT = [None, "1", 1.5, True, [], {}, math.nan]
NOT_SIZE = NOT_INT + [0, -3, 10**30]
NOT_STR = [None, 3, [], {}, True, ""]
NOT_NUMBER = [None, "1", [], {}, True, math.nan, math.inf, -math.inf, 10**400]
NOT_LIST = [None, "x", 3, {}]
ANN_IDS = (10, 11, 12, 13, 14)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "masks").mkdir()
    mask = np.zeros((H, W), bool)
    mask[3:20, 5:30] = True
    write_png_mask(root / "masks" / "p13.png", mask)
    np.savez(
        root / "fit14.npz", betas=np.zeros(10), global_orient=np.zeros(3), body_pose=np.zeros(63), transl=np.zeros(3)
    )

    def kp(*labelled: int) -> list[float]:
        flat: list[float] = []
        for i in range(NUM_KEYPOINTS):
            flat += [2.0 + i, 1.0 + i, 2 if i in labelled else 0]
        return flat

    coco = tuple(range(17))
    rle_u = {"size": [H, W], "counts": [100, 50, W * H - 150]}
    doc = {
        "images": [
            {
                "id": 1,
                "file_name": "a.jpg",
                "width": W,
                "height": H,
                "camera": {"fx": 500.0, "fy": 500.0, "cx": 20.0, "cy": 15.0},
            },
            {
                "id": 2,
                "file_name": "b.jpg",
                "width": W,
                "height": H,
                "K": [[600.0, 0.0, 20.0], [0.0, 600.0, 15.0], [0.0, 0.0, 1.0]],
            },
            {"id": 3, "file_name": "c.jpg", "width": W, "height": H},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "keypoints": kp(*coco), "segmentation": mask_to_rle(mask)},
            {"id": 11, "image_id": 1, "keypoints": kp(0, 5, 6, 7, 19), "segmentation": rle_u},
            {"id": 12, "image_id": 2, "keypoints": kp(5, 6, 11, 12, 21, 22), "segmentation": [[5, 5, 30, 5, 30, 25]]},
            {"id": 13, "image_id": 2, "keypoints": kp(*coco), "mask_path": "masks/p13.png"},
            {
                "id": 14,
                "image_id": 3,
                "keypoints": kp(13, 14, 15, 16),
                "bbox": [1, 2, 30, 20],
                "num_keypoints": 4,
                "init_fit": "fit14.npz",
            },
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    return root, doc


def get_at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def set_at(doc: Any, path: tuple, value: Any) -> None:
    get_at(doc, path[:-1])[path[-1]] = value


def delete_at(doc: Any, path: tuple) -> None:
    del get_at(doc, path[:-1])[path[-1]]


def invalid_slots(doc: dict) -> list[tuple[tuple, list[Any], bool, tuple]]:
    """(path, invalid replacement values, deletable, scope) for corruptions that must fail.

    scope: ("file",), ("image", image_id) or ("ann", ann_id) -- what "collect" mode drops.
    """
    slots: list[tuple[tuple, list[Any], bool, tuple]] = [
        (("images",), NOT_LIST, True, ("file",)),
        (("annotations",), NOT_LIST, True, ("file",)),
        (("categories",), ["x", 3, {}, [3], [{"keypoints": ["nose"]}]], False, ("file",)),
    ]
    for i, img in enumerate(doc["images"]):
        scope = ("image", img["id"])
        slots += [
            (("images", i), NOT_LIST[:3] + [[]], False, scope),
            (("images", i, "id"), NOT_INT, True, scope),
            (("images", i, "file_name"), NOT_STR, True, scope),
            (("images", i, "width"), NOT_SIZE, True, scope),
            (("images", i, "height"), NOT_SIZE, True, scope),
        ]
        if "camera" in img:
            slots += [(("images", i, "camera"), ["pinhole", 3, True, [1, 2], {}], False, scope)]
            slots += [(("images", i, "camera", k), NOT_NUMBER, True, scope) for k in ("cx", "cy")]
            slots += [(("images", i, "camera", k), NOT_NUMBER + [0, -5.0], True, scope) for k in ("fx", "fy")]
        if "K" in img:
            slots += [
                (("images", i, "K"), ["K", 3, [[1, 0, 0], [0, 1, 0]], [[0, 0, 1], [0, 1, 1], [0, 0, 1]]], False, scope)
            ]
            slots += [
                (("images", i, "K", r, c), [None, "1", math.nan, math.inf, []], False, scope)
                for r in range(3)
                for c in range(3)
            ]
            slots += [(("images", i, "K", 0, 1), [5.0], False, scope), (("images", i, "K", 2, 2), [2.0], False, scope)]
    for j, ann in enumerate(doc["annotations"]):
        scope = ("ann", ann["id"])
        a = ("annotations", j)
        slots += [
            (a, NOT_LIST[:3] + [[]], False, scope),
            (a + ("id",), NOT_INT + [ANN_IDS[(j + 1) % len(ANN_IDS)]], True, scope),
            (a + ("image_id",), NOT_INT + [999], True, scope),
            (a + ("keypoints",), NOT_LIST + [[], [0] * 74, [0] * 76, [[0, 0, 0]] * 25], True, scope),
        ]
        for k in range(NUM_KEYPOINTS):
            labelled = ann["keypoints"][3 * k + 2] > 0
            far = [1.5 * W + 1, -0.5 * W - 1] if labelled else []
            slots += [
                (a + ("keypoints", 3 * k), NOT_NUMBER + far, False, scope),
                (a + ("keypoints", 3 * k + 1), NOT_NUMBER, False, scope),
                (a + ("keypoints", 3 * k + 2), NOT_NUMBER + [3, -1, 0.5, 2.5], False, scope),
            ]
        segm = ann.get("segmentation")
        if segm is not None:
            slots += [(a + ("segmentation",), ["x", 3, True, [[1, 2, 3]], [[1, 2, 3, 4]], {}], False, scope)]
        if isinstance(segm, dict):
            slots += [
                (
                    a + ("segmentation", "size"),
                    [None, [H], [H, "W"], [0, W], [H + 1, W], [H, W, 1], "30x40"],
                    True,
                    scope,
                ),
                (a + ("segmentation", "counts"), [None, 3, "", "~", "0", [1, 2], {}], True, scope),
            ]
            if isinstance(segm["counts"], list):
                slots += [
                    (a + ("segmentation", "counts", c), [-1, "1", None, 1.5, True, 0], False, scope)
                    for c in range(len(segm["counts"]))
                ]
        if isinstance(segm, list):
            slots += [
                (a + ("segmentation", 0, c), [None, "1", math.nan, math.inf, [], True], False, scope)
                for c in range(len(segm[0]))
            ]
        if "mask_path" in ann:
            slots += [(a + ("mask_path",), [3, [], {}, True, "", "masks/none.png", "masks"], False, scope)]
        if "bbox" in ann:
            slots += [(a + ("bbox",), ["x", 3, [1, 2], [1, 2, 3, math.nan], [1, 2, -1, 1], {}], False, scope)]
            slots += [(a + ("bbox", c), NOT_NUMBER, False, scope) for c in range(4)]
        if "num_keypoints" in ann:
            slots += [(a + ("num_keypoints",), ["3", -1, 1.5, 99, None, True], False, scope)]
        if "init_fit" in ann:
            slots += [(a + ("init_fit",), [3, "", True, "missing.npz", "masks/p13.png", []], False, scope)]
    return slots


@st.composite
def corruption(draw, doc: dict) -> tuple[dict, tuple, tuple]:
    slots = invalid_slots(doc)
    path, values, deletable, scope = draw(st.sampled_from(slots))
    bad = copy.deepcopy(doc)
    if deletable and draw(st.booleans()):
        delete_at(bad, path)
    else:
        set_at(bad, path, draw(st.sampled_from(values)))
    return bad, path, scope


def expected_kept(doc: dict, bad: dict, slot: tuple, scope: tuple) -> set[int]:
    """Annotation ids "collect" mode must keep after corrupting ``slot``."""
    if scope[0] == "image":
        return set(ANN_IDS) - {a["id"] for a in doc["annotations"] if a["image_id"] == scope[1]}
    dropped = {scope[1]}
    if slot[-1] == "id" and len(slot) == 3:  # an id set to another person's: both are duplicates
        entry = get_at(bad, slot[:-1])
        if isinstance(entry, dict) and entry.get("id") in ANN_IDS:
            dropped.add(entry["id"])
    return set(ANN_IDS) - dropped


def _write(root: Path, doc: Any) -> Path:
    path = root / "corrupt.json"
    path.write_text(json.dumps(doc))
    return path


@settings(FUZZ, max_examples=400 * SCALE)
@given(st.data())
def test_schema_corruptions_raise_dataerror_and_collect_keeps_the_rest(base, data):
    root, doc = base
    bad, slot, scope = data.draw(corruption(doc))
    path = _write(root, bad)
    with pytest.raises(DataError) as info:
        load_annotations(path)
    err = info.value
    assert "corrupt.json" in str(err), err
    if scope[0] == "ann" and slot[-1] != "id" and len(slot) > 2:
        assert err.ann_id == scope[1], err
        assert err.field is not None and f"annotation {scope[1]}" in str(err)
    if scope[0] == "image" and len(slot) > 2 and slot[2] != "id":
        assert err.image_id == scope[1] and err.field == slot[2], err

    if scope[0] == "file":
        with pytest.raises(DataError):
            load_annotations(path, on_error="collect")
        return
    ds = load_annotations(path, on_error="collect")
    expected = expected_kept(doc, bad, slot, scope)
    assert {p.ann_id for p in ds} == expected
    assert ds.errors and all(isinstance(e, DataError) and "corrupt.json" in str(e) for e in ds.errors)


@FUZZ
@given(st.data())
def test_truncated_json_raises_dataerror(base, data):
    root, doc = base
    text = json.dumps(doc, indent=data.draw(st.sampled_from([None, 1])))
    cut = data.draw(st.integers(0, len(text) - 1))
    path = root / "truncated.json"
    path.write_text(text[:cut])
    for mode in ("raise", "collect"):
        with pytest.raises(DataError, match="malformed JSON") as info:
            load_annotations(path, on_error=mode)
        assert "truncated.json" in str(info.value)


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def all_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += all_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += all_paths(v, prefix + (i,))
    return out


@FUZZ
@given(st.data())
def test_arbitrary_junk_never_raises_anything_but_dataerror(base, data):
    root, doc = base
    bad = copy.deepcopy(doc)
    paths = all_paths(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        try:
            parent = get_at(bad, path[:-1])
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = data.draw(JUNK)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    p = _write(root, bad)
    for mode in ("raise", "collect"):
        try:
            ds = load_annotations(p, on_error=mode)
        except DataError as err:
            assert "corrupt.json" in str(err)
            continue
        for person in ds:  # whatever loaded must be usable
            assert person.keypoints_px.shape == (NUM_KEYPOINTS, 3)
            assert np.isfinite(person.keypoints_px).all()
            assert set(person.limb_status) == {limb.name for limb in LIMBS}


@FUZZ
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(
                st.sampled_from(
                    [
                        "images",
                        "annotations",
                        "id",
                        "image_id",
                        "keypoints",
                        "width",
                        "height",
                        "file_name",
                        "segmentation",
                        "counts",
                        "size",
                        "camera",
                    ]
                ),
                children,
                max_size=5,
            ),
        ),
        max_leaves=20,
    )
)
def test_random_documents_never_raise_anything_but_dataerror(tmp_path, doc):
    path = tmp_path / "random.json"
    path.write_text(json.dumps(doc))
    try:
        load_annotations(path, on_error="collect")
    except DataError as err:
        assert "random.json" in str(err)
