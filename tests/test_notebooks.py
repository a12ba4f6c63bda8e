"""Every notebook in notebooks/ runs top to bottom (so that none can rot)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _render_script():
    spec = importlib.util.spec_from_file_location("render_notebooks", REPO / "scripts" / "render_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_rendered_page_holds_the_current_notebook(path):
    """docs/notebooks/<name>.md (with the outputs and figures) shows the notebook as committed:
    every markdown and code cell, in order, and every figure it links exists."""
    page_path = REPO / "docs" / "notebooks" / f"{path.stem}.md"
    assert page_path.is_file(), f"no {page_path.name}: run `python scripts/render_notebooks.py {path.stem}`"
    page = page_path.read_text()
    position = 0
    for source in _render_script().page_sources(nbformat.read(path, as_version=4)):
        found = page.find(source, position)
        assert found >= 0, f"{page_path.name} is stale: run `python scripts/render_notebooks.py {path.stem}`"
        position = found + len(source)
    for line in page.splitlines():
        if line.startswith("![output]("):
            assert (page_path.parent / line[len("![output](") : -1]).is_file(), line


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:  # committed notebooks carry no outputs: keep the repository small
        assert not cell.get("outputs"), f"{path.name}: clear the outputs before committing"
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
