"""The package layout: imports run one way and never in a cycle (DESIGN.md, section 7).

Reads every module of the project's packages with :mod:`ast` (imports inside functions included)
and builds the module import graph, so a cycle hidden by a function-level import fails here.
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("classic_pm", "diff_pm", "experiments", "learning", "benchmarks")
# What each package may import from the project (besides external libraries).
ALLOWED = {
    "classic_pm": {"classic_pm"},
    "diff_pm": {"diff_pm"},
    "experiments": {"experiments", "classic_pm", "diff_pm"},
    "learning": {"learning", "experiments", "classic_pm", "diff_pm"},
    # benchmarks are command-line tools on top of everything: they time the learnt features too
    "benchmarks": {"benchmarks", "learning", "experiments", "classic_pm", "diff_pm"},
}
# Only the command-line entry point may import learning (to route `train`, load checkpoints).
ENTRY_POINTS = {"experiments.cli", "experiments.__main__"}


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


def test_imports_run_one_way():
    bad = []
    for module, targets in _graph().items():
        top = module.partition(".")[0]
        for target in sorted(targets):
            target_top = target.partition(".")[0]
            if target_top == "learning" and module in ENTRY_POINTS:
                continue
            if target_top not in ALLOWED[top]:
                bad.append(f"{module} imports {target}")
    assert not bad, "imports against the one-way order (learning -> experiments -> classic_pm, " \
                    "diff_pm; only experiments.cli/__main__ import learning; nothing imports " \
                    "benchmarks): " + "; ".join(bad)
