"""The shape of the code: imports run one way, modules stay small, state travels in values.

Read from the source with ``ast`` (no imports are executed), so a function-level import counts
like a module-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("moderation", "profiles", "config")
MAX_LINES = 600


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, anywhere in it (``from a import b`` counts as
    ``a.b`` when that is a module, else ``a``)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(path, name, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_the_projects_modules_function_level_imports_included():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_moderation_never_imports_profiles():
    graph = import_graph()
    offenders = {
        name: sorted(t for t in targets if t.startswith("profiles"))
        for name, targets in graph.items()
        if name.startswith("moderation")
    }
    assert {name: t for name, t in offenders.items() if t} == {}


def test_the_engine_is_free_of_the_orm():
    """The rule, the index and the fingerprint import neither the models nor the database."""
    engine = (
        "moderation.matching",
        "moderation.banned_index",
        "moderation.fingerprint_index",
        "moderation.hash_columns",
        "moderation.hashing",
        "moderation.variants",
        "moderation.framing",
    )
    graph = import_graph()
    for name in engine:
        if name not in graph:
            continue
        source = project_modules()[name].read_text()
        assert "moderation.models" not in graph[name], name
        assert "django.db" not in source, name


def test_no_module_outside_migrations_is_over_600_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in [*project_modules().values(), *(ROOT / "tests").glob("*.py")]
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_nothing_is_set_on_uploaded_files_to_carry_state():
    """State travels in values (``screening.Screening``), never as private attributes."""
    offenders = []
    for path in project_modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "setattr"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_")
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
