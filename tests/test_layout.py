"""The package layout: imports run one way and never in a cycle (DESIGN.md, section 7).

Reads every module of the project's packages with :mod:`ast` (imports inside functions included)
and builds the module import graph, so a cycle hidden by a function-level import fails here.
Inside ``experiments``, every module belongs to a room (its sub-package; the top-level modules are
the foundation, the command line is the composer) and a room imports only the rooms below it.
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("classic_pm", "diff_pm", "experiments", "learning", "benchmarks")
FOUNDATION = "experiments"  # errors, options, devices, provenance: what every room may use
ROOMS = ("experiments.data", "experiments.methods", "experiments.report", "experiments.run")
# What each package or room may import from the project (besides external libraries).
ALLOWED = {
    "classic_pm": {"classic_pm"},
    "diff_pm": {"diff_pm"},
    FOUNDATION: {FOUNDATION},
    "experiments.data": {FOUNDATION, "experiments.data"},
    "experiments.methods": {FOUNDATION, "experiments.data", "experiments.methods", "classic_pm", "diff_pm"},
    "experiments.report": {FOUNDATION, "experiments.data", "experiments.methods", "experiments.report",
                           "classic_pm"},
    "experiments.run": {FOUNDATION, "experiments.data", "experiments.methods", "experiments.report",
                        "experiments.run"},
    # the command line composes every room, and learning (to route `train`, load checkpoints)
    "experiments.cli": {"experiments.cli", FOUNDATION, *ROOMS, "learning", "classic_pm", "diff_pm"},
    "learning": {"learning", FOUNDATION, *ROOMS, "classic_pm", "diff_pm"},
    # benchmarks are command-line tools on top of everything; learning only through the public
    # checkpoint loader that the command line uses too
    "benchmarks": {"benchmarks", FOUNDATION, *ROOMS, "classic_pm", "diff_pm", "learning.checkpoint"},
}
ENTRY_POINTS = {"experiments.cli", "experiments.__main__"}
#: Modules may be longer than this only in the kernels' packages (classic_pm, diff_pm).
MAX_LINES = 420


def room(module: str) -> str:
    """The package or room a module belongs to (``experiments.run.local`` -> ``experiments.run``)."""
    if module in ENTRY_POINTS:
        return "experiments.cli"
    for r in ROOMS:
        if module == r or module.startswith(r + "."):
            return r
    return module.partition(".")[0]


def allowed(module: str, target: str) -> bool:
    """Whether ``module`` may import ``target`` (:data:`ALLOWED`, by room; ``learning.checkpoint``
    by module)."""
    ok = ALLOWED[room(module)]
    return room(target) in ok or target in ok


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that module ``name`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]

    def known(target: str) -> str | None:
        """``target`` or its longest prefix that is a project module (None: external)."""
        while target:
            if target in modules:
                return target
            target = target.rpartition(".")[0]
        return None

    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(known(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else known(base))
    found.discard(None)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_scanner_sees_imports_inside_functions():
    graph = _graph()
    assert {"experiments", "learning", "classic_pm", "diff_pm", "benchmarks"} <= {
        m.partition(".")[0] for m in graph}
    # experiments/cli.py loads checkpoints through an import inside a function
    assert "learning.checkpoint" in graph["experiments.cli"]
    # every module of experiments is in a room, the foundation or the command line
    assert {room(m) for m in graph if m.startswith("experiments")} == {FOUNDATION, *ROOMS, "experiments.cli"}
    assert room("experiments.run.local") == "experiments.run" and room("experiments.errors") == FOUNDATION
    # relative imports resolve to modules: `from . import _kernels` in classic_pm/core.py
    assert "classic_pm._kernels" in graph["classic_pm.core"]


def test_cycles_finds_exactly_the_strongly_connected_groups():
    """Tarjan on hand-made graphs: each cycle once, as its sorted members, in the order found
    (depth-first from the sorted nodes); nodes only reaching a cycle are not part of it."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    # a 3-cycle, a 2-cycle that reaches it, a tail, an edge to a node without entry, a self-loop
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "x"}, "e": {"d", "a"}, "d": {"e"}, "f": {"e", "f"}}
    assert _cycles(graph) == [["a", "b", "c"], ["d", "e"]]


def test_cycles_none_in_an_acyclic_graph():
    # a diamond (two paths to the same node are no cycle) with a chain into it
    assert _cycles({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set(), "e": {"a"}}) == []


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles between modules: {cycles}"


def test_allowed_rooms_form_no_cycle():
    """The allowed arrows between rooms are themselves one-way (a DAG, apart from each room's own)."""
    arrows = {r: {t for t in ok if t in ALLOWED and t != r} for r, ok in ALLOWED.items()}
    assert _cycles(arrows) == []
    assert allowed("benchmarks.diff", "learning.checkpoint") and not allowed("benchmarks.diff", "learning.train")
    assert allowed("experiments.run.local", "experiments.report.metrics")
    assert not allowed("experiments.report.figures", "experiments.run.local")


def test_imports_run_one_way():
    bad = [f"{module} imports {target}" for module, targets in _graph().items()
           for target in sorted(targets) if not allowed(module, target)]
    assert not bad, "imports against the one-way order (learning -> experiments' rooms: run -> " \
                    "report -> methods -> data -> foundation; classic_pm, diff_pm below; only " \
                    "experiments.cli imports learning, benchmarks only learning.checkpoint; " \
                    "nothing imports benchmarks): " + "; ".join(bad)


def test_modules_stay_short():
    """No module outside the kernels' packages is longer than :data:`MAX_LINES` lines."""
    long = {}
    for pkg in ("experiments", "learning", "benchmarks"):
        for path in (REPO / pkg).rglob("*.py"):
            n = len(path.read_text().splitlines())
            if n > MAX_LINES:
                long[str(path.relative_to(REPO))] = n
    assert not long, f"split these modules by concern: {long}"
