"""The per-person jobs both drivers run (``resihmr_dr.jobs``), their failure records
(``resihmr_dr.failures``) and the typed metrics of a fit (``fit.fit_metrics``, ``fit.quality``),
without fitting anyone: plans over hand-made folders, each step's failure, the Lightning parts'
merge, and the records' dicts (the keys and order of failures.json and metrics.json)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.sample import sample_annotations_path
from resihmr_dr.failures import FAILURES_FILE, Failure, FailureStage, write_failures
from resihmr_dr.fit.fit_metrics import FitMetrics, RefinementMetrics
from resihmr_dr.fit.pipeline import PipelineConfig
from resihmr_dr.fit.quality import Quality
from resihmr_dr.jobs import (
    FitPlan,
    Job,
    JobLog,
    JobResult,
    fit_job,
    load_job,
    plan_fit,
    run_one,
    write_job,
)
from resihmr_dr.lightning import PersonWriter, RankPart, part_path
from resihmr_dr.outputs import KEYPOINT_RESULTS_FILE, OUTPUT_FILES, provenance

SAMPLE_DIR = sample_annotations_path().parent


def people_file(folder: Path, n_people: int, *, missing_image_ids: tuple[int, ...] = (), bad_ids=()) -> Path:
    """The built-in sample's person ``n_people`` times (ann ids 1..n); ``missing_image_ids``: people
    whose image file is absent; ``bad_ids``: people whose keypoints the file cannot parse."""
    doc = json.loads(sample_annotations_path().read_text())
    base, image = doc["annotations"][0], doc["images"][0]
    anns = [dict(base, id=i + 1) for i in range(n_people)]
    images = [image]
    for ann in anns:
        if ann["id"] in missing_image_ids:
            images.append(dict(image, id=100 + ann["id"], file_name=f"missing{ann['id']}.png"))
            ann["image_id"] = 100 + ann["id"]
        if ann["id"] in bad_ids:
            ann["keypoints"] = ann["keypoints"][:72]
    doc["annotations"], doc["images"] = anns, images
    for name in ("image.png", "mask.png"):
        (folder / name).write_bytes((SAMPLE_DIR / name).read_bytes())
    path = folder / "people.json"
    path.write_text(json.dumps(doc))
    return path


def finished_folder(
    folder: Path,
    *,
    quality: dict | None = None,
    config: PipelineConfig | None = None,
    body_name: str = "anny",
    body_gender: str | None = None,
) -> None:
    """A person folder with every output file (contents only where the plan reads them)."""
    folder.mkdir(parents=True)
    for name in OUTPUT_FILES:
        (folder / name).write_text("{}")
    (folder / "metrics.json").write_text(json.dumps({"quality": quality} if quality is not None else {}))
    if config is not None:
        record = provenance(config, body_name=body_name, body_gender=body_gender)
        (folder / "params.json").write_text(json.dumps({"provenance": record}))


# --------------------------------------------------------------------------- records
def test_failure_dicts_have_the_keys_of_failures_json_in_order(tmp_path):
    dataset = load_annotations(people_file(tmp_path, 2, bad_ids=(2,)), on_error="collect")
    (error,) = dataset.errors
    person = dataset.people[0]
    load = Failure.from_load_error(error)
    assert load.to_dict() == {"ann_id": 2, "image_id": error.image_id, "stage": "load", "reason": str(error)}
    assert list(load.to_dict()) == ["ann_id", "image_id", "stage", "reason"]
    try:
        raise DataError("no such image")
    except DataError as err:
        raised = Failure.from_exception(person, stage=FailureStage.LOAD, err=err)
    record = raised.to_dict()
    assert list(record) == ["ann_id", "image_id", "folder", "stage", "reason", "traceback"]
    assert record["folder"] == "image1_ann1" and record["reason"] == "DataError: no such image"
    assert record["traceback"].startswith("Traceback") and "no such image" in record["traceback"]
    quality = Failure.from_quality(person, ("a", "b")).to_dict()
    assert list(quality) == ["ann_id", "image_id", "folder", "stage", "reason", "problems"]
    assert quality["reason"] == "fit did not converge: a; b (folder written for inspection)"
    assert quality["problems"] == ["a", "b"] and quality["stage"] == "quality"
    assert Failure.from_quality(person, []).problems == ("quality check failed",)
    for failure in (load, raised, Failure.from_quality(person, ("a",))):
        assert Failure.from_dict(json.loads(json.dumps(failure.to_dict()))) == failure

    write_failures(tmp_path, [load, raised])
    assert json.loads((tmp_path / FAILURES_FILE).read_text()) == [load.to_dict(), raised.to_dict()]
    write_failures(tmp_path, [])
    assert not (tmp_path / FAILURES_FILE).exists()


def test_fit_metrics_dict_has_the_keys_of_metrics_json_in_order():
    quality = Quality(ok=False, problems=("x",), keypoint_error_px=2.5, keypoint_threshold_px=3.0)
    assert quality.to_dict() == {"ok": False, "problems": ["x"], "keypoint_error_px": 2.5, "keypoint_threshold_px": 3.0}
    assert list(quality.to_dict()) == ["ok", "problems", "keypoint_error_px", "keypoint_threshold_px"]
    refinement = RefinementMetrics(iterations=7, recuts=1, stop_reasons=("ftol",), depth_drift_m=0.01, seconds=2.0)
    full = FitMetrics(
        body_px=1.0,
        res_limb_px=2.0,
        intact_px=0.5,
        mask_iou=0.9,
        intact_fit_converged=True,
        rafo_accepted=(True, False),
        refinement=refinement,
        quality=quality,
    ).to_dict()
    assert list(full) == [
        "body",
        "res_limb",
        "intact",
        "mask_iou",
        "intact_fit_converged",
        "rafo_accepted",
        "refinement",
        "quality",
    ]
    assert full["rafo_accepted"] == [True, False] and full["quality"] == quality.to_dict()
    assert full["refinement"] == {
        "iterations": 7,
        "recuts": 1,
        "stop_reasons": ["ftol"],
        "depth_drift_m": 0.01,
        "seconds": 2.0,
    }
    bare = FitMetrics(
        body_px=math.nan,
        res_limb_px=math.nan,
        intact_px=1.0,
        mask_iou=None,
        intact_fit_converged=False,
        rafo_accepted=(),
        refinement=None,
        quality=quality,
    ).to_dict()
    assert list(bare) == ["body", "res_limb", "intact", "intact_fit_converged", "rafo_accepted", "quality"]


# --------------------------------------------------------------------------- the plan
def test_plan_skips_finished_folders_and_keeps_flagged_ones_as_failures(tmp_path):
    dataset = load_annotations(people_file(tmp_path, 5, bad_ids=(5,)), on_error="collect")
    out = tmp_path / "out"
    config = PipelineConfig()
    finished_folder(out / "image1_ann1", quality={"ok": True}, config=config)
    finished_folder(out / "image1_ann2", quality={"ok": False, "problems": ["too far"]}, config=config)
    finished_folder(out / "image1_ann3", quality={"ok": True}, config=PipelineConfig(seed=1))  # other settings
    (out / "image1_ann4").mkdir()  # incomplete
    plan = plan_fit(dataset, out_dir=out, overwrite=False, fit_config=config, body_name="anny")
    assert [job.folder for job in plan.todo] == ["image1_ann3", "image1_ann4"]
    assert [job.position for job in plan.todo] == [2, 3]
    assert plan.skipped == ("image1_ann1", "image1_ann2")
    assert [(position, f.ann_id, f.stage) for position, f in plan.failures] == [
        (-1, 5, FailureStage.LOAD),
        (1, 2, FailureStage.QUALITY),
    ]
    assert plan.failures[1][1].problems == ("too far",)
    assert plan.people == tuple(dataset.people) and plan.category_id == 1
    # Without the settings the provenance is not checked; with overwrite everyone is fitted again.
    unchecked = plan_fit(dataset, out_dir=out, overwrite=False)
    assert [job.folder for job in unchecked.todo] == ["image1_ann4"]
    everyone = plan_fit(dataset, out_dir=out, overwrite=True, fit_config=config, body_name="anny")
    assert [job.position for job in everyone.todo] == [0, 1, 2, 3] and everyone.skipped == ()
    assert [f.stage for _, f in everyone.failures] == [FailureStage.LOAD]


def test_a_folder_of_another_smplx_gender_is_fitted_again(tmp_path):
    """Provenance compares the body model's gender: a neutral SMPL-X folder is not a female fit."""
    dataset = load_annotations(people_file(tmp_path, 3), on_error="collect")
    out = tmp_path / "out"
    config = PipelineConfig()
    finished_folder(out / "image1_ann1", config=config, body_name="smplx", body_gender="female")
    finished_folder(out / "image1_ann2", config=config, body_name="smplx", body_gender="neutral")
    finished_folder(out / "image1_ann3", config=config, body_name="smplx")
    old = json.loads((out / "image1_ann3" / "params.json").read_text())
    del old["provenance"]["body_gender"]  # written before the gender was recorded
    (out / "image1_ann3" / "params.json").write_text(json.dumps(old))
    plan = plan_fit(dataset, out_dir=out, overwrite=False, fit_config=config, body_name="smplx", body_gender="female")
    assert plan.skipped == ("image1_ann1",)
    assert [job.folder for job in plan.todo] == ["image1_ann2", "image1_ann3"]
    neutral = plan_fit(
        dataset, out_dir=out, overwrite=False, fit_config=config, body_name="smplx", body_gender="neutral"
    )
    assert neutral.skipped == ("image1_ann2",)


