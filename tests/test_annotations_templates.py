"""Annotation templates (docs/annotation/) and the sample's categories, both made from data/ldpose.py.

The committed files must equal what their scripts write, so the names never drift from the loader.
"""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.ldpose import (
    COCO_SKELETON,
    KEYPOINT_INDEX,
    KEYPOINT_NAMES,
    LDPOSE_SKELETON,
    LIMBS,
    RESIDUAL_SKELETON,
    coco_category,
)
from resihmr_dr.data.sample import sample_annotations_path

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "docs" / "annotation"
REGENERATE = "run `python scripts/make_annotation_templates.py` and commit docs/annotation"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


templates = _load("make_annotation_templates")


# ---------------------------------------------------------------------------- the schema
def test_residual_edges_join_each_endpoint_to_its_anchor_joint():
    k = KEYPOINT_INDEX
    assert dict(RESIDUAL_SKELETON) == {
        k["above_left_elbow_end"]: k["left_shoulder"],
        k["above_right_elbow_end"]: k["right_shoulder"],
        k["below_left_elbow_end"]: k["left_elbow"],
        k["below_right_elbow_end"]: k["right_elbow"],
        k["above_left_knee_end"]: k["left_hip"],
        k["above_right_knee_end"]: k["right_hip"],
        k["below_left_knee_end"]: k["left_knee"],
        k["below_right_knee_end"]: k["right_knee"],
    }
    for limb in LIMBS:
        for status in (limb.above_status, limb.below_status):
            assert (limb.endpoint_index(status), limb.segment_joints(status)[0]) in RESIDUAL_SKELETON
    assert LDPOSE_SKELETON == COCO_SKELETON + RESIDUAL_SKELETON


def test_coco_category_is_cocos_person_plus_the_endpoints():
    cat = coco_category(3)
    assert cat["id"] == 3 and cat["name"] == "person"
    assert cat["keypoints"] == list(KEYPOINT_NAMES)
    # COCO's own 1-based person skeleton, then the 8 residual edges
    assert cat["skeleton"][:19] == [
        [16, 14],
        [14, 12],
        [17, 15],
        [15, 13],
        [12, 13],
        [6, 12],
        [7, 13],
        [6, 7],
        [6, 8],
        [7, 9],
        [8, 10],
        [9, 11],
        [2, 3],
        [1, 2],
        [1, 3],
        [2, 4],
        [3, 5],
        [4, 6],
        [5, 7],
    ]
    assert len(cat["skeleton"]) == 27 and all(1 <= i <= 25 for edge in cat["skeleton"] for i in edge)


# ---------------------------------------------------------------------------- templates
def test_committed_templates_equal_what_the_script_writes():
    built = templates.build()
    committed = {p.name: p.read_text(encoding="utf-8") for p in TEMPLATES.iterdir() if p.is_file()}
    assert sorted(committed) == sorted(built), REGENERATE
    for name, text in built.items():
        assert committed[name] == text, f"docs/annotation/{name} is stale: {REGENERATE}"


