"""Configuration files: defaults, overrides, and errors naming the file and key."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import pytest

from resihmr_dr import config as config_module
from resihmr_dr.cli import main
from resihmr_dr.config import DEFAULT_CONFIG_PATH, ConfigError, ResihmrConfig, load_config
from resihmr_dr.render.silhouette import SilhouetteConfig

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def test_shipped_default_matches_code_defaults():
    assert load_config(DEFAULT) == ResihmrConfig()
    assert load_config(None) == ResihmrConfig()


def test_the_packaged_default_is_a_byte_identical_copy_of_configs_default_yaml():
    """Edit configs/default.yaml and src/resihmr_dr/assets/default.yaml together (cp one to the other)."""
    assert DEFAULT_CONFIG_PATH == Path(config_module.__file__).parent / "assets" / "default.yaml"
    assert DEFAULT_CONFIG_PATH.read_bytes() == DEFAULT.read_bytes(), (
        f"{DEFAULT_CONFIG_PATH} differs from {DEFAULT}: copy the edited one over the other"
    )


def test_the_packaged_default_is_package_data():
    """pyproject.toml's package-data patterns (setuptools globs, relative to the package) include it,
    so a wheel or a non-editable install carries it."""
    import glob

    import tomllib

    root = DEFAULT.parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["resihmr_dr"]
    package = DEFAULT_CONFIG_PATH.parent.parent
    matched = {m for pattern in patterns for m in glob.glob(pattern, root_dir=package, recursive=True)}
    assert DEFAULT_CONFIG_PATH.relative_to(package).as_posix() in matched


def test_without_config_every_command_reads_the_packaged_default(tmp_path, monkeypatch, capsys):
    """load_config(None), print-config, and the fallbacks of the benchmark and the sweep read
    DEFAULT_CONFIG_PATH (not the code's defaults)."""
    from resihmr_dr.eval import benchmark, sweep

    packaged = tmp_path / "default.yaml"
    packaged.write_text(
        DEFAULT.read_text().replace("    iterations: 100\n    ftol: 0.0001", "    iterations: 77\n    ftol: 0.0001")
    )
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", packaged)
    assert load_config(None).fit.refine.iterations == 77
    assert main(["print-config"]) == 0
    assert load_config_text(tmp_path, capsys.readouterr().out).fit.refine.iterations == 77
    # The eval and sweep functions called without a config (their first config use raises here).
    seen = []

    def record(spec, base):
        seen.append(base.fit.refine.iterations)
        raise ConfigError("stop")

    monkeypatch.setattr(sweep, "expand_sweep", record)  # benchmark.evaluate imports it from there
    monkeypatch.setattr(benchmark, "load_ground_truth", lambda gt_dir: {1: "truth"})
    monkeypatch.setattr(benchmark, "load_annotations", lambda path: types.SimpleNamespace(people=[PERSON_1]))
    with pytest.raises(ConfigError, match="stop"):
        benchmark.evaluate(pred_dir=tmp_path, gt_dir=tmp_path, sweep="a sweep", progress=False)
    with pytest.raises(ConfigError, match="stop"):
        sweep.run_sweep(data_dir=tmp_path, spec="a sweep", progress=False)
    assert seen == [77, 77]


def test_a_missing_packaged_default_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "gone.yaml")
    assert main(["print-config"]) == 2
    err = capsys.readouterr().err
    assert "default configuration is missing" in err and "gone.yaml" in err


PERSON_1 = types.SimpleNamespace(ann_id=1)


def load_config_text(tmp_path, text):
    path = tmp_path / "printed.yaml"
    path.write_text(text)
    return load_config(path)


def test_fit_stage_schedule_from_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "fit:\n  intact:\n    stages:\n    - {pose_prior: 10, shape_prior: 5, angle_limit: 1}\n"
        "  rafo:\n    accept_px: 8\n"
    )
    cfg = load_config(path)
    assert len(cfg.fit.intact.stages) == 1 and cfg.fit.intact.stages[0].pose_prior == 10.0
    assert cfg.fit.rafo.accept_px == 8.0 and cfg.fit.cap == ResihmrConfig().fit.cap


def test_partial_file_keeps_other_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("body:\n  smplx_dir: /models\n")
    cfg = load_config(path)
    assert cfg.body.smplx_dir == "/models" and cfg.body.model == "anny"


