"""The command-line interface: help texts, the demo on the built-in sample, validate, errors."""

from __future__ import annotations

import json

import pytest
import torch

from resihmr_dr.atomic import atomic_directory
from resihmr_dr.cli import main
from resihmr_dr.data.sample import sample_annotations_path
from resihmr_dr.outputs import OUTPUT_FILES


def test_help_explains_each_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "demo" in text and "validate" in text and "limb loss" in text
    for command in ("demo", "validate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        sub_help = capsys.readouterr().out
        assert f"usage: resihmr-dr {command}" in sub_help


def test_demo_help_mentions_body_flags(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert "--body" in text and "--smplx-dir" in text and "--out" in text


def test_demo_fits_the_sample_and_writes_every_output(anny_body, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    folder = out / "image1_ann1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES)
    params = json.loads((folder / "params.json").read_text())
    assert params["body_model"] == "anny"
    (limb,) = params["residual_limbs"]
    assert limb["limb"] == "left_leg" and limb["type"] == "transtibial" and limb["rafo"]["accepted"]
    assert abs(limb["lambda"] - 0.45) < 0.06  # the sample was made at lambda = 0.45
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["body"] < 5.0 and metrics["mask_iou"] > 0.85
    import trimesh

    mesh = trimesh.load(folder / "mesh.ply", process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert "residual length" in capsys.readouterr().out
    assert not list(out.glob(".*partial*"))


def test_validate_reports_good_and_bad_people(tmp_path, capsys):
    doc = json.loads(sample_annotations_path().read_text())
    bad = dict(doc["annotations"][0], id=2)
    bad["keypoints"] = bad["keypoints"][:-3]  # 24 keypoints
    doc["annotations"].append(bad)
    for name in ("image.png", "mask.png"):
        (tmp_path / name).write_bytes((sample_annotations_path().parent / name).read_bytes())
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    assert main(["validate", "--annotations", str(path)]) == 1
    captured = capsys.readouterr()
    assert "ok   annotation 1" in captured.out and "left_leg=transtibial" in captured.out
    assert "ann.json" in captured.err and "annotation 2" in captured.err and "keypoints" in captured.err


def test_malformed_file_is_a_clear_error_with_exit_code_2(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    assert main(["validate", "--annotations", str(path)]) == 2
    assert "broken.json" in capsys.readouterr().err


def test_unknown_smplx_folder_is_a_clear_error(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "o"), "--body", "smplx", "--smplx-dir", str(tmp_path / "nope")])
    assert code == 2
    err = capsys.readouterr().err
    assert "SMPL-X" in err or "smplx" in err.lower()
    assert not (tmp_path / "o").exists()


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as tmp:
            (tmp / "half.json").write_text("{")
            raise RuntimeError("crash mid-write")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("1")
    with atomic_directory(final) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]


def test_validate_reports_an_undecodable_mask_and_goes_on(tmp_path, capsys):
    doc = json.loads(sample_annotations_path().read_text())
    second = dict(doc["annotations"][0], id=2, mask_path="broken.png")
    doc["annotations"].insert(0, second)  # the broken one comes first
    for name in ("image.png", "mask.png"):
        (tmp_path / name).write_bytes((sample_annotations_path().parent / name).read_bytes())
    (tmp_path / "broken.png").write_bytes((sample_annotations_path().parent / "mask.png").read_bytes()[:60])
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    assert main(["validate", "--annotations", str(path)]) == 1
    captured = capsys.readouterr()
    assert "ok   annotation 1" in captured.out and "1 valid, 1 invalid" in captured.out
    assert "annotation 2" in captured.err and "broken.png" in captured.err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_device_without_gpu_is_a_one_line_error(tmp_path, capsys):
    assert main(["demo", "--device", "cuda", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("error: device 'cuda' requested but no CUDA GPU")
        and "--device cpu" in err[0]
    )
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- --config / --set on every command
def _write_base_config(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("fit:\n  refine:\n    iterations: 40\n  seed: 3\n")
    return base


def _assert_resolved(config):
    """``_write_base_config`` with ``--set fit.refine.iterations=7 --set output.units=mm`` on top."""
    assert config.fit.refine.iterations == 7 and config.fit.seed == 3 and config.output.units == "mm"


SET_ARGS = ["--set", "fit.refine.iterations=7", "--set", "output.units=mm"]


def test_eval_applies_set_overrides_and_records_them_in_its_command_line(tmp_path, monkeypatch, capsys):
    import types

    from resihmr_dr.eval import benchmark

    seen = {}

    def fake_evaluate(*, config, **kwargs):
        seen["config"] = config
        return types.SimpleNamespace(seconds=0.0, failures=[])

    def fake_write_outputs(out, result, *, command):
        seen["command"] = command
        md = tmp_path / "eval.md"
        md.write_text("table\n")
        return {"md": md}

    monkeypatch.setattr(benchmark, "evaluate", fake_evaluate)
    monkeypatch.setattr(benchmark, "write_outputs", fake_write_outputs)
    base = _write_base_config(tmp_path)
    argv = ["eval", "--pred", str(tmp_path / "p"), "--gt", str(tmp_path / "g"), "--config", str(base), *SET_ARGS]
    assert main(argv) == 0
    _assert_resolved(seen["config"])
    assert f"--config {base} --set fit.refine.iterations=7 --set output.units=mm" in seen["command"]


def test_sweep_applies_set_overrides_to_its_base_config(tmp_path, monkeypatch, capsys):
    import types

    from resihmr_dr.eval import sweep

    seen = {}

    def fake_run_sweep(*, base, **kwargs):
        seen["base"] = base
        return types.SimpleNamespace(seconds=0.0)

    def fake_write_outputs(out, result):
        md = tmp_path / "sweep.md"
        md.write_text("table\n")
        return {"md": md}

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    monkeypatch.setattr(sweep, "write_outputs", fake_write_outputs)
    data = tmp_path / "synth"
    (data / "gt").mkdir(parents=True)
    (data / "gt" / "index.json").write_text("[]")
    spec = tmp_path / "spec.yaml"
    spec.write_text("keys: [fit.refine.weights.silhouette]\nvalues: [0, 1]\n")
    base = _write_base_config(tmp_path)
    argv = ["sweep", "--data", str(data), "--sweep", str(spec), "--out", str(tmp_path / "o"), "--config", str(base)]
    assert main([*argv, *SET_ARGS]) == 0
    _assert_resolved(seen["base"])


@pytest.mark.parametrize(
    "command",
    [
        ["print-config"],
        ["demo", "--out", "OUT"],
        ["fit", "--annotations", "ANNOTATIONS", "--out", "OUT"],
        ["eval", "--pred", "PRED", "--gt", "GT", "--out", "OUT"],
        ["sweep", "--data", "GT", "--sweep", "SPEC", "--out", "OUT"],
    ],
    ids=lambda command: command[0],
)
@pytest.mark.parametrize(
    "item,needle",
    [
        ("fit.refine.iteratons=80", "unknown config key 'fit.refine.iteratons'"),
        ("fit.refine.iterations=eighty", "fit.refine.iterations: expected int"),
        ("output.units=inch", "output.units must be one of m, mm, got 'inch'"),
    ],
)
def test_a_bad_set_override_is_exit_2_naming_the_key_on_every_command(command, item, needle, tmp_path, capsys):
    """The override is resolved before anything is read, fitted or written."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("keys: [fit.refine.weights.silhouette]\nvalues: [0, 1]\n")
    paths = {
        "OUT": tmp_path / "out",
        "ANNOTATIONS": sample_annotations_path(),
        "PRED": tmp_path,
        "GT": tmp_path,
        "SPEC": spec,
    }
    argv = [str(paths.get(word, word)) for word in command]
    assert main([*argv, "--set", "fit.seed=1", "--set", item]) == 2
    err = capsys.readouterr().err
    assert f"error: --set {item!r}" in err and needle in err
    assert not (tmp_path / "out").exists()
