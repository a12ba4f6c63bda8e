"""The layer rule of ARCHITECTURE.md, read from the source: every module imports only its own
layer and the layers below it (also inside functions), and no modules import each other in a
cycle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "resihmr_dr"

# Lowest first. A module belongs to the first entry naming it or a package above it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("camera", "atomic", "mesh_export", "data", "body")),
    (
        "stages",
        (
            "fit.anthropometry",
            "fit.fit_metrics",
            "fit.intact",
            "fit.intact_camera",
            "fit.intact_config",
            "fit.intact_problem",
            "fit.intact_views",
            "fit.losses",
            "fit.measures",
            "fit.mesh_losses",
            "fit.monitor",
            "fit.quality",
            "fit.rafo",
            "fit.refine",
            "fit.refine_config",
            "fit.refine_terms",
            "fit.views",
            "stump",
            "render",
        ),
    ),  # fmt: skip
    ("pipeline", ("fit.pipeline", "fit.subject", "config", "results", "outputs")),
    ("drivers", ("failures", "jobs", "batch", "lightning")),
    ("interfaces", ("cli", "cli_config", "eval")),
)
# The package itself (``__version__``, lazy public names) and subpackages' ``__init__`` files.
EXEMPT = {"resihmr_dr", "resihmr_dr.fit"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(("resihmr_dr",) + parts).removesuffix(".__init__")
        out[name] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project's modules ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("resihmr_dr"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n for n in names if n in modules}
    return found


def _layer(module: str) -> int:
    rel = module.removeprefix("resihmr_dr.")
    for index, (_, members) in enumerate(LAYERS):
        if any(rel == m or rel.startswith(m + ".") for m in members):
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py (add it, and to ARCHITECTURE.md)")


def test_every_module_imports_only_its_layer_and_below():
    modules = _modules()
    wrong = []
    for name, path in sorted(modules.items()):
        if name in EXEMPT:
            continue
        for target in sorted(_imports(path, modules) - {name}):
            if target in EXEMPT or modules[target].name == "__init__.py" and target != name:
                continue
            if _layer(target) > _layer(name):
                wrong.append(f"{name} ({LAYERS[_layer(name)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} - EXEMPT for name, path in modules.items() if name not in EXEMPT}
    # Importing a package's __init__ to reach one of its modules is not an edge back.
    graph = {name: {t for t in targets if modules[t].name != "__init__.py"} for name, targets in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)


def test_every_module_has_a_layer():
    for name in _modules():
        if name not in EXEMPT and not name.endswith("__init__"):
            _layer(name)
