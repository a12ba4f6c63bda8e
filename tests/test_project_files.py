"""Project metadata agrees with itself: version, licence, citation, changelog."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib

import resihmr_dr

ROOT = Path(__file__).resolve().parents[1]


def test_one_version_everywhere():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert resihmr_dr.__version__ == version
    assert re.search(rf"^version: {re.escape(version)}$", (ROOT / "CITATION.cff").read_text(), re.M)
    assert f"## {version} " in (ROOT / "CHANGELOG.md").read_text(), "the changelog has no entry for the version"


def test_licence_matches_pyproject():
    licence = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert licence == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "license: Apache-2.0" in (ROOT / "CITATION.cff").read_text()


def test_the_tests_import_this_checkout():
    """Two clones never run each other's code: the package under test, and the one this environment's
    Python imports from anywhere, is this checkout's ``src`` (each checkout's ``make install`` puts
    its own editable install in its own ``.venv``)."""
    assert Path(resihmr_dr.__file__).resolve().is_relative_to(ROOT / "src")
    elsewhere = subprocess.run(
        [sys.executable, "-c", "import resihmr_dr; print(resihmr_dr.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    assert Path(elsewhere.stdout.strip()).resolve().is_relative_to(ROOT / "src")
