"""The import graph of tools/, read with `ast` (nothing is imported), and the layering rules it must keep.

Every import counts, at module top or inside a function: a lazy import still ties the two modules
together and only hides a cycle. Steps are the CLI modules (`python -m tools.X`: they test
`__name__ == "__main__"`); the cloud shim is the package tools.cloud.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

Graph = Mapping[str, set[str]]


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module `name` is or lies in (`tools.cloud.Cloud` -> `tools.cloud`)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(tree: ast.AST, importer: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of `known` this module imports (`from a import b` counts a.b when b is a module)."""
    found: set[str] = set()
    package = importer if is_package else importer.rpartition(".")[0]
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            names = [node.args[0].value]  # type: ignore[attr-defined]
        for name in names:
            target = _resolve(name, known)
            if target and target != importer:
                found.add(target)
    return found


def _is_dynamic_import(node: ast.Call) -> bool:
    """importlib.import_module("tools.x") / __import__("tools.x") with a literal name."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return (
        called in ("import_module", "__import__")
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def read_package(root: Path) -> tuple[dict[str, set[str]], set[str]]:
    """(module -> the package's modules it imports, the steps) for the package at `root`."""
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    graph: dict[str, set[str]] = {}
    steps: set[str] = set()
    for name, path in files.items():
        source = path.read_text()
        tree = ast.parse(source, str(path))
        graph[name] = imports_of(tree, name, path.name == "__init__.py", known)
        if _tests_main(tree):
            steps.add(name)
    return graph, steps


def _tests_main(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            sides = [node.test.left, *node.test.comparators]
            if any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
                isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
            ):
                return True
    return False


def cycles(graph: Graph) -> list[list[str]]:
    """Each strongly connected component of more than one module (or a module importing itself), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan; the graphs are small, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _inside(name: str, packages: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def upward_imports(graph: Graph, lower: Iterable[str], upper: Iterable[str]) -> list[str]:
    """`a -> b` for each module a in the `lower` packages importing a module b of the `upper` ones."""
    lower, upper = list(lower), list(upper)
    return sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        if _inside(a, lower)
        for b in targets
        if _inside(b, upper) and not _inside(b, lower)
    )


def steps_importing_steps(graph: Graph, steps: set[str]) -> list[str]:
    return sorted(f"{a} -> {b}" for a in steps for b in graph.get(a, ()) if b in steps)
