"""DESIGN.md's layering rule: imports point one way, down the list of layers.

core -> io -> kernels -> engine -> analysis -> datasets -> tools -> widgets -> app: a module
may import its own layer or any layer before it in this list, never one after.
Deferred imports inside functions count too: a layer above stays above. Inside one
package, modules must not import each other in a circle (imports inside functions count).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fourd_widgets"
LAYERS = ["core", "io", "kernels", "engine", "analysis", "datasets", "tools", "widgets", "app"]
# Top-level helper modules that sit at the very bottom (re-exports of core, the version).
BASE = {"_version": -1, "errors": 0}


def _layer_of(parts: list[str]) -> int | None:
    if not parts:
        return None
    head = parts[0]
    if head in LAYERS:
        return LAYERS.index(head)
    return BASE.get(head)


def _imports(path: Path) -> list[tuple[int, list[str]]]:
    """(line, absolute module path inside fourd_widgets) of every import in a module."""
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    package = list(rel[:-1]) if rel[-1] != "__init__" else list(rel[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = base + (node.module.split(".") if node.module else [])
                if not node.module:  # "from . import x" / "from .. import x"
                    for alias in node.names:
                        out.append((node.lineno, target + [alias.name]))
                    continue
                out.append((node.lineno, target))
            elif node.module and node.module.split(".")[0] == "fourd_widgets":
                out.append((node.lineno, node.module.split(".")[1:]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fourd_widgets":
                    out.append((node.lineno, alias.name.split(".")[1:]))
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] in LAYERS)


def test_every_layer_is_checked():
    found = {p.relative_to(PACKAGE).parts[0] for p in MODULES}
    assert {"core", "io", "kernels", "engine", "analysis", "datasets", "app"} <= found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_layer_above(path):
    own = LAYERS.index(path.relative_to(PACKAGE).parts[0])
    bad = []
    for line, target in _imports(path):
        layer = _layer_of(target)
        if layer is not None and layer > own:
            bad.append(f"line {line}: imports fourd_widgets.{'.'.join(target)} ({LAYERS[layer]})")
    assert not bad, f"{path.relative_to(PACKAGE)} ({LAYERS[own]}) imports a layer above it: " + "; ".join(bad)


def test_kernels_know_nothing_of_datacube():
    for path in (PACKAGE / "kernels").glob("*.py"):
        for _line, target in _imports(path):
            assert _layer_of(target) in (None, LAYERS.index("kernels")) or target[:1] == ["kernels"], (
                f"{path.name} imports fourd_widgets.{'.'.join(target)}: kernels work on plain arrays")


def _module_name(path: Path) -> tuple[str, ...]:
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    return rel[:-1] if rel[-1] == "__init__" else rel


def _resolve(target: list[str], known: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The module a target names: the longest prefix that is a module of the package
    (``from .disks import PeakTable`` -> analysis.disks; ``from . import disks`` -> analysis.disks)."""
    for n in range(len(target), 0, -1):
        if tuple(target[:n]) in known:
            return tuple(target[:n])
    return None


def import_graph() -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    """Module -> modules of the same package it imports (top level and inside functions alike)."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    graph: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
    for mod, path in paths.items():
        package = mod[:-1] if path.name != "__init__.py" else mod
        edges = set()
        for _line, target in _imports(path):
            dep = _resolve(target, known)
            # same package only; a submodule's import of its own package (__init__) is not a cycle
            if dep is not None and dep != mod and dep[:-1] == package and dep != package:
                edges.add(dep)
        graph[mod] = edges
    return graph


def import_cycles(graph: dict[tuple[str, ...], set[tuple[str, ...]]]) -> list[list[tuple[str, ...]]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    on: set = set()
    out: list = []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_sees_a_cycle_through_a_deferred_import():
    a, b, c = ("p", "a"), ("p", "b"), ("p", "c")
    assert import_cycles({a: {b}, b: {c}, c: {a}}) == [[a, b, c]]
    assert import_cycles({a: {b}, b: {c}, c: set()}) == []


def test_no_import_cycles_inside_a_package():
    cycles = import_cycles(import_graph())
    assert not cycles, "modules that import each other in a circle (imports inside functions count): " + "; ".join(
        " <-> ".join(".".join(m) for m in group) for group in cycles)


#: Modules that still import another module's private names (outside analysis/; to be mended by their owners).
PRIVATE_IMPORT_DEBTS = {"datasets/scenes.py", "kernels/disk_windows.py"}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_imported_across_modules(path):
    rel = str(path.relative_to(PACKAGE))
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("fourd_widgets")):
            bad += [f"line {node.lineno}: {a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    if rel in PRIVATE_IMPORT_DEBTS:
        assert bad, f"{rel} imports no private name any more: take it off PRIVATE_IMPORT_DEBTS"
        return
    assert not bad, f"{rel} imports private names of another module (make them public or move them): " + "; ".join(bad)


#: Front-end packages a tool session must not import: sessions run and are tested without a browser.
FRONT_END = {"ipywidgets", "anywidget", "traitlets", "bqplot", "IPython"}


@pytest.mark.parametrize("path", sorted((PACKAGE / "tools").rglob("*.py")), ids=lambda p: p.name)
def test_tool_sessions_import_no_front_end(path):
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
        bad += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in FRONT_END]
    assert not bad, f"tools/{path.name} imports a front-end package (views belong in widgets/): " + "; ".join(bad)
