"""The package's import graph: no cycles (function-level imports count), layers point down."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

import spec_tool_node

PACKAGE = Path(spec_tool_node.__file__).parent
ROOT = PACKAGE.name

CORE = (
    "actions",
    "assets",
    "bundle",
    "cascade",
    "chat_models",
    "config",
    "costs",
    "errors",
    "example_files",
    "jsonl",
    "middleware",
    "modes",
    "node",
    "safety",
    "verifiers",
)
"""What an agent imports at run time; it never needs evaluation, training or BFCL."""
ABOVE_CORE = ("bfcl", "evaluation", "training")
TOP = ("cli", "serving")
"""Command-line commands; they may import anything."""


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (resolved to the deepest module named)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative import
                    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}".rstrip(".")
                names = [f"{base}.{alias.name}" for alias in node.names] or [base]
            for name in names:
                target = resolve(name) if name.split(".")[0] == ROOT else None
                if target and target not in (module, ROOT):
                    targets.add(target)
        graph[module] = targets
    return graph


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30  # the walk found the package
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")


def test_the_cycle_check_sees_function_level_imports(tmp_path):
    tree = ast.parse(
        "def f():\n    from spec_tool_node import cli\nif TYPE_CHECKING:\n    import x\n"
    )
    assert [ast.unparse(n) for n in _runtime_imports(tree)] == ["from spec_tool_node import cli"]


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def test_core_never_imports_evaluation_training_or_bfcl():
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if _layer(module) in CORE
        for target in targets
        if _layer(target) in ABOVE_CORE
    )
    assert wrong == []
    unplaced = {_layer(m) for m in import_graph()} - {*CORE, *ABOVE_CORE, *TOP, ROOT}
    assert not unplaced, f"place new modules in CORE, ABOVE_CORE or TOP: {sorted(unplaced)}"