def test_the_script_writes_to_a_folder(tmp_path):
    templates.main(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(templates.build())


def test_label_studio_config_parses_and_lists_the_25_names_in_order():
    root = ET.fromstring((TEMPLATES / "label_studio.xml").read_text(encoding="utf-8"))
    assert root.tag == "View"
    (image,) = root.findall("Image")
    (keypoints,) = root.findall("KeyPointLabels")
    assert keypoints.get("toName") == image.get("name") == "image"
    assert [label.get("value") for label in keypoints.findall("Label")] == list(KEYPOINT_NAMES)
    assert all(label.get("hint") and label.get("background") for label in keypoints.findall("Label"))
    for tag in ("BrushLabels", "PolygonLabels"):
        (mask,) = root.findall(tag)
        assert mask.get("toName") == "image" and [x.get("value") for x in mask.findall("Label")] == ["person"]
    names = [el.get("name") for el in root if el.get("name")]
    assert len(names) == len(set(names))  # Label Studio needs unique tag names


def test_cvat_skeleton_parses_with_the_25_points_and_the_edges():
    labels = json.loads((TEMPLATES / "cvat_labels.json").read_text(encoding="utf-8"))
    (skeleton,) = [x for x in labels if x["type"] == "skeleton"]
    assert skeleton["name"] == "person"
    assert [s["name"] for s in skeleton["sublabels"]] == list(KEYPOINT_NAMES)
    assert {s["type"] for s in skeleton["sublabels"]} == {"points"}
    svg = ET.fromstring(f"<svg>{skeleton['svg']}</svg>")
    circles = svg.findall("circle")
    assert [c.get("data-label-name") for c in circles] == list(KEYPOINT_NAMES)
    assert [int(c.get("data-node-id")) for c in circles] == list(range(1, 26))
    edges = [(int(e.get("data-node-from")), int(e.get("data-node-to"))) for e in svg.findall("line")]
    assert edges == [(a + 1, b + 1) for a, b in LDPOSE_SKELETON]
    for c in circles:
        assert 0 <= float(c.get("cx")) <= 100 and 0 <= float(c.get("cy")) <= 100
    assert len({(c.get("cx"), c.get("cy")) for c in circles}) == 25  # no two points drawn on each other
    assert any(x["name"] == "person_mask" for x in labels)


def test_the_category_template_is_what_an_ldpose_file_carries():
    assert json.loads((TEMPLATES / "ldpose_category.json").read_text(encoding="utf-8")) == [coco_category(1)]


# ---------------------------------------------------------------------------- the sample
def test_the_sample_carries_the_names_and_the_skeleton():
    doc = json.loads(sample_annotations_path().read_text())
    assert doc["categories"] == [coco_category(1)]
    assert load_annotations(sample_annotations_path()).categories[0]["keypoints"] == list(KEYPOINT_NAMES)


def test_make_sample_writes_the_committed_annotation_file():
    """Regenerating the sample gives the same annotations.json (from its rendered numbers)."""
    make_sample = _load("make_sample")  # its heavy imports (torch, Anny) are inside main()
    text = sample_annotations_path().read_text()
    doc = json.loads(text)
    image, person = doc["images"][0], doc["annotations"][0]
    rebuilt = make_sample.sample_document(
        width=image["width"],
        height=image["height"],
        intrinsics=image["camera"],
        keypoints=person["keypoints"],
        bbox=person["bbox"],
        area=person["area"],
    )
    assert make_sample.document_text(rebuilt) == text


# ---------------------------------------------------------------------------- docs/annotate.md
def _doc_python_block() -> str:
    text = (REPO / "docs" / "annotate.md").read_text(encoding="utf-8")
    (block,) = [b.split("\n", 1)[1] for b in text.split("```")[1::2] if b.startswith("python\n")]
    return block


def test_the_label_studio_conversion_sketch_gives_a_file_that_loads(tmp_path, monkeypatch):
    """The doc's conversion, on an export shaped like Label Studio's JSON export (percent units)."""
    width, height = 480, 640

    def point(name: str, x: float, y: float, region: str) -> dict:
        return {
            "id": region,
            "type": "keypointlabels",
            "original_width": width,
            "original_height": height,
            "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": [name]},
        }

    labelled = [n for n in KEYPOINT_NAMES[:17] if n != "left_ankle"] + ["below_left_knee_end"]
    result = [point(n, 30 + i, 10 + 3 * i, f"r{i}") for i, n in enumerate(labelled)]
    result.append(
        {
            "id": "r3",
            "type": "choices",
            "original_width": width,
            "original_height": height,
            "value": {"choices": ["occluded"]},
        }
    )
    square = [[10, 10], [90, 10], [90, 95], [10, 95]]
    result.append(
        {
            "id": "m",
            "type": "polygonlabels",
            "original_width": width,
            "original_height": height,
            "value": {"points": square, "polygonlabels": ["person"]},
        }
    )
    export = [{"data": {"image": "/data/upload/1/3f2a-photo.jpg"}, "annotations": [{"result": result}]}]
    (tmp_path / "label_studio_export.json").write_text(json.dumps(export))
    monkeypatch.chdir(tmp_path)
    exec(compile(_doc_python_block(), "docs/annotate.md", "exec"), {})  # noqa: S102 - the doc's own snippet
    ds = load_annotations(tmp_path / "people.json")
    (person,) = ds.people
    assert ds.images[1].file_name == "3f2a-photo.jpg" and (ds.images[1].width, ds.images[1].height) == (480, 640)
    assert [(limb.name, status.value) for limb, status in person.residual_limbs] == [("left_leg", "transtibial")]
    kp = person.keypoints_px
    assert kp[KEYPOINT_INDEX["nose"]].tolist() == [30 / 100 * width, 10 / 100 * height, 2.0]
    assert kp[KEYPOINT_INDEX["left_ear"], 2] == 1.0  # region r3 was ticked occluded
    assert kp[KEYPOINT_INDEX["left_ankle"], 2] == 0.0
    assert ds.mask(person).sum() > 0.5 * width * height
