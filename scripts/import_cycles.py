"""Report import cycles among the project's own modules.

    python scripts/import_cycles.py [--show MODULE ...]

Every ``.py`` file of the project is parsed with ``ast`` (nothing is imported or run), and every
import statement counts, wherever it is: at the top of a module, inside a function (a late
import hides a cycle, it does not remove it) or under ``if TYPE_CHECKING:``. An import counts
as an edge to the deepest project module it names (``from a.b import c`` is ``a.b.c`` when that
is a module, else ``a.b``); the packages a module sits in are not edges of its own (they are
initialised first whatever it imports), so a package's ``__init__`` may re-export its
submodules. Prints each group of modules that import
each other (a strongly connected component of the import graph) with the imports that close
it, and exits 1 if there is any. ``--show`` also lists what the named modules import from the
project and what imports them.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", "venv", ".git", "node_modules", "var", "media", "staticfiles", "artifacts"}


def project_modules(root: Path) -> dict[str, Path]:
    modules = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part in SKIP or part.startswith(".") for part in relative.parts[:-1]):
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            modules[".".join(parts)] = path
    return modules


def imported_names(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, int]]:
    """(dotted name, line) for every import in the tree; ``from x import y`` gives x.y."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1 more
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            found += [(f"{name}.{alias.name}", node.lineno) for alias in node.names]
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {project module it imports: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for name, line in imported_names(tree, module, path.name == "__init__.py"):
            target = name
            while target and target not in modules:  # the deepest project module named
                target = target.rpartition(".")[0]
            # A module's own packages are initialised before it runs, whatever it imports:
            # that is how packages work, not an import of this module's making.
            if target and target != module and not module.startswith(target + "."):
                graph[module].setdefault(target, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(graph[target])))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", nargs="*", default=[], metavar="MODULE")
    args = parser.parse_args()
    modules = project_modules(ROOT)
    graph = import_graph(modules)

    for module in args.show:
        if module not in graph:
            print(f"{module}: not a project module")
            continue
        imported_by = sorted(m for m, targets in graph.items() if module in targets)
        print(f"{module} ({modules[module].relative_to(ROOT)})")
        print(f"  imports:     {', '.join(sorted(graph[module])) or '-'}")
        print(f"  imported by: {', '.join(imported_by) or '-'}")

    groups = cycles(graph)
    for group in groups:
        print(f"cycle among {len(group)} modules: {', '.join(group)}")
        for module in group:
            for target, line in sorted(graph[module].items()):
                if target in group:
                    print(f"  {modules[module].relative_to(ROOT)}:{line} imports {target}")
    edges = sum(len(targets) for targets in graph.values())
    print(f"{len(modules)} modules, {edges} imports among them: {len(groups)} cycle(s)")
    return 1 if groups else 0


if __name__ == "__main__":
    sys.exit(main())
