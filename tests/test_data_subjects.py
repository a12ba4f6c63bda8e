"""Several images of one person: ``person_id`` grouping, camera extrinsics, and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.ldpose import KEYPOINT_INDEX, NUM_KEYPOINTS
from resihmr_dr.data.records import Extrinsics

W, H = 40, 30
NAMES = list(KEYPOINT_INDEX)
COCO = NAMES[:17]


def kp_flat(labelled: list[str]) -> list[float]:
    return [v for i in range(NUM_KEYPOINTS) for v in (1.5 + i, 2.0 + i % 20, 2.0 if NAMES[i] in labelled else 0.0)]


TRANSTIBIAL = [n for n in COCO if n != "left_ankle"] + ["below_left_knee_end"]
TRANSFEMORAL = [n for n in COCO if n not in ("left_knee", "left_ankle")] + ["above_left_knee_end"]


def rotation_y(deg: float) -> list[list[float]]:
    a = np.deg2rad(deg)
    return [[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]]


def document(root: Path) -> dict:
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "a.png")
    camera = {"fx": 500.0, "fy": 500.0, "cx": 20.0, "cy": 15.0}
    return {
        "images": [
            {
                "id": 1,
                "file_name": "a.png",
                "width": W,
                "height": H,
                "camera": dict(camera, R=rotation_y(0), t=[0, 0, 0]),
            },
            {
                "id": 2,
                "file_name": "a.png",
                "width": W,
                "height": H,
                "camera": dict(camera, R=rotation_y(90), t=[0, 0, 3]),
            },
            {"id": 3, "file_name": "a.png", "width": W, "height": H, "camera": camera},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "keypoints": kp_flat(TRANSTIBIAL), "person_id": "p1"},
            {"id": 11, "image_id": 3, "keypoints": kp_flat(COCO)},
            {"id": 12, "image_id": 2, "keypoints": kp_flat(TRANSTIBIAL), "person_id": "p1"},
            {"id": 13, "image_id": 3, "keypoints": kp_flat(TRANSFEMORAL), "person_id": "p2"},
        ],
    }


def write(root: Path, doc: dict) -> Path:
    path = root / "annotations.json"
    path.write_text(json.dumps(doc))
    return path


def test_subjects_group_by_person_id_in_file_order(tmp_path):
    ds = load_annotations(write(tmp_path, document(tmp_path)))
    subjects = ds.subjects()
    assert [(s.person_id, [p.ann_id for p in s.people]) for s in subjects] == [
        ("p1", [10, 12]),
        (None, [11]),
        ("p2", [13]),
    ]
    assert [s.multi_view for s in subjects] == [True, False, False]
    assert [s.key for s in subjects] == ["p1", "ann11", "p2"]


def test_extrinsics_are_read_and_map_world_to_camera(tmp_path):
    ds = load_annotations(write(tmp_path, document(tmp_path)))
    assert ds.images[3].extrinsics is None
    ext = ds.images[2].extrinsics
    assert isinstance(ext, Extrinsics)
    np.testing.assert_allclose(ext.to_camera(np.array([[1.0, 0.0, 0.0]])), [[0.0, 0.0, 2.0]], atol=1e-12)
    assert ds.images[2].intrinsics.fx == 500.0
    with pytest.raises(ValueError):
        ext.R[0, 0] = 2.0  # read-only


@pytest.mark.parametrize(
    "mutate, ann_id, image_id, field, fragment",
    [
        (lambda d: d["annotations"][2].update(keypoints=kp_flat(TRANSFEMORAL)), 12, None, "person_id",
         "left_leg is transtibial in annotation 10 but transfemoral in annotation 12"),
        (lambda d: d["annotations"][2].update(keypoints=kp_flat(COCO)), 12, None, "person_id",
         "left_leg is transtibial in annotation 10 but intact in annotation 12"),
        (lambda d: d["annotations"][2].update(image_id=1), 12, None, "person_id", "appears twice in image 1"),
        (lambda d: d["annotations"][0].update(person_id=7), 10, None, "person_id", "expected a non-empty string"),
        (lambda d: d["annotations"][0].update(person_id=" "), 10, None, "person_id", "expected a non-empty string"),
        (lambda d: d["images"][1]["camera"].pop("t"), None, 2, "camera", "'t' is missing"),
        (lambda d: d["images"][1]["camera"].update(R=[[1, 0], [0, 1]]), None, 2, "camera", "must have shape (3, 3)"),
        (lambda d: d["images"][1]["camera"].update(R=[[2, 0, 0], [0, 1, 0], [0, 0, 1]]), None, 2, "camera",
         "rotation matrix"),
        (lambda d: d["images"][1]["camera"].update(R=[[-1, 0, 0], [0, 1, 0], [0, 0, 1]]), None, 2, "camera",
         "determinant +1"),
        (lambda d: d["images"][1]["camera"].update(t=[0, "x", 1]), None, 2, "camera", "'t' must be a list of numbers"),
        (lambda d: d["images"][1]["camera"].update(t=[0, 1]), None, 2, "camera", "'t' must have shape (3,)"),
        (lambda d: d["images"][1]["camera"].update(t=[0, float("nan"), 1]), None, 2, "camera", "NaN"),
    ],
)  # fmt: skip
def test_bad_multi_view_input_is_a_clear_error(tmp_path, mutate, ann_id, image_id, field, fragment):
    doc = document(tmp_path)
    mutate(doc)
    path = write(tmp_path, doc)
    with pytest.raises(DataError) as info:
        load_annotations(path)
    err = info.value
    assert err.field == field and fragment in str(err)
    assert err.path == path
    if ann_id is not None:
        assert err.ann_id == ann_id
    if image_id is not None:
        assert err.image_id == image_id


def test_collect_mode_drops_the_whole_inconsistent_subject(tmp_path):
    doc = document(tmp_path)
    doc["annotations"][2]["keypoints"] = kp_flat(COCO)
    ds = load_annotations(write(tmp_path, doc), on_error="collect")
    assert [p.ann_id for p in ds] == [11, 13]
    assert len(ds.errors) == 1 and "'p1'" in str(ds.errors[0])
