"""The layout's rules, read from the code: no import cycle between modules, no package
importing one its ``__init__`` does not allow (layers point down), no runtime module
importing the loopback exchange, and the engine never importing strategies, models or
workflows by name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = ("engine", "strategies", "models", "workflows")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for top in TOP for p in sorted((ROOT / top).rglob("*.py"))}


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, at any depth of the file (lazy imports count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in TOP:
                found.add(name)
    return found


def package_of(module: str) -> str:
    """The layer package a module belongs to: ``engine.X`` for the engine's packages."""
    parts = module.split(".")
    if parts[0] == "engine" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def allowed(known: dict[str, Path]) -> dict[str, set[str]]:
    """Each engine package's ``May import:`` line from its ``__init__`` docstring."""
    rules: dict[str, set[str]] = {}
    for name, path in known.items():
        if name.count(".") == 1 and name.startswith("engine.") and path.name in ("__init__.py", "cli.py"):
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            match = re.search(r"May import:\s*(.+?)(?:\n\n|\n[A-Z]|$)", doc, re.S)
            assert match, f"{path}: the docstring must say what the package may import ('May import: ...')"
            text = match.group(1).replace("\n", " ")
            rules[name] = set() if text.startswith("nothing") else set(re.findall(r"engine\.\w+", text))
    return rules


KNOWN = modules()
GRAPH = {name: imports_of(path, KNOWN) - {name} for name, path in KNOWN.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: each component of two or more is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def upward(graph: dict[str, set[str]], rules: dict[str, set[str]]) -> list[str]:
    """Imports from one engine package into another that its rules do not allow."""
    wrong = []
    for module, targets in graph.items():
        package = package_of(module)
        if package not in rules:
            continue
        for target in targets:
            other = package_of(target)
            if other in (package, "engine") or not other.startswith("engine"):
                continue
            if other not in rules[package]:
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def test_no_import_cycle():
    assert not cycles(GRAPH), f"import cycles: {cycles(GRAPH)}"


def test_packages_import_only_what_their_init_allows():
    rules = allowed(KNOWN)
    assert {"engine.core", "engine.bars", "engine.broker", "engine.feeds", "engine.ledger",
            "engine.run", "engine.loopback"} <= set(rules)
    wrong = upward(GRAPH, rules)
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_runtime_module_imports_the_loopback_exchange():
    wrong = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
             if t.startswith("engine.loopback") and not m.startswith("engine.loopback")]
    assert not wrong, wrong


def test_the_engine_never_imports_plugins_by_name():
    wrong = [f"{m} -> {t}" for m, targets in GRAPH.items() if m.startswith("engine") for t in targets
             if t.split(".")[0] in ("strategies", "models", "workflows")]
    assert not wrong, wrong


@pytest.mark.parametrize("top", TOP)
def test_no_module_over_400_lines(top):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / top).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_the_checks_see_a_planted_cycle_and_an_upward_import():
    rules = allowed(KNOWN)
    planted = {**GRAPH, "engine.bars.kline_files": GRAPH["engine.bars.kline_files"] | {"engine.run.session"}}
    assert upward(planted, rules) == ["engine.bars.kline_files -> engine.run.session"]
    ring = {"engine.x.a": {"engine.x.b"}, "engine.x.b": {"engine.x.a"}, "engine.x.c": {"engine.x.a"}}
    assert cycles(ring) == [["engine.x.a", "engine.x.b"]]
