"""docs/api/ is generated from the docstrings by scripts/build_api_docs.py and must match the code."""

from __future__ import annotations

import dataclasses
import difflib
import enum
import importlib.util
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "docs" / "api"
REGENERATE = "run `python scripts/build_api_docs.py` and commit docs/api"


def _load_script():
    spec = importlib.util.spec_from_file_location("build_api_docs", REPO / "scripts" / "build_api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = _load_script()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    return out, script.build(out)


def _pages(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.md"))}


def test_committed_api_docs_are_up_to_date(built):
    out, result = built
    fresh, committed = _pages(out), _pages(COMMITTED)
    # A module this environment cannot import (optional dependency missing) has no fresh page:
    # its committed page, and the index that lists it, cannot be checked here.
    unchecked = {f"{name}.md" for name in result["skipped"]} | ({"index.md"} if result["skipped"] else set())
    changed = sorted(n for n in fresh.keys() & committed.keys() if n not in unchecked and fresh[n] != committed[n])
    new = sorted(fresh.keys() - committed.keys())
    removed = sorted(committed.keys() - fresh.keys() - unchecked)
    diff = ""
    if changed:
        lines = difflib.unified_diff(
            committed[changed[0]].splitlines(),
            fresh[changed[0]].splitlines(),
            f"docs/api/{changed[0]}",
            "generated",
            lineterm="",
            n=1,
        )
        diff = "\n" + "\n".join(list(lines)[:30])
    assert not (changed or new or removed), (
        f"docs/api is out of date with the docstrings (changed: {changed}, new: {new}, removed: {removed}); "
        f"{REGENERATE}{diff}"
    )


def test_every_public_class_and_function_has_a_docstring(built):
    _, result = built
    missing = list(script.undocumented(result["modules"]))
    assert not missing, f"public names without a docstring (add one, then {REGENERATE}): {missing}"


def test_pages_cover_the_package(built):
    out, result = built
    pages = _pages(out)
    names = script.module_names()
    assert "resihmr_dr.fit.pipeline" in names and "resihmr_dr.render.plotly_view" in names
    assert not [n for n in names if any(part.startswith("_") for part in n.split("."))]  # private skipped
    for name in names:
        assert (f"{name}.md" in pages) != (name in result["skipped"]), name  # a page, or a note why not
        assert f"]({name}.md)" in pages["index.md"] or name in result["skipped"]
    pipeline = pages["resihmr_dr.fit.pipeline.md"]
    assert "## `fit_person(*, body: BodyModel, person: PersonAnnotation," in pipeline
    assert "config: PipelineConfig = PipelineConfig(), " in pipeline  # a default, shown stably
    assert "| `refine` | `RefineConfig` | `RefineConfig()` |" in pipeline  # a dataclass field (default factory)
    assert "[`cut_and_cap`](resihmr_dr.stump.cap.md#cut_and_cap)" in pages["resihmr_dr.stump.md"]  # re-export link
    for name, text in pages.items():
        assert " at 0x" not in text, f"{name}: a memory address in the page"


def test_build_is_deterministic(built, tmp_path):
    out, _ = built
    script.build(tmp_path)
    assert _pages(tmp_path) == _pages(out)


def test_build_removes_stale_pages(tmp_path):
    (tmp_path / "resihmr_dr.gone.md").write_text("old\n")
    (tmp_path / "notes.txt").write_text("kept\n")  # only *.md pages are the generator's
    script.build(tmp_path)
    assert not (tmp_path / "resihmr_dr.gone.md").exists() and (tmp_path / "notes.txt").exists()


def test_undocumented_finds_missing_docstrings():
    module = types.ModuleType("fake_mod")

    def documented():
        """Has one."""

    def bare():
        pass

    @dataclasses.dataclass
    class Record:  # @dataclass writes a docstring of its own: that does not count
        x: int = 0

        def method(self):
            pass

        @property
        def value(self):
            """Documented."""
            return self.x

    for obj in (documented, bare, Record):
        obj.__module__ = "fake_mod"
        setattr(module, obj.__name__, obj)
    assert script.undocumented({"fake_mod": module}) == ["fake_mod.Record", "fake_mod.Record.method", "fake_mod.bare"]


def test_modules_needing_a_missing_dependency_are_skipped(tmp_path, monkeypatch):
    (tmp_path / "needs_missing_dep.py").write_text('"""A module."""\nimport resihmr_no_such_package\n')
    (tmp_path / "broken_module.py").write_text('"""A module."""\nraise RuntimeError("a bug")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    modules, skipped = script.import_modules(["resihmr_dr.camera", "needs_missing_dep"])
    assert list(modules) == ["resihmr_dr.camera"]
    assert "resihmr_no_such_package" in skipped["needs_missing_dep"]
    with pytest.raises(RuntimeError, match="a bug"):  # only a missing import is skipped, not a bug
        script.import_modules(["broken_module"])
    index = script.render_index(modules, skipped)
    assert "## Modules without a page" in index and "`needs_missing_dep`: needs an optional dependency" in index
    for name in ("needs_missing_dep", "broken_module"):
        sys.modules.pop(name, None)


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Settings:
    size: int = 3


def test_stable_repr():
    assert script.stable_repr(object()) == "<object object>"  # no address
    assert script.stable_repr({"b", "a", "c"}) == "{'a', 'b', 'c'}"  # sets sorted
    assert script.stable_repr(frozenset()) == "frozenset()"
    assert script.stable_repr(Colour.RED) == "Colour.RED"
    assert script.stable_repr(Settings()) == "Settings()"
    assert script.stable_repr(Settings(size=4)) == "Settings(size=4)"
    assert script.stable_repr((1,)) == "(1,)" and script.stable_repr([Settings(), None]) == "[Settings(), None]"
    assert script.stable_repr(len) == "len" and script.stable_repr(Settings) == "Settings"


def test_markdown_doc():
    doc = (
        "Summary with :func:`fit_person` and :class:`~resihmr_dr.camera.PinholeCamera`.\n\n"
        "Layout::\n\n    a/\n      b.json\n\nAfter the block.\n\n"
        "Args:\n    verts: (V, 3) metres,\n        continued here.\n    a, b: two names.\n\n"
        "Returns:\n    (N,) values,\n    in metres.\n"
    )
    text = script.markdown_doc(doc)
    assert "`fit_person`" in text and "`resihmr_dr.camera.PinholeCamera`" in text and ":func:" not in text
    assert "Layout:\n\n```text\na/\n  b.json\n```\n\nAfter the block." in text
    assert "**Args:**\n\n- `verts`: (V, 3) metres, continued here.\n- `a, b`: two names." in text
    assert "**Returns:**\n\n- (N,) values, in metres." in text
    assert script.markdown_doc("") == "*(no docstring)*"
