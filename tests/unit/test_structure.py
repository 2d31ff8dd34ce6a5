"""The house's shape, checked: no import circles, connectors reached only through their interfaces,
a small top level in engine/, and no long module without a reason written at its top.

Read statically (``ast``), so a function-level import counts as much as one at the top: a circle
hidden inside a function is still a circle. Imports under ``if TYPE_CHECKING:`` do not count
(they are never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "connectors")
MAX_TOP_LEVEL_MODULES = 10
MAX_LINES = 400
REASON_MARK = "Longer than 400 lines because"
# what code outside connectors/ may import from connectors/: the interfaces, the registry, the
# reference and test helpers; never a specific connector's internals
CONNECTOR_INTERFACES = {
    "connectors",
    "connectors.base",
    "connectors.registry",
    "connectors.memory",
    "connectors.testing",
    "connectors.testing_transport",
    "connectors.credentials",
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:  # Alembic's env.py and revisions: run by Alembic, not imported
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement except those under ``if TYPE_CHECKING:``."""

    def walk(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (n for c in child.orelse for n in walk_one(c))
                continue
            yield from walk_one(child)

    def walk_one(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from walk(node)

    yield from walk(tree)


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports (the deepest known module each import names)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in candidates:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                names.add(name)
    return names


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imported(module, path, modules) for module, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def _is_package_parent(importer: str, imported: str) -> bool:
    """A package's ``__init__`` re-exporting its own modules is not a circle of design."""
    return imported.startswith(importer + ".")


def test_no_import_circle_among_the_projects_modules() -> None:
    graph = _import_graph()
    graph = {m: {t for t in targets if not _is_package_parent(m, t)} for m, targets in graph.items()}
    assert _circles(graph) == []


def test_no_module_outside_connectors_imports_a_connectors_internals() -> None:
    graph = _import_graph()
    reaching_in = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if not module.startswith("connectors")
        for target in targets
        if target.startswith("connectors") and target not in CONNECTOR_INTERFACES
    )
    assert reaching_in == []


def test_engine_top_level_holds_at_most_ten_modules_besides_its_packages() -> None:
    top = sorted(p.stem for p in (ROOT / "engine").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_module_over_400_lines_says_why_at_its_top() -> None:
    unexplained = []
    for path in _modules().values():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_LINES and REASON_MARK not in docstring:
            unexplained.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert unexplained == []


def test_the_structure_checks_see_a_circle_when_there_is_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
