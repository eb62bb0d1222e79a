"""The package's import structure: no module imports one that imports it back (imports
inside functions count: they only hide a cycle), and imports run one way between the
rooms: mutatenn -> mutators, operators, reports -> runfolder, never back up."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("mutatenn", "mutators", "operators", "reports", "runfolder")
# What each room may import of the others (the arrows of DESIGN.md, runfolder beneath reports).
ALLOWED = {
    "mutatenn": {"mutators", "operators", "reports", "runfolder"},
    "mutators": set(),
    "operators": set(),
    "reports": {"runfolder"},
    "runfolder": set(),
}


def _modules() -> dict[str, Path]:
    out = {}
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _targets(node: ast.AST, module: str, path: Path, modules: dict) -> list[str]:
    """The project modules one import statement names (the deepest that exists)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")
            base = base if path.name == "__init__.py" else base[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
    found = []
    for name in names:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in modules:
                found.append(".".join(parts[:i]))
                break
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, at any depth of its code."""
    modules = _modules()
    graph = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(t for t in _targets(node, module, path, modules) if t != module)
    # A package re-exporting its own modules is no knot: edges between a package and its
    # own submodules are left out (a module importing its package's __init__ included).
    return {m: {t for t in targets if not t.startswith(m + ".") and not m.startswith(t + ".")}
            for m, targets in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("room", ROOMS)
def test_imports_run_one_way_between_rooms(room):
    wrong = sorted({f"{m} -> {t}" for m, targets in import_graph().items() if m.split(".")[0] == room
                    for t in targets if t.split(".")[0] != room and t.split(".")[0] not in ALLOWED[room]})
    assert not wrong, f"{room} imports what it must not: {wrong}"
