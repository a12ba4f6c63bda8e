"""Start-up cost of the CLI: building the parser (every ``--help``) and ``validate`` must not import
torch, Lightning, the body models, the renderer or the fit stack (they take seconds to load)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from resihmr_dr.data.sample import sample_annotations_path

HEAVY = (
    "torch",
    "lightning",
    "pytorch_lightning",
    "smplx",
    "anny",
    "pytorch3d",
    "trimesh",
    "matplotlib",
    "scipy",
    "roma",
    "resihmr_dr.body",
    "resihmr_dr.fit",
    "resihmr_dr.render",
    "resihmr_dr.stump",
)

REPORT_HEAVY = f"""
import json, sys
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def _heavy_modules_after(code: str) -> tuple[list[str], subprocess.CompletedProcess]:
    """Run ``code`` in a fresh interpreter; the heavy modules it left imported (from its last line)."""
    proc = subprocess.run(
        [sys.executable, "-c", code + REPORT_HEAVY], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


def test_building_the_parser_and_every_help_text_imports_nothing_heavy():
    code = """
import argparse
import resihmr_dr.cli
parser = resihmr_dr.cli.build_parser()
parser.format_help()
sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
assert sorted(sub.choices) == ["demo", "eval", "fit", "print-config", "sweep", "synth", "validate"], sorted(sub.choices)
for command in sub.choices.values():
    command.format_help()
"""
    heavy, _ = _heavy_modules_after(code)
    assert heavy == []


def test_validate_imports_nothing_heavy():
    code = f"""
import resihmr_dr.cli
code = resihmr_dr.cli.main(["validate", "--annotations", {str(sample_annotations_path())!r}])
assert code == 0, code
"""
    heavy, proc = _heavy_modules_after(code)
    assert heavy == []
    assert "ok   annotation 1 (image 1): left_leg=transtibial" in proc.stdout
    assert "1 valid, 0 invalid" in proc.stdout


def test_bad_annotations_for_validate_import_nothing_heavy(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    code = f"""
import resihmr_dr.cli
code = resihmr_dr.cli.main(["validate", "--annotations", {str(path)!r}])
assert code == 2, code
"""
    heavy, proc = _heavy_modules_after(code)
    assert heavy == []
    assert proc.stderr.startswith("error: ")


def test_the_help_texts_light_copies_agree_with_their_sources():
    from resihmr_dr.eval import baselines, eval_cli, synth, synth_cli

    assert synth_cli.RESIDUAL_TYPES == synth.RESIDUAL_TYPES
    assert eval_cli.METHODS == baselines.METHODS


def test_a_body_model_error_is_still_a_bad_input(monkeypatch, capsys):
    from resihmr_dr import cli
    from resihmr_dr.body.errors import BodyModelError

    def fail(args):
        raise BodyModelError("no SMPL-X files here")

    monkeypatch.setattr(cli, "_cmd_validate", fail)
    assert cli.main(["validate", "--annotations", "unused.json"]) == 2
    assert capsys.readouterr().err == "error: no SMPL-X files here\n"


@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError("boom")])
def test_other_errors_still_propagate(monkeypatch, error):
    from resihmr_dr import cli

    def fail(args):
        raise error

    monkeypatch.setattr(cli, "_cmd_validate", fail)
    with pytest.raises(type(error)):
        cli.main(["validate", "--annotations", "unused.json"])