def test_summary_orders_failures_as_the_annotation_file(tmp_path):
    dataset = load_annotations(people_file(tmp_path, 3, bad_ids=(3,)), on_error="collect")
    a, b = dataset.people
    plan = FitPlan(
        todo=(Job(0, a),),
        skipped=("image1_ann2",),
        failures=((-1, Failure.from_load_error(dataset.errors[0])), (1, Failure.from_quality(b, ("q",)))),
        people=(a, b),
    )
    log = JobLog()
    log.add(JobResult(job=Job(0, a), written=True, failure=Failure.from_quality(a, ("p",))))
    summary = plan.summary(log)
    assert summary.written == ["image1_ann1"] and summary.skipped == ["image1_ann2"] and not summary.ok
    assert [(f.ann_id, f.stage) for f in summary.failures] == [
        (3, FailureStage.LOAD),
        (1, FailureStage.QUALITY),
        (2, FailureStage.QUALITY),
    ]


# --------------------------------------------------------------------------- the steps
def test_each_step_turns_an_exception_into_one_failure_of_its_stage(tmp_path, monkeypatch):
    from resihmr_dr import jobs

    dataset = load_annotations(people_file(tmp_path, 2, missing_image_ids=(2,)), on_error="collect")
    good, missing = (Job(i, p) for i, p in enumerate(dataset.people))
    lost = load_job(missing, dataset=dataset, body=None)  # body: only for initial fits (none here)
    assert lost.inputs is None and lost.failure.stage == FailureStage.LOAD and "missing2.png" in lost.failure.reason
    assert lost.failure.folder == "image102_ann2" and "load_person" in lost.failure.traceback
    assert fit_job(lost, body=None, config=PipelineConfig()) is lost  # a failed job is passed on untouched
    assert write_job(lost, out_dir=tmp_path) is lost

    stages: list[str] = []
    loaded = load_job(good, dataset=dataset, body=None, on_stage=stages.append)
    assert loaded.failure is None and loaded.inputs.image_rgb.ndim == 3 and stages == ["load"]

    def broken(**kwargs):
        raise TypeError("a bug in a stage")

    monkeypatch.setattr(jobs, "fit_person", broken)
    unfitted = fit_job(loaded, body=None, config=PipelineConfig())
    assert unfitted.fit is None and unfitted.failure.stage == FailureStage.FIT
    assert unfitted.failure.reason == "TypeError: a bug in a stage"
    ran = run_one(good, dataset=dataset, body=None, config=PipelineConfig(), out_dir=tmp_path)
    assert ran.failure.to_dict() | {"traceback": ""} == unfitted.failure.to_dict() | {"traceback": ""}

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(jobs, "write_person", disk_full)
    fitted = JobResult(job=good, inputs=loaded.inputs, fit=object())  # the writer is stubbed: any fit
    unwritten = write_job(fitted, out_dir=tmp_path, on_stage=stages.append)
    assert not unwritten.written and unwritten.failure.stage == FailureStage.WRITE and stages[-1] == "write"
    assert unwritten.failure.reason == "OSError: disk full"


