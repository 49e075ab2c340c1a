"""The package's shape (docs/ARCHITECTURE.md): imports point down the layers, no module imports
another in a cycle, training functions fit a screen, and the training step exists once."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: Each part of the package and its layer: a part may import its own modules and any part of a
#: lower layer, nothing at its own layer or above (docs/ARCHITECTURE.md draws the same table).
LAYERS: dict[str, float] = {
    "_version": 0,
    "errors": 0,
    "log": 0,
    "config": 1,
    "data": 2,
    "models": 2,
    "imaging": 2,
    "report": 2,
    "runtime": 3,
    "attacks": 3,
    "loading": 4,
    "augment": 5,
    "evaluate": 5,
    "train": 6,
    "label": 6,  # the labelling tool; its store and analysis need no models (the report reads them)
    "label.store": 1,
    "label.analysis": 1.5,
    "launch": 6.5,  # stages as jobs: above the trainers it runs, below the study that uses it
    "study": 7,
    "cli": 8,
    "__main__": 9,
    "api": 9,  # the library surface; the package's __init__ re-exports it lazily
    "advaug": 10,  # the package's own __init__
}
MAX_TRAIN_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    mods = {}
    for f in (SRC / "advaug").rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every advaug module each module imports, at the top or inside a function."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] != "advaug":
                    continue
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    graph[name].add(sub if sub in mods else node.module)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name.split(".")[0] == "advaug")
    return graph


def _part(module: str) -> str:
    """The most specific entry of :data:`LAYERS` that ``module`` belongs to."""
    parts = module.split(".")
    if len(parts) > 2 and ".".join(parts[1:3]) in LAYERS:
        return ".".join(parts[1:3])
    return parts[1] if len(parts) > 1 else parts[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_the_imports_it_should():
    graph = _imports(_modules())
    assert "advaug.train.steps" in graph["advaug.train.classifier"]
    assert "advaug.loading" in graph["advaug.evaluate.suite"]  # an import inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_another_in_a_cycle():
    assert _cycles(_imports(_modules())) == []


def test_every_part_has_a_layer():
    assert {_part(m) for m in _modules()} <= set(LAYERS)


def test_imports_point_down_the_layers():
    wrong = []
    for src, targets in _imports(_modules()).items():
        for dst in targets:
            a, b = _part(src), _part(dst)
            if a != b and LAYERS[b] >= LAYERS[a]:
                wrong.append(f"{src} -> {dst}")
    assert wrong == []


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("path", sorted((SRC / "advaug" / "train").glob("*.py")), ids=str)
def test_training_functions_fit_a_screen(path: Path):
    long = {n: lines for n, lines in _functions(path) if lines > MAX_TRAIN_FUNCTION_LINES}
    assert long == {}


def test_the_training_step_is_written_once():
    """Only train/steps.py runs an optimiser step; trainers, benchmarks and the study's estimate
    call it (attacks and the FLOP counter take gradients, but update no weights)."""
    places = []
    for path in [*(SRC / "advaug").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            if call and node.func.attr == "step" and not node.args and not node.keywords:
                places.append(path.relative_to(ROOT).as_posix())
    assert sorted(set(places)) == ["src/advaug/train/steps.py"]
