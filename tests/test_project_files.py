"""Project metadata agrees with itself: version, licence, citation, changelog."""

from __future__ import annotations

import re
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
