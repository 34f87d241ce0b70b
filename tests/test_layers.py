"""Layers that only point down, read from the import graph of tools/ (tests/importgraph.py, no importing):
no cycle, the cloud shim knows nothing of smoke or of the steps, no step imports another, and the
cloud permissions are collected from modules that are not steps. The checker itself is proven on
planted graphs and a planted package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.importgraph import cycles, read_package, steps_importing_steps, upward_imports
from tools.cloud_permissions import DECLARING_MODULES

TOOLS = Path(__file__).resolve().parent.parent / "tools"


@pytest.fixture(scope="module")
def tools_graph() -> tuple[dict[str, set[str]], set[str]]:
    graph, steps = read_package(TOOLS)
    assert {"tools.cloud", "tools.cloud.aws", "tools.smoke.storage"} <= set(graph)
    assert {"tools.build_push", "tools.helm_deploy", "tools.smoke_test"} <= steps
    return graph, steps


def test_tools_has_no_import_cycle(tools_graph: tuple[dict[str, set[str]], set[str]]) -> None:
    graph, _ = tools_graph
    assert "tools.cloud.base" in graph["tools.cloud.aws"]  # the graph holds edges at all
    assert cycles(graph) == []


def test_the_cloud_shim_knows_nothing_of_smoke_or_steps(tools_graph: tuple[dict[str, set[str]], set[str]]) -> None:
    graph, steps = tools_graph
    assert upward_imports(graph, ["tools.cloud"], ["tools.smoke", *steps]) == []


def test_no_step_imports_another_step(tools_graph: tuple[dict[str, set[str]], set[str]]) -> None:
    graph, steps = tools_graph
    assert steps_importing_steps(graph, steps) == []


def _declares_needs(path: Path) -> bool:
    """Whether the module calls `need(...)` (a permission declaration) anywhere."""
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "need"
        for node in ast.walk(tree)
    )


def test_permissions_are_collected_from_every_declaring_module_and_no_step(
    tools_graph: tuple[dict[str, set[str]], set[str]],
) -> None:
    graph, steps = tools_graph
    declaring = {
        ".".join(p.relative_to(TOOLS.parent).with_suffix("").parts)
        for p in TOOLS.rglob("*.py")
        if p.name != "cloud_permissions.py" and _declares_needs(p)
    }
    assert declaring, "no module declares a permission: the scan is broken"
    assert set(DECLARING_MODULES) == declaring
    assert not set(DECLARING_MODULES) & steps
    assert not graph["tools.cloud_permissions"] & steps


def test_the_checker_finds_planted_cycles_and_upward_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert cycles(graph) == [["a", "b", "c"], ["d"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    layered = {"p.cloud.x": {"p.smoke.y", "p.base"}, "p.smoke.y": {"p.cloud"}, "p.cloud": {"p.cloud.x"}}
    assert upward_imports(layered, ["p.cloud"], ["p.smoke"]) == ["p.cloud.x -> p.smoke.y"]
    assert steps_importing_steps({"s1": {"s2", "lib"}, "s2": {"lib"}}, {"s1", "s2"}) == ["s1 -> s2"]


def test_the_checker_reads_lazy_relative_and_dynamic_imports_from_files(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "cloud").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cloud" / "__init__.py").write_text("from .aws import Aws\n")
    (package / "cloud" / "aws.py").write_text(
        "def prefix():\n    from pkg.smoke import PREFIX  # a lazy import still ties the two\n    return PREFIX\n"
    )
    (package / "smoke.py").write_text("from pkg.cloud import Aws\nPREFIX = 'x'\n")
    (package / "step.py").write_text(
        "import importlib\nimportlib.import_module('pkg.other')\n\nif __name__ == '__main__':\n    pass\n"
    )
    (package / "other.py").write_text("def main():\n    pass\n\n\nif __name__ == '__main__':\n    main()\n")
    graph, steps = read_package(package)
    assert steps == {"pkg.step", "pkg.other"}
    assert cycles(graph) == [["pkg.cloud", "pkg.cloud.aws", "pkg.smoke"]]
    assert upward_imports(graph, ["pkg.cloud"], ["pkg.smoke", *steps]) == ["pkg.cloud.aws -> pkg.smoke"]
    assert steps_importing_steps(graph, steps) == ["pkg.step -> pkg.other"]


# one job per module: past this a module usually does two (settings.py is the declarative table of every setting)
MAX_LINES = 400
LONG_BY_DESIGN = {"settings.py"}


def test_no_module_of_tools_is_over_400_lines() -> None:
    modules = [p for p in TOOLS.rglob("*.py") if "__pycache__" not in p.parts]
    assert len(modules) > 50  # the walk found the package
    long = {
        str(p.relative_to(TOOLS)): n
        for p in modules
        if (n := len(p.read_text().splitlines())) > MAX_LINES and str(p.relative_to(TOOLS)) not in LONG_BY_DESIGN
    }
    assert not long, f"modules over {MAX_LINES} lines (split out what is a job of its own): {long}"
