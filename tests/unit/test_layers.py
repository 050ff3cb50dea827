"""The layering of DESIGN.md §1, read from the source with ``ast`` (nothing is imported).

Dependency direction is ``transports → bot → pipeline``, and ``config`` (settings and the
exception root) is imported by all and imports none of them. Only the composition root
(``bot/daemon.py``) and the CLI's lazy subcommands (imports inside a function of
``bot/cli.py``) know a transport package; no layer below ``transports/`` imports a transport
SDK. And no import circle: every import counts here, including lazy ones and those under
``if TYPE_CHECKING:`` (a circle of type-only imports is still a circle for a reader).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "config", "pipeline", "transports")
TRANSPORT_SDKS = ("nio", "slack_sdk", "slack_bolt", "discord")
COMPOSITION_ROOT = "bot.daemon"
LAZY_ONLY = "bot.cli"  # its subcommands may import a transport inside the function

# Circles allowed, each as the set of nodes it joins: none.
ALLOWED_CYCLES: set[frozenset[str]] = set()


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # the importing module, e.g. "bot.llm.select"
    target: str  # the module imported (ours resolved to a module; others as written)
    line: int
    in_function: bool


def _module_files() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _module_files()


def _ours(name: str) -> str | None:
    """The module of ours that importing ``name`` runs (a name inside it maps to it)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    in_function = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        lazy = id(node) in in_function
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, _ours(alias.name) or alias.name, node.lineno, lazy)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            for alias in node.names:
                target = _ours(f"{base}.{alias.name}") or _ours(base) or base
                yield Import(module, target, node.lineno, lazy)


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _layer(name: str) -> str:
    return name.partition(".")[0]


def _where(imp: Import) -> str:
    return f"{MODULES[imp.source].relative_to(ROOT)}:{imp.line} imports {imp.target}"


def test_the_module_list_is_read() -> None:
    assert {"bot.daemon", "bot.llm.chat", "config.errors", "pipeline.store"} <= set(MODULES)
    assert any(imp.target == "pipeline.store" for imp in IMPORTS if imp.source == "bot.daemon")


def test_pipeline_and_config_import_no_upper_layer() -> None:
    upper = {"pipeline": {"bot", "transports"}, "config": {"bot", "transports", "pipeline"}}
    wrong = [
        _where(imp) for imp in IMPORTS if _layer(imp.target) in upper.get(_layer(imp.source), set())
    ]
    assert wrong == []


def test_only_the_composition_root_and_lazy_cli_commands_know_a_transport() -> None:
    wrong = [
        _where(imp)
        for imp in IMPORTS
        if _layer(imp.source) == "bot"
        and _layer(imp.target) == "transports"
        and imp.source != COMPOSITION_ROOT
        and not (imp.source == LAZY_ONLY and imp.in_function)
    ]
    assert wrong == []


def test_no_layer_below_the_transports_imports_a_transport_sdk() -> None:
    wrong = [
        _where(imp)
        for imp in IMPORTS
        if _layer(imp.source) != "transports" and _layer(imp.target) in TRANSPORT_SDKS
    ]
    assert wrong == []


def _node(module: str) -> str:
    """A sub-package (``bot.llm``, ``transports.slack``) counts as one node of the graph."""
    return ".".join(module.split(".")[:2]) if module.count(".") >= 2 else module


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {_node(module): set() for module in MODULES}
    for imp in IMPORTS:
        source, target = _node(imp.source), _node(imp.target)
        if target in graph and target != source:
            graph[source].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = {stack.pop()}
            while node not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_circle_through_a_sub_package() -> None:
    graph = {"a": {"b.x"}, "b.x": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [frozenset({"a", "b.x", "c"})]
    assert _node("bot.llm.select") == "bot.llm" and _node("bot.mcp_bridge") == "bot.mcp_bridge"


def test_there_is_no_import_circle() -> None:
    graph = _graph()
    cycles = set(_cycles(graph))
    described = [
        " → ".join(f"{n} (→ {', '.join(sorted(graph[n] & cycle))})" for n in sorted(cycle))
        for cycle in cycles - ALLOWED_CYCLES
    ]
    assert described == []
    assert cycles >= ALLOWED_CYCLES, "an allowed circle is gone: remove it from ALLOWED_CYCLES"
