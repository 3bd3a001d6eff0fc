"""The package's module graph: one concept per module and no import cycle, not even one
hidden under ``TYPE_CHECKING`` (``bindings/python/README.md``, Layout)."""

from __future__ import annotations

import ast
from pathlib import Path

import portway


def package_imports() -> dict[str, set[str]]:
    """Module name -> the package modules it imports (anywhere in the file)."""
    pkg = Path(portway.__file__).resolve().parent
    graph: dict[str, set[str]] = {}
    for path in sorted(pkg.glob("*.py")):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module)
                else:  # from . import _core, _lib
                    deps.update(alias.name for alias in node.names)
        graph[path.stem] = deps
    return graph


def test_the_package_has_no_import_cycle() -> None:
    graph = package_imports()
    assert "_core" in graph and "_futures" in graph, sorted(graph)
    done: set[str] = set()

    def visit(mod: str, path: tuple[str, ...]) -> None:
        assert mod not in path, "import cycle: " + " -> ".join((*path, mod))
        if mod in done:
            return
        for dep in sorted(graph.get(mod, ())):
            visit(dep, (*path, mod))
        done.add(mod)

    for mod in graph:
        visit(mod, ())


def test_futures_do_not_import_the_core_or_the_engine() -> None:
    # A future reaches the core only through the CoreLink methods it is handed.
    assert not package_imports()["_futures"] & {"_core", "_engine", "_raw", "_lib"}
