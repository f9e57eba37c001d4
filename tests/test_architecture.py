"""The shape of the code: imports run one way, modules stay small, state travels in values.

Read from the source with ``ast`` (no imports are executed), so a function-level import counts
like a module-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

from scripts import import_cycles

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("moderation", "profiles", "config")
MAX_LINES = 600


def project_modules() -> dict[str, Path]:
    """The application's modules (not migrations, tests, benchmarks or scripts)."""
    return {
        name: path
        for name, path in import_cycles.project_modules(ROOT).items()
        if name.split(".")[0] in PACKAGES and "migrations" not in path.parts
    }


def import_graph() -> dict[str, set[str]]:
    modules = import_cycles.project_modules(ROOT)
    return {name: set(targets) for name, targets in import_cycles.import_graph(modules).items()}


def test_no_import_cycle_among_the_projects_modules_function_level_imports_included():
    """Over every module of the project: the app, tests, benchmarks and scripts."""
    assert (
        import_cycles.cycles(import_cycles.import_graph(import_cycles.project_modules(ROOT))) == []
    )


def test_the_cycle_finder_finds_a_cycle_and_a_function_level_import(tmp_path):
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def late():\n    from c import x\n")
    (tmp_path / "c.py").write_text("from a import y\n")
    (tmp_path / "d.py").write_text("import a\n")
    graph = import_cycles.import_graph(import_cycles.project_modules(tmp_path))
    assert import_cycles.cycles(graph) == [["a", "b", "c"]]


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
        "moderation.verification",
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


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {
                t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)
            }
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.If | ast.Try):  # optional imports and fallbacks
            names |= {
                (alias.asname or alias.name).split(".")[0]
                for child in ast.walk(node)
                if isinstance(child, ast.Import | ast.ImportFrom)
                for alias in child.names
            }
    return names


def test_every_import_of_a_project_name_resolves_wherever_it_is_written():
    """Function-level imports too, in the app, tests, benchmarks and scripts: a moved name
    fails here, not in the benchmark run a month later."""
    modules = import_cycles.project_modules(ROOT)
    broken = []
    for path in modules.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if node.module.split(".")[0] not in (*PACKAGES, "tests", "benchmarks", "scripts"):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if node.module not in modules:
                namespace = (ROOT / node.module.replace(".", "/")).is_dir()
                broken += [
                    f"{where}: no module {node.module}.{alias.name}"
                    for alias in node.names
                    if not namespace or f"{node.module}.{alias.name}" not in modules
                ]
                continue
            defined = _top_level_names(modules[node.module])
            for alias in node.names:
                if f"{node.module}.{alias.name}" not in modules and alias.name not in defined:
                    broken.append(f"{where}: {node.module} has no {alias.name}")
    assert broken == []
