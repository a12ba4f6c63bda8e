"""Execute the notebooks and write them to docs/notebooks/ as markdown with their figures.

Usage:
    python scripts/render_notebooks.py [NAME ...]     # default: every notebook in notebooks/

The committed notebooks carry no outputs (they stay small and diff well); the rendered pages show
what they print and plot, so the plots can be read on the web without running anything. Each page
holds the notebook's markdown cells, its code cells as ``python`` blocks, text outputs as plain
blocks and images as PNG files next to it (``docs/notebooks/<name>_<cell>_<k>.png``). Interactive
3D views (HTML outputs) are left out (``RESIHMR_SHOW_3D=0``). ``tests/test_notebooks.py`` checks
that every page holds its notebook's current cells (``page_sources``).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DOCS = ROOT / "docs" / "notebooks"
TEXT_LIMIT = 4000  # characters of one text output kept on the page


def render_markdown(notebook, *, name: str, image_dir: Path) -> str:
    """The markdown page of an executed notebook; writes its PNG outputs into ``image_dir``."""
    parts = [f"<!-- rendered from notebooks/{name}.ipynb by scripts/render_notebooks.py; do not edit -->\n"]
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            parts.append(cell.source.strip() + "\n")
            continue
        if cell.cell_type != "code":
            continue
        parts.append("```python\n" + cell.source.strip() + "\n```\n")
        for k, output in enumerate(cell.get("outputs", [])):
            parts.extend(_output_markdown(output, name=f"{name}_{index}_{k}", image_dir=image_dir))
    return "\n".join(parts)


def _output_markdown(output, *, name: str, image_dir: Path) -> list[str]:
    kind = output.get("output_type")
    if kind == "stream":
        return [_text_block(output.get("text", ""))]
    if kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        if "image/png" in data:
            path = image_dir / f"{name}.png"
            path.write_bytes(base64.b64decode(data["image/png"]))
            return [f"![output]({path.name})\n"]
        if "text/plain" in data and "text/html" not in data:
            return [_text_block(data["text/plain"])]
    return []


def _text_block(text) -> str:
    text = "".join(text) if isinstance(text, list) else str(text)
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + "\n[... cut]"
    return "```text\n" + text.rstrip() + "\n```\n"


def page_sources(notebook) -> list[str]:
    """The cell texts a rendered page must contain (markdown as is, code inside its block)."""
    out = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            out.append(cell.source.strip())
        elif cell.cell_type == "code":
            out.append("```python\n" + cell.source.strip() + "\n```")
    return out


def main(argv: list[str] | None = None) -> None:
    import nbformat
    from nbclient import NotebookClient

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebook names without .ipynb (default: all)")
    args = parser.parse_args(argv)
    paths = [NOTEBOOKS / f"{n}.ipynb" for n in args.names] or sorted(NOTEBOOKS.glob("*.ipynb"))
    DOCS.mkdir(parents=True, exist_ok=True)
    os.environ["RESIHMR_SHOW_3D"] = "0"
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as work:  # what a notebook writes stays out of the tree
            NotebookClient(
                notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": work}}
            ).execute()
        for old in DOCS.glob(f"{path.stem}_*.png"):
            old.unlink()
        page = render_markdown(notebook, name=path.stem, image_dir=DOCS)
        (DOCS / f"{path.stem}.md").write_text(page)
        print(f"wrote {DOCS / path.stem}.md", file=sys.stderr)


if __name__ == "__main__":
    main()