def test_partial_nested_key_keeps_the_parents_default(tmp_path):
    """A nested block given in part updates the default it replaces: the refinement's silhouettes
    keep their own sigmas (not SilhouetteConfig's class default) when only the kernel is set."""
    path = tmp_path / "c.yaml"
    path.write_text("fit:\n  refine:\n    silhouette:\n      kernel: torch\n    weights:\n      contour: 2.0\n")
    cfg = load_config(path)
    default = ResihmrConfig().fit.refine
    assert cfg.fit.refine.silhouette == dataclasses.replace(default.silhouette, kernel="torch")
    assert cfg.fit.refine.silhouette.sigma == default.silhouette.sigma != SilhouetteConfig().sigma
    assert cfg.fit.refine.stump_silhouette == default.stump_silhouette
    assert cfg.fit.refine.weights == dataclasses.replace(default.weights, contour=2.0)
    assert cfg.fit.intact == ResihmrConfig().fit.intact


@pytest.mark.parametrize(
    "text,needle",
    [
        ("body:\n  modle: anny\n", "modle"),
        ("bodyy: {}\n", "bodyy"),
        ("body:\n  model: smpl\n", "body.model"),
        ("body:\n  device: 3\n", "body.device"),
        ("body: [1, 2]\n", "body"),
        ("body: {model: anny\n", "invalid YAML"),
        ("fit:\n  rafo:\n    accept_px: fifteen\n", "fit.rafo.accept_px"),
        ("fit:\n  cap:\n    num_rings: 0\n", "fit.cap"),
        ("fit:\n  intact:\n    stages:\n    - pose_prior: 1.0\n", "fit.intact.stages[0]"),
        # Keys renamed after 0.2.0 name their new spelling.
        ("fit:\n  rafo:\n    max_iter: 50\n", "'max_iter' is now 'iterations'"),
        ("fit:\n  intact:\n    camera_max_iters: 5\n", "'camera_max_iters' is now 'camera_iterations'"),
        ("fit:\n  intact:\n    refine_iters: 5\n", "'refine_iters' is now 'refine_iterations'"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "bad.yaml" in str(exc.value) and needle in str(exc.value)


def test_config_key_selects_smplx_and_its_folder(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(f"body:\n  model: smplx\n  smplx_dir: {tmp_path / 'missing'}\n")
    assert main(["demo", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "smpl-x.is.tue.mpg.de" in err


def test_cli_reports_bad_config(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("body:\n  modle: anny\n")
    assert main(["demo", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "modle" in capsys.readouterr().err


def test_set_overrides_and_print_config(tmp_path, capsys):
    """--set KEY=VALUE (repeatable, after --config, values read as YAML); print-config prints the
    resolved configuration, which --config reads back to the same values."""
    base = tmp_path / "base.yaml"
    base.write_text("fit:\n  refine:\n    iterations: 40\n")
    argv = [
        "print-config",
        "--config",
        str(base),
        "--set",
        "fit.refine.iterations=80",
        "--set",
        "fit.refine.silhouette.kernel=torch",
        "--set",
        "fit.intact.camera_yaw_starts_deg=[0, 90]",
        "--set",
        "fit.refine.stump_silhouette.sigma=3e-6",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(printed)
    cfg = load_config(resolved)
    default = ResihmrConfig()
    assert cfg.fit.refine.iterations == 80 and cfg.fit.refine.silhouette.kernel == "torch"
    assert cfg.fit.refine.silhouette.sigma == default.fit.refine.silhouette.sigma
    assert cfg.fit.refine.stump_silhouette.sigma == 3e-6  # YAML 1.1 leaves "3e-6" a string: read as a number
    assert cfg.fit.intact.camera_yaw_starts_deg == (0.0, 90.0)
    assert dataclasses.replace(cfg, fit=default.fit) == dataclasses.replace(default, fit=default.fit)


@pytest.mark.parametrize(
    "item,needle",
    [
        ("fit.refine.iteratons=80", "unknown config key 'fit.refine.iteratons'"),
        ("fit.refine.iterations=eighty", "fit.refine.iterations: expected int"),
        ("fit.refine", "expected KEY=VALUE"),
        ("fit.refine=3", "is a section, not a value"),
        ("fit.refine.iterations=[1,", "not valid YAML"),
    ],
)
def test_bad_set_override_is_exit_2_naming_it(item, needle, capsys):
    assert main(["print-config", "--set", item]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --set {item!r}") and needle in err
