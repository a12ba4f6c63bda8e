"""The built-in sample person shipped with the package (regenerate: scripts/make_sample.py)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_annotations_path() -> Path:
    """LDpose JSON of the built-in sample: one person with a left transtibial residual limb."""
    path = Path(str(resources.files("resihmr_dr") / "assets" / "sample" / "annotations.json"))
    if not path.is_file():
        raise FileNotFoundError(f"the built-in sample is missing from the installed package: {path}")
    return path
