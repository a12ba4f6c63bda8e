"""Code style: ruff's lint rules and formatter (configured in pyproject.toml) hold for the
package, the tests, the scripts and the benchmarks."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PATHS = ["src", "tests", "scripts", "benchmarks"]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff not installed (the test extra)")


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args, *PATHS], cwd=REPO, capture_output=True, text=True)


def test_ruff_lint_passes():
    done = _ruff("check", "--no-cache")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_applied():
    done = _ruff("format", "--check", "--no-cache")
    assert done.returncode == 0, "run `ruff format src tests scripts benchmarks`:\n" + done.stdout + done.stderr
