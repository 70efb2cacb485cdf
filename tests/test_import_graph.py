"""The package's import graph: no cycle, and no module imports from a layer above its own.

Layers, lowest first: the ground floor (errors, files, distributed, run_dir, cli, checkout, provenance) that anything
may use; the building blocks (adapters, data, models); what runs them (training, evaluation); the paper's tables and
analyses; the console commands; the measuring tools in benchmarks/ (beside the package) on top: nothing in hira/
imports them. Every import counts, including the ones inside functions: a lazy import hides a cycle from Python, not
from a reader.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hira", "benchmarks")

LAYERS = {
    "hira": 0, "hira.errors": 0, "hira.files": 0, "hira.distributed": 0, "hira.run_dir": 0, "hira.cli": 0,
    "hira.checkout": 0, "hira.provenance": 0,
    "hira.adapters": 1, "hira.data": 1, "hira.models": 1, "hira.scoring": 1,
    "hira.config": 2, "hira.training": 2, "hira.evaluation": 2,
    "hira.paper": 3,
    "hira.commands": 4,
    "benchmarks": 5,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def resolve(name: str, known: set[str]) -> str:
    """The longest known module a dotted import name refers to (`hira.data.commonsense.ALIASES` -> the module)."""
    while name not in known:
        name = name.rpartition(".")[0]
    return name


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every hira or benchmarks module `path` imports, anywhere in the file (`from hira.x import y` counts y if y is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {resolve(n, known) for n in names if n.split(".")[0] in PACKAGES}
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def layer(module: str) -> int:
    owner = resolve(module, set(LAYERS))
    if owner == "hira" and module != "hira":
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")
    return LAYERS[owner]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of nodes (first == last), or None; depth-first search with colours."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges between the layer units (hira.adapters -> hira.distributed, ...), ignoring imports inside one unit."""
    units: dict[str, set[str]] = {}
    for src, targets in graph.items():
        unit = resolve(src, set(LAYERS))
        units.setdefault(unit, set()).update(resolve(t, set(LAYERS)) for t in targets)
        units[unit].discard(unit)
    return units


def test_the_graph_is_read():
    # A parser that silently found nothing would pass every check below.
    graph = import_graph()
    assert "hira.data.synthetic_world" in graph["hira.data.tasks"]
    assert "hira.distributed" in graph["hira.adapters.lora_dash"]  # an import inside a method body
    assert "hira.data.formats" in graph["hira.data.prepare"]  # `from hira.data import formats`
    assert "benchmarks.bench_adapters" in graph["benchmarks.gpu_sections"]  # `from benchmarks import ...`


def test_no_module_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_cycle_between_packages():
    cycle = find_cycle(package_graph(import_graph()))
    assert cycle is None, "packages import each other: " + " -> ".join(cycle)


def test_no_upward_import():
    upward = [f"{src} (layer {layer(src)}) imports {dst} (layer {layer(dst)})"
              for src, targets in import_graph().items() for dst in sorted(targets) if layer(dst) > layer(src)]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"b"}}, ["b", "b"]),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),
])
def test_find_cycle(graph, expected):
    assert find_cycle(graph) == expected
