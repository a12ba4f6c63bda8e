"""Lightning path of ``resihmr-dr fit``: module, data module and writer in one process, and the
real CLI with two DDP processes (gloo on CPU) writing every person exactly once."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import CSVLogger

import resihmr_dr
from resihmr_dr.config import load_config
from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.sample import sample_annotations_path
from resihmr_dr.failures import FAILURES_FILE, FailureStage
from resihmr_dr.jobs import plan_fit
from resihmr_dr.lightning import (
    PART_SUFFIX,
    LDposeDataModule,
    PeopleSampler,
    PersonWriter,
    ResihmrFitModule,
)
from resihmr_dr.outputs import OUTPUT_FILES

SAMPLE_DIR = sample_annotations_path().parent
FAST_YAML = """fit:
  intact:
    stages:
    - {{pose_prior: 404.0, shape_prior: 100.0, angle_limit: 300.0, iterations: 6}}
    - {{pose_prior: 4.78, shape_prior: 5.0, angle_limit: 50.0, iterations: 15}}
  refine: {{iterations: {refine}}}
"""


def write_dataset(folder: Path, *, n_people: int, missing_image_ids: tuple[int, ...] = ()) -> Path:
    """The built-in sample person ``n_people`` times (ann ids 1..n) with its nose and right wrist
    moved a few pixels per person; people in ``missing_image_ids`` get an image whose file is
    absent (a per-person load failure)."""
    doc = json.loads(sample_annotations_path().read_text())
    base, image = doc["annotations"][0], doc["images"][0]
    anns = []
    for i in range(n_people):
        kp = list(base["keypoints"])
        kp[0] += 2.0 * i  # nose x
        kp[10 * 3 + 1] += 1.5 * i  # right wrist y
        anns.append(dict(base, id=i + 1, keypoints=kp))
    images = [image]
    for ann in anns:
        if ann["id"] in missing_image_ids:
            images.append(dict(image, id=100 + ann["id"], file_name=f"missing{ann['id']}.png"))
            ann["image_id"] = 100 + ann["id"]
    doc["annotations"], doc["images"] = anns, images
    for name in ("image.png", "mask.png"):
        (folder / name).write_bytes((SAMPLE_DIR / name).read_bytes())
    path = folder / "people.json"
    path.write_text(json.dumps(doc))
    return path


def complete_folders(out: Path) -> list[str]:
    """Visible person folders, each checked complete with valid JSON."""
    names = []
    for entry in sorted(out.iterdir()):
        if entry.name.startswith(".") or entry.is_file():
            continue
        assert sorted(p.name for p in entry.iterdir()) == sorted(OUTPUT_FILES), entry
        for name in ("params.json", "metrics.json", "stump.json"):
            json.loads((entry / name).read_text())
        names.append(entry.name)
    return names


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 7])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_people_sampler_gives_each_person_to_exactly_one_rank(n, world):
    seen = []
    for rank in range(world):
        sampler = PeopleSampler(list(range(n)), num_replicas=world, rank=rank)
        assert len(sampler) == len(list(sampler))
        seen += list(sampler)
    assert sorted(seen) == list(range(n))  # no padding, no repeat, a rank may get nobody


def test_people_sampler_rejects_a_bad_rank():
    with pytest.raises(ValueError, match="rank 2 of 2"):
        PeopleSampler([1, 2, 3], num_replicas=2, rank=2)


def test_module_and_writer_in_one_process(anny_body, tmp_path):
    annotations = write_dataset(tmp_path, n_people=2, missing_image_ids=(2,))
    config_path = tmp_path / "fast.yaml"
    config_path.write_text(FAST_YAML.format(refine=2))
    config = load_config(config_path).fit
    out = tmp_path / "out"
    dataset = load_annotations(annotations, on_error="collect")
    data = LDposeDataModule(dataset, body=anny_body, out_dir=out)
    assert [job.person.ann_id for job in data.plan.todo] == [1, 2] and not data.plan.skipped

    writer = PersonWriter(out, plan=data.plan)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(str(tmp_path / "logs"), name="fit"),
        callbacks=[writer],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        inference_mode=False,
        default_root_dir=str(tmp_path / "logs"),
    )
    trainer.predict(ResihmrFitModule(anny_body, config), datamodule=data, return_predictions=False)

    summary = writer.summary
    assert summary is not None
    assert summary.written == ["image1_ann1"] and summary.skipped == []
    assert complete_folders(out) == ["image1_ann1"]
    assert [(f.ann_id, f.stage) for f in summary.failures] == [(2, FailureStage.LOAD)]
    assert "missing2.png" in summary.failures[0].reason
    assert json.loads((out / FAILURES_FILE).read_text()) == [f.to_dict() for f in summary.failures]
    assert not list(out.glob(f"*{PART_SUFFIX}"))

    # Per-stage losses in the CSV log: the intact stages and the refinement terms, per iteration.
    (metrics_csv,) = (tmp_path / "logs" / "fit").glob("version_*/metrics.csv")
    rows = list(csv.DictReader(metrics_csv.open()))
    columns = set(rows[0])
    assert {"person", "step", "refine/total", "refine/silhouette"} <= columns
    assert any(c.startswith("intact/") for c in columns)
    assert {row["person"] for row in rows} == {"0.0"}
    # One logger row per objective evaluation of the refinement (the stages' evaluations).
    stages = json.loads((out / "image1_ann1" / "params.json").read_text())["refinement"]["stages"]
    assert sum(1 for row in rows if row["refine/total"]) == sum(stage["evaluations"] for stage in stages) > 0

    # A second plan skips the finished person (and keeps the load failure); overwrite refits it.
    again = plan_fit(load_annotations(annotations, on_error="collect"), out_dir=out, overwrite=False)
    assert again.skipped == ("image1_ann1",) and [job.person.ann_id for job in again.todo] == [2]
    everything = plan_fit(load_annotations(annotations, on_error="collect"), out_dir=out, overwrite=True)
    assert [job.person.ann_id for job in everything.todo] == [1, 2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    src = str(Path(resihmr_dr.__file__).resolve().parents[1])  # this checkout's package, in every rank
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), PYTHONUNBUFFERED="1")
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "resihmr_dr.cli", "fit", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
def test_fit_with_two_ddp_processes_writes_every_person_exactly_once(tmp_path):
    annotations = write_dataset(tmp_path, n_people=3)
    config = tmp_path / "fast.yaml"
    config.write_text(FAST_YAML.format(refine=0))
    out = tmp_path / "out"
    common = (
        "--annotations",
        str(annotations),
        "--out",
        str(out),
        "--config",
        str(config),
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
    )
    proc = _cli(*common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in proc.stderr  # two processes really ran
    assert "3 fitted, 0 skipped" in proc.stdout
    assert proc.stdout.count("fitted,") == 1  # only rank 0 reports
    assert complete_folders(out) == ["image1_ann1", "image1_ann2", "image1_ann3"]
    assert not (out / FAILURES_FILE).exists()
    assert not list(out.glob(".*partial-*"))  # no rank part, no partial folder left
    # Each person's losses were logged once (rank 1's by rank 0 at the end).
    (metrics_csv,) = (out / ".logs" / "fit").glob("version_*/metrics.csv")
    persons = [row["person"] for row in csv.DictReader(metrics_csv.open())]
    assert sorted(set(persons)) == ["0.0", "1.0", "2.0"]
    assert len({persons.count(p) for p in set(persons)}) == 1  # same number of rows each: no duplicate

    # A rerun skips everyone without starting any process.
    again = _cli(*common)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 fitted, 3 skipped" in again.stdout and "GLOBAL_RANK" not in again.stderr


def test_bad_lightning_options_are_exit_code_2(tmp_path, capsys):
    from resihmr_dr.cli import main

    annotations = write_dataset(tmp_path, n_people=1)
    common = ["fit", "--annotations", str(annotations), "--out", str(tmp_path / "out")]
    assert main([*common, "--strategy", "no_such_strategy"]) == 2
    assert "--strategy" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("image*"))
    for flag, value in (("--devices", "0"), ("--devices", "two"), ("--num-nodes", "0")):
        with pytest.raises(SystemExit) as exc:
            main([*common, flag, value])
        assert exc.value.code == 2
