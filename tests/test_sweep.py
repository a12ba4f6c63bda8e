"""Ablation sweep: config expansion, a tiny mask-weight sweep on a generated person with ground
truth (files, one table row per value, finite metrics), and weight 0 == refinement disabled."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
from pathlib import Path

import pytest
from synthetic_people import FAST_PIPELINE as FAST

from resihmr_dr.camera import PinholeCamera
from resihmr_dr.config import ConfigError, ResihmrConfig
from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.eval.groundtruth import load_ground_truth
from resihmr_dr.eval.sweep import (
    METRICS,
    SweepSpec,
    apply_override,
    expand_sweep,
    load_sweep,
    person_metrics,
    run_sweep,
    write_outputs,
)
from resihmr_dr.eval.sweep_cli import add_sweep_parser
from resihmr_dr.eval.synth import generate_dataset
from resihmr_dr.fit.pipeline import fit_person

REPO = Path(__file__).resolve().parents[1]
KEYS = ("fit.refine.weights.silhouette", "fit.refine.weights.stump_silhouette")


def test_shipped_sweep_expands_to_valid_configs():
    spec = load_sweep(REPO / "configs" / "ablations" / "mask_weight.yaml")
    assert spec.keys == KEYS and spec.values[0] == 0.0 and len(spec.values) >= 4
    configs = expand_sweep(spec, ResihmrConfig())
    assert [v for v, _ in configs] == list(spec.values)
    for value, config in configs:
        w = config.fit.refine.weights
        assert w.silhouette == value and w.stump_silhouette == value
        assert w.keypoints == ResihmrConfig().fit.refine.weights.keypoints  # the rest untouched
        assert config.fit.refine.enabled == (value > 0)
    iterations = load_sweep(REPO / "configs" / "ablations" / "refine_iterations.yaml")
    configs = expand_sweep(iterations, ResihmrConfig())  # integer values for an integer key
    assert [c.fit.refine.iterations for _, c in configs] == [0, 10, 30, 60, 100, 200]
    assert not configs[0][1].fit.refine.enabled and configs[-1][1].fit.refine.enabled


def test_bad_sweeps_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key"):
        apply_override(ResihmrConfig(), key="fit.refine.weights.silhuette", value=1.0)
    with pytest.raises(ConfigError, match="section"):
        apply_override(ResihmrConfig(), key="fit.refine.weights", value=1.0)
    with pytest.raises(ConfigError, match="must be finite and >= 0"):
        expand_sweep(SweepSpec("w", KEYS[:1], (-1.0,)), ResihmrConfig())
    bad = tmp_path / "bad.yaml"
    bad.write_text("keys: [fit.seed]\nvalues: [1, one]\n")
    with pytest.raises(ConfigError, match="finite numbers"):
        load_sweep(bad)
    bad.write_text("keys: [fit.seed]\nvalues: [1]\nvalue: 2\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_sweep(bad)
    with pytest.raises(ConfigError, match="duplicate"):
        SweepSpec("w", KEYS, (1.0, 1.0))


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory, anny_body):
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(
        out, count=1, seed=1, types="transtibial,transfemoral", image_size=192, body=anny_body, progress=False
    )
    return out


def test_mask_weight_sweep_writes_table_and_weight_zero_is_the_convex_cap(anny_body, synth_dir, tmp_path):
    spec = SweepSpec("mask_weight", KEYS, (0.0, 1.0))
    partial = tmp_path / "partial.csv"
    result = run_sweep(
        data_dir=synth_dir, spec=spec, base=ResihmrConfig(fit=FAST), body=anny_body, progress=False, partial_csv=partial
    )
    assert not result.failures
    with open(partial) as fh:
        assert len(list(csv.DictReader(fh))) == 2
    assert [r["value"] for r in result.rows] == [0.0, 1.0]
    for row in result.rows:
        for key, _, _ in METRICS:
            assert math.isfinite(row[key]), (key, row)
        assert 0.5 < row["mask_iou"] <= 1.0 and 0.0 < row["stump_iou"] <= 1.0
        assert row["stump_dist_mean_mm"] <= row["stump_dist_p95_mm"]

    paths = write_outputs(tmp_path / "out", result)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    with open(paths["csv"]) as fh:
        assert len(list(csv.DictReader(fh))) == 2
    table = [line for line in paths["md"].read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 2  # header + one row per weight
    assert table[1].startswith("| 0 |") and table[2].startswith("| 1 |")

    # Weight 0 is exactly a pipeline run with the refinement disabled (the paper's convex cap).
    dataset = load_annotations(synth_dir / "annotations.json")
    (person,) = dataset.people
    mask = dataset.mask(person)
    off = dataclasses.replace(FAST, refine=dataclasses.replace(FAST.refine, iterations=0))
    fit = fit_person(
        body=anny_body, person=person, camera=PinholeCamera.for_image(dataset.image_of(person)), mask=mask, config=off
    )
    assert fit.refinement is None
    reference = person_metrics(fit=fit, gt=load_ground_truth(synth_dir)[person.ann_id], mask=mask, body=anny_body)
    for key, _, _ in METRICS:
        assert result.rows[0][key] == pytest.approx(reference[key], rel=1e-9, abs=1e-9), key
    # ... and weight 1 did refine the cap (the mesh changed, so some stump metric moved).
    assert any(
        abs(result.rows[1][k] - reference[k]) > 1e-6 for k in ("stump_iou", "stump_dist_mean_mm", "volume_err_pct")
    )


def test_cli_rejects_bad_input(tmp_path, synth_dir, capsys):
    parser = argparse.ArgumentParser()
    add_sweep_parser(parser.add_subparsers())
    bad = tmp_path / "bad.yaml"
    bad.write_text("keys: [fit.refine.weights.nope]\nvalues: [0, 1]\n")
    args = parser.parse_args(["sweep", "--data", str(synth_dir), "--sweep", str(bad), "--out", str(tmp_path / "o")])
    assert args.func(args) == 2
    assert "unknown config key" in capsys.readouterr().err
    args = parser.parse_args(
        [
            "sweep",
            "--data",
            str(tmp_path),
            "--sweep",
            str(REPO / "configs/ablations/mask_weight.yaml"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert args.func(args) == 2
    assert "resihmr-dr synth" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_plot_eval_sweep_script_draws_the_swept_rows(tmp_path):
    """scripts/plot_eval_sweep.py reads eval --sweep's eval.csv (rows ours[KEY=VALUE]) and writes
    a figure; a CSV without sweep rows is a clear error."""
    import subprocess
    import sys

    header = "method,ann_id,limb,mask_iou,stump_iou,tip_reproj_px,length_err_pct,shape_local_mean_mm,shape_icp_mean_mm"
    lines = [header]
    for method in ("resihmr", "ours[mask_weight=0]", "ours[mask_weight=1]"):
        for ann in (1, 2):
            lines.append(f"{method},{ann},left_leg,0.9,0.9,2.0,5.0,7.0,4.0")
    csv_path = tmp_path / "eval.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    script = REPO / "scripts" / "plot_eval_sweep.py"
    out = tmp_path / "sweep.png"
    done = subprocess.run([sys.executable, str(script), str(csv_path), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 10_000
    csv_path.write_text("\n".join(lines[:3]) + "\n")
    done = subprocess.run([sys.executable, str(script), str(csv_path), str(out)], capture_output=True, text=True)
    assert done.returncode != 0 and "no rows of a sweep" in done.stderr
