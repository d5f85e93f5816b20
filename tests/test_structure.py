"""Structure rules from DEVELOPERS.md, checked on the source (nothing is imported):

- no import cycles among the modules of leaderboard/, verification/ and workers/;
- the engine (verification/) never imports django, leaderboard or workers;
- no function longer than MAX_FUNCTION_LINES lines in those packages (migrations excepted).

The import graph is read with ast from every module, imports inside functions included (they run
when the function does, so they close cycles just the same). Relative imports are resolved
against the importing module's package, and `from pkg import name` is an edge to the module
pkg.name when there is one, else to pkg. Imports under `if TYPE_CHECKING:` never run and are left
out of the cycle rule (not out of the engine rule: the engine does not name Django at all).
Imports by string (importlib.import_module) cannot be read statically and are not followed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("leaderboard", "verification", "workers")
ENGINE = "verification"
FORBIDDEN_IN_ENGINE = ("django", "leaderboard", "workers")
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Import:
    target: str  # dotted name as written, relative imports resolved
    names: tuple[str, ...]  # for `from target import a, b`; () for `import target`
    line: int
    type_checking_only: bool


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_checking: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node under `node`, with whether it sits in an `if TYPE_CHECKING:` body."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            yield child, type_checking
            for inner in child.body:
                yield inner, True
                yield from _walk(inner, True)
            for inner in child.orelse:
                yield inner, type_checking
                yield from _walk(inner, type_checking)
            continue
        yield child, type_checking
        yield from _walk(child, type_checking)


def imports_of(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node, type_checking in _walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, (), node.lineno, type_checking) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append(Import(target, tuple(a.name for a in node.names), node.lineno, type_checking))
    return found


def _deepest_known(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported project module: line of the first such import} (runtime imports)."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for imp in imports_of(module, path):
            if imp.type_checking_only:
                continue
            targets = [f"{imp.target}.{name}" for name in imp.names if f"{imp.target}.{name}" in modules]
            if len(targets) < len(imp.names) or not imp.names:
                targets.append(imp.target)
            for target in targets:
                known = _deepest_known(target, modules)
                if known is not None and known != module:
                    edges.setdefault(known, imp.line)
        graph[module] = edges
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def one_cycle(component: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the component's first module, as a closed path."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node]):
            if child == start:
                return [*paths[node], start]
            if child in members and child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return component  # unreachable for a strongly connected component


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    steps = [
        f"{a} ({modules[a].relative_to(REPO_ROOT)}:{graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:])
    ]
    return "\n    ".join(steps)


def test_there_are_no_import_cycles():
    modules = module_files()
    graph = import_graph(modules)
    cycles = [one_cycle(component, graph) for component in strongly_connected(graph)]
    message = "\n".join(
        f"import cycle among {len(component)} module(s) {component}; one cycle:\n    {describe_cycle(cycle, graph, modules)}"
        for component, cycle in zip(strongly_connected(graph), cycles)
    )
    assert not cycles, message


def test_the_engine_never_imports_django_the_site_or_the_workers():
    modules = module_files()
    offences = []
    for module, path in modules.items():
        if not (module == ENGINE or module.startswith(ENGINE + ".")):
            continue
        for imp in imports_of(module, path):
            top = imp.target.split(".")[0]
            if top in FORBIDDEN_IN_ENGINE:
                offences.append(f"{path.relative_to(REPO_ROOT)}:{imp.line} imports {imp.target}")
    assert not offences, "verification/ must not import django/leaderboard/workers:\n" + "\n".join(offences)


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    found = []
    for module, path in module_files().items():
        if ".migrations" in module:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return sorted(found)


def test_no_function_is_longer_than_the_limit():
    found = long_functions()
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


# --- the checker checks itself on small made-up packages --------------------------------------------


def test_cycle_finder_reports_a_cycle_and_ignores_a_chain():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 3}, "d": {"a": 1}}
    [component] = strongly_connected(graph)
    assert component == ["a", "b", "c"] and one_cycle(component, graph) == ["a", "b", "c", "a"]
    assert strongly_connected({"a": {"b": 1}, "b": {}, "c": {"a": 1}}) == []


def test_imports_are_resolved_relative_from_inside_functions_and_to_submodules(tmp_path):
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..other import thing\n"
        "if TYPE_CHECKING:\n"
        "    import pkg.typed\n"
        "def f():\n"
        "    import pkg.lazy\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    imports = imports_of("pkg.sub.mod", path)
    by_target = {(i.target, i.names): i.type_checking_only for i in imports}
    assert by_target == {
        ("typing", ("TYPE_CHECKING",)): False,
        ("pkg.sub", ("sibling",)): False,
        ("pkg.other", ("thing",)): False,
        ("pkg.typed", ()): True,
        ("pkg.lazy", ()): False,
    }
    modules = {name: path for name in ("pkg.sub.mod", "pkg.sub.sibling", "pkg.other", "pkg.lazy", "pkg.typed", "pkg", "pkg.sub")}
    graph = import_graph(modules)
    assert set(graph["pkg.sub.mod"]) == {"pkg.sub.sibling", "pkg.other", "pkg.lazy"}
