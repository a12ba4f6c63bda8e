"""The evaluator on multi-view benchmarks: a person's folder in either layout (single person or a
view of a subject), scoring only some annotations, the absolute endpoint error, the per-row
person and view, and ``benchmarks/multiview_table.py``."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_people import FAST_PIPELINE
from test_eval import HEIGHT, RADIUS, _capsule, _case

from resihmr_dr.config import ResihmrConfig
from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.ldpose import NUM_KEYPOINTS
from resihmr_dr.data.records import PersonAnnotation
from resihmr_dr.eval.benchmark import ID_COLUMNS, evaluate, write_csv
from resihmr_dr.eval.groundtruth import GroundTruthError, load_ground_truth
from resihmr_dr.eval.prediction import PredictionError, find_person_folder
from resihmr_dr.eval.scores import LIMB_METRICS, score_prediction
from resihmr_dr.eval.synth import generate_dataset
from resihmr_dr.outputs import person_folder_name

REPO = Path(__file__).resolve().parents[1]


def _table_module():
    """benchmarks/multiview_table.py as a module (registered: its dataclasses need it)."""
    if "multiview_table" not in sys.modules:
        spec = importlib.util.spec_from_file_location("multiview_table", REPO / "benchmarks" / "multiview_table.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["multiview_table"]


# --------------------------------------------------------------------------- folders
def test_find_person_folder_in_either_layout(tmp_path):
    person = PersonAnnotation(ann_id=7, image_id=3, keypoints_px=np.zeros((NUM_KEYPOINTS, 3)), limb_status={})
    name = person_folder_name(person)  # the name `fit` writes
    flat, multi = tmp_path / "flat", tmp_path / "multi"
    (flat / name).mkdir(parents=True)
    (multi / "subject_p0002" / "views" / name).mkdir(parents=True)
    (multi / "subject_p0002" / "views" / "image4_ann8").mkdir()
    assert find_person_folder(flat, 3, 7) == flat / name
    assert find_person_folder(multi, 3, 7) == multi / "subject_p0002" / "views" / name
    assert find_person_folder(multi, 4, 8).name == "image4_ann8"
    with pytest.raises(PredictionError, match="no fitted folder image9_ann9"):
        find_person_folder(multi, 9, 9)
    (flat / "image5_ann5").write_text("not a folder")  # a file is not a person's folder
    with pytest.raises(PredictionError, match="no fitted folder"):
        find_person_folder(flat, 5, 5)


def test_find_person_folder_refuses_a_duplicate(tmp_path):
    (tmp_path / "image1_ann1").mkdir()
    (tmp_path / "subject_p0001" / "views" / "image1_ann1").mkdir(parents=True)
    with pytest.raises(PredictionError, match=r"2 fitted folders \(image1_ann1, subject_p0001/views/image1_ann1\)"):
        find_person_folder(tmp_path, 1, 1)
    (tmp_path / "image1_ann1").rmdir()
    (tmp_path / "subject_p0009" / "views" / "image1_ann1").mkdir(parents=True)  # two subjects claim it
    with pytest.raises(PredictionError, match="2 fitted folders"):
        find_person_folder(tmp_path, 1, 1)


# --------------------------------------------------------------------------- the absolute endpoint error
def test_endpoint_abs_err_keeps_the_offset_that_the_anchor_alignment_takes_out():
    assert "endpoint_abs_err_mm" in {key for key, _, _ in LIMB_METRICS}
    pred, gt, mask = _case(_capsule(radius=RADIUS, height=HEIGHT))
    (row,) = score_prediction(pred, gt, mask=mask, camera=gt.camera)
    assert row["endpoint_abs_err_mm"] == pytest.approx(0.0, abs=1e-6)
    shift = np.array([0.03, 0.0, 0.4])  # the whole fit 40 cm deeper and 3 cm aside: a depth error
    pred, gt, mask = _case(_capsule(radius=RADIUS, height=HEIGHT, shift=shift), joint_shift=shift)
    (row,) = score_prediction(pred, gt, mask=mask, camera=gt.camera)
    assert row["endpoint_err_mm"] == pytest.approx(0.0, abs=1e-6)  # anchor-aligned: the limb itself is right
    assert row["endpoint_abs_err_mm"] == pytest.approx(np.linalg.norm(shift) * 1000, abs=1e-6)
    extra = 0.04  # a longer stump at the right place: both see the 4 cm
    pred, gt, mask = _case(_capsule(radius=RADIUS, height=HEIGHT + extra))
    (row,) = score_prediction(pred, gt, mask=mask, camera=gt.camera)
    assert row["endpoint_abs_err_mm"] == pytest.approx(40.0, abs=1e-6) == row["endpoint_err_mm"]
    pred = dataclasses.replace(pred, limb_masks={})  # no such limb: NaN
    (row,) = score_prediction(pred, gt, mask=mask, camera=gt.camera)
    assert math.isnan(row["endpoint_abs_err_mm"])


# --------------------------------------------------------------------------- scoring some annotations
@pytest.fixture(scope="module")
def two_people_two_views(anny_body, tmp_path_factory):
    out = tmp_path_factory.mktemp("mv_synth")
    generate_dataset(out, count=2, seed=2, image_size=96, views=2, body=anny_body, progress=False)
    return out


def test_ann_ids_scores_only_those_annotations(anny_body, two_people_two_views, tmp_path):
    empty = tmp_path / "fit"
    empty.mkdir()
    result = evaluate(
        pred_dir=empty, gt_dir=two_people_two_views, body=anny_body, methods=("intact",), ann_ids=[3, 1], progress=False
    )
    assert result.people == 2 and not result.rows
    assert sorted(f["ann_id"] for f in result.failures) == [1, 3]  # nothing fitted: each fails alone
    assert all("no fitted folder" in f["reason"] for f in result.failures)
    with pytest.raises(ValueError, match=r"ann_id \[5, 99\]"):
        evaluate(pred_dir=empty, gt_dir=two_people_two_views, body=anny_body, ann_ids=[1, 5, 99], progress=False)
    assert "person_id" in ID_COLUMNS and "view" in ID_COLUMNS


def test_a_view_s_ground_truth_reads_back_and_a_bad_field_is_named(two_people_two_views, tmp_path):
    truth = load_ground_truth(two_people_two_views)
    assert [(truth[i].person_id, truth[i].view, truth[i].view_name) for i in (1, 2, 3, 4)] == [
        ("p0001", 0, "yaw000"),
        ("p0001", 1, "yaw090"),
        ("p0002", 0, "yaw000"),
        ("p0002", 1, "yaw090"),
    ]
    assert np.array_equal(truth[1].extrinsics.R, np.eye(3)) and not truth[3].extrinsics.t.any()
    for field, value in (("extrinsics", {"R": [[2, 0, 0], [0, 1, 0], [0, 0, 1]], "t": [0, 0, 0]}), ("view", "one")):
        bad = tmp_path / field
        shutil.copytree(two_people_two_views, bad)
        path = bad / "gt" / "000002_2" / "gt.json"
        data = json.loads(path.read_text())
        data[field] = value
        path.write_text(json.dumps(data))
        with pytest.raises(GroundTruthError, match=rf"000002_2/gt.json: field '{field}'"):
            load_ground_truth(bad)


def test_the_table_of_given_rows(tmp_path):
    table = _table_module()
    rows = [
        {"method": "ours", "ann_id": 1, **dict.fromkeys((k for k, _ in table.COLUMNS), 2.0)},
        {
            "method": "ours",
            "ann_id": 1,
            **dict.fromkeys((k for k, _ in table.COLUMNS), 4.0),
            "length_err_pct": math.nan,
        },
        {"method": "intact", "ann_id": 1, **dict.fromkeys((k for k, _ in table.COLUMNS), 100.0)},
    ]
    one = table.table_row("1view", tmp_path, rows, [{"method": "ours", "ann_id": 3, "reason": "no fitted folder"}])
    assert (one.people, one.limbs, one.failures) == (1, 2, {3: "no fitted folder"})
    assert one.means["endpoint_abs_err_mm"] == 3.0 and one.means["length_err_pct"] == 2.0  # NaN skipped
    two = table.table_row("2views", tmp_path, [dict(r, endpoint_abs_err_mm=1.0) for r in rows[:2]], [])
    text = table.markdown_table([one, two])
    lines = text.splitlines()
    assert lines[0].startswith("| fit | people | endpoint err, anchor-aligned (mm) | endpoint err, absolute (mm)")
    assert lines[2].startswith("| 1view | 1 | 3.0 | 3.0 |") and lines[3].startswith("| 2views | 1 | 3.0 | **1.0** |")
    table.write_table(tmp_path / "o", [one, two], synth="S", ann_ids=[1], command="cmd")
    doc = json.loads((tmp_path / "o" / "table.json").read_text())
    assert [f["label"] for f in doc["fits"]] == ["1view", "2views"] and doc["fits"][0]["failures"] == {
        "3": "no fitted folder"
    }
    assert (
        text in (tmp_path / "o" / "table.md").read_text()
        and "annotation 3: no fitted folder" in (tmp_path / "o" / "table.md").read_text()
    )


def test_the_table_rejects_bad_fits(tmp_path, two_people_two_views, capsys):
    table = _table_module()
    (tmp_path / "d").mkdir()
    for bad, message in (
        (["nolabel"], "expected LABEL=FOLDER"),
        (["=x"], "expected LABEL=FOLDER"),
        ([f"a={tmp_path / 'd'}", f"a={tmp_path / 'd'}"], "given twice"),
        ([f"a={tmp_path / 'nowhere'}"], "is not a folder"),
    ):
        with pytest.raises(ValueError, match=message):
            table.parse_fits(bad)
        code = table.main(["--synth", str(two_people_two_views), "--fits", *bad, "--out", str(tmp_path / "o")])
        assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- end to end (one fit)
@pytest.fixture(scope="module")
def fitted_view0(anny_body, tmp_path_factory):
    """One person seen twice; view 0 fitted and written as `fit` does, then laid out as a single
    person (``flat``) and as a view of its subject (``subject``)."""
    from resihmr_dr.batch import fit_dataset

    root = tmp_path_factory.mktemp("mv_fit")
    generate_dataset(
        root / "synth",
        count=1,
        seed=5,
        types="left_transtibial",
        image_size=128,
        views=2,
        body=anny_body,
        progress=False,
    )
    dataset = load_annotations(root / "synth" / "annotations.json")
    view0 = dataclasses.replace(dataset, people=dataset.people[:1])
    summary = fit_dataset(view0, body=anny_body, out_dir=root / "flat", config=FAST_PIPELINE, progress=False)
    assert summary.ok, summary.failures
    shutil.copytree(root / "flat" / "image1_ann1", root / "subject" / "subject_p0001" / "views" / "image1_ann1")
    return root


def test_rows_carry_the_person_and_view_and_the_table_scores_view_0(anny_body, fitted_view0, tmp_path, capsys):
    config = ResihmrConfig(fit=FAST_PIPELINE)
    scored = {}
    for layout in ("flat", "subject"):
        result = evaluate(
            pred_dir=fitted_view0 / layout,
            gt_dir=fitted_view0 / "synth",
            body=anny_body,
            config=config,
            methods=("ours",),
            progress=False,
        )
        assert [f["ann_id"] for f in result.failures] == [2]  # view 1 was not fitted
        assert {(r["ann_id"], r["person_id"], r["view"]) for r in result.rows} == {(1, "p0001", 0)}
        assert all(math.isfinite(r["endpoint_abs_err_mm"]) for r in result.rows)
        scored[layout] = result.rows
    for a, b in zip(scored["flat"], scored["subject"], strict=True):  # the same folder, found in either layout
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) for k in a)
    with open(write_csv(tmp_path / "eval.csv", scored["subject"])) as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["person_id"], row["view"]) == ("p0001", "0")

    table = _table_module()
    out = tmp_path / "table"
    fits = [f"1view={fitted_view0 / 'flat'}", f"2views={fitted_view0 / 'subject'}"]
    code = table.main(["--synth", str(fitted_view0 / "synth"), "--fits", *fits, "--out", str(out)], body=anny_body)
    assert code == 0, capsys.readouterr().err  # view 1 is not scored: no failure
    doc = json.loads((out / "table.json").read_text())
    assert doc["ann_ids"] == [1] and [f["people"] for f in doc["fits"]] == [1, 1]
    expected = np.mean([r["endpoint_abs_err_mm"] for r in scored["flat"]])
    assert doc["fits"][0]["means"]["endpoint_abs_err_mm"] == pytest.approx(expected)
    assert doc["fits"][0]["means"] == doc["fits"][1]["means"]
    printed = capsys.readouterr().out
    assert (
        "| 1view | 1 |" in printed and "| 2views | 1 |" in printed and printed.strip() in (out / "table.md").read_text()
    )