def test_rank_parts_merge_into_one_summary(tmp_path):
    dataset = load_annotations(people_file(tmp_path, 4, bad_ids=(4,)), on_error="collect")
    out = tmp_path / "out"
    out.mkdir()
    plan = plan_fit(dataset, out_dir=out, overwrite=False)
    p1, p2, p3 = dataset.people
    parts = {
        0: RankPart(written=((0, "image1_ann1"),), failures=((2, Failure.from_quality(p3, ("q",))),)),
        1: RankPart(
            written=((0, "image1_ann1"), (2, "image1_ann3")),  # a repeated person: counted once
            failures=((1, Failure.from_exception(p2, stage=FailureStage.FIT, err=ValueError("v"))),),
            rows=((0, {"person": 1.0, "intact/stage0": 3.0}),),
        ),
    }
    for rank, part in parts.items():
        assert RankPart.from_dict(json.loads(json.dumps(part.to_dict()))) == part
        part_path(out, rank).write_text(json.dumps(part.to_dict()))
    summary = PersonWriter(out, plan=plan).merge(world_size=2)
    assert summary.written == ["image1_ann1", "image1_ann3"] and summary.skipped == []
    assert [(f.ann_id, f.stage) for f in summary.failures] == [
        (4, FailureStage.LOAD),
        (2, FailureStage.FIT),
        (3, FailureStage.QUALITY),
    ]
    assert json.loads((out / FAILURES_FILE).read_text()) == [f.to_dict() for f in summary.failures]
    assert json.loads((out / KEYPOINT_RESULTS_FILE).read_text()) == []  # no folder is complete
    assert not list(out.glob(".rank*"))


@pytest.mark.parametrize("overwrite", [False, True])
def test_plan_of_an_empty_folder_fits_everyone(tmp_path, overwrite):
    dataset = load_annotations(people_file(tmp_path, 2), on_error="collect")
    plan = plan_fit(dataset, out_dir=tmp_path / "absent", overwrite=overwrite)
    assert [job.folder for job in plan.todo] == ["image1_ann1", "image1_ann2"] and plan.failures == ()
