"""The package's import graph: no circles, no upward imports, no hidden imports in functions.

Every module of ``dse`` is read with :mod:`ast` (nothing is imported), its ``import`` and
``from ... import`` statements are resolved to ``dse`` modules, and three rules are checked:

- no import circle between ``dse`` modules (module-level and function-level imports both count:
  an import moved into a function still ties the two modules together);
- no module imports a layer above its own, and two different packages of the same layer do not
  import each other (``LAYERS`` below);
- no ``dse`` import inside a function, except the reasoned entries of ``INNER_IMPORTS_ALLOWED``.

Imports under ``if TYPE_CHECKING:`` are for annotations only and are ignored. Last, two light
entry points are imported in a fresh interpreter to check that they do not load torch.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dse"

# The layers, bottom (0) to top. A module may import its own layer or any lower one. Each layer
# maps a unit name to the module prefixes it owns; inside one unit any direction is fine (but no
# circle), while two units of the same layer must not import each other (data vs models,
# finetune vs search). ``dse`` alone stands for the package's ``__init__.py``.
LAYERS: list[dict[str, tuple[str, ...]]] = [
    # 0: foundation: errors, the registry class, YAML helpers, the cache folder, the torch
    #    device choice, package data (search spaces, profiles).
    {"foundation": ("dse", "dse.errors", "dse.registry", "dse.yamlio", "dse.cache",
                    "dse.device", "dse.resources", "dse.paths", "dse.written", "dse.plugins")},
    # 1: what a design is made of: datasets, and the networks (backbones, exits, criteria).
    {"data": ("dse.data",), "models": ("dse.models",)},
    # 2: costs of a network: MAC accounting, hardware profiles, latency and energy.
    {"cost": ("dse.cost",)},
    # 3: the typed design a trial decodes into and a config file holds.
    {"design": ("dse.design",)},
    # 4: evaluating a multi-exit network: outputs, thresholds, metrics, budgets.
    {"evaluation": ("dse.evaluation",)},
    # 5: the training loops.
    {"train": ("dse.train",)},
    # 6: what uses training: fine-tuning, the search, the export of chosen designs.
    {"finetune": ("dse.finetune",), "search": ("dse.search",), "export": ("dse.export",)},
    # 7: reports read studies and computed results; they run nothing.
    {"report": ("dse.report",)},
    # 8: the Python API a script calls.
    {"api": ("dse.api",)},
    # 9: the command line, on top of everything.
    {"cli": ("dse.cli",)},
]

# (importing module, imported module) -> why that import must sit inside a function.
INNER_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One resolved import of a ``dse`` module."""

    source: str  # importing module
    target: str  # imported module
    line: int
    in_function: bool

    def where(self) -> str:
        return f"{_path_of(self.source)}:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _all_modules()


def _path_of(module: str) -> str:
    return str(MODULES[module].relative_to(ROOT))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST, in_function: bool = False):
    """Yield (import node, in_function) for every import outside ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _statements(ast.Module(body=[child], type_ignores=[]), in_function)
        else:
            inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                     ast.Lambda))
            yield from _statements(node, inner)


def _resolve(module: str, node: ast.Import | ast.ImportFrom, is_package: bool) -> list[str]:
    """The ``dse`` modules one statement imports (a name that is a submodule counts as it)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name == "dse" or a.name.startswith("dse.")]
    if node.level:
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if base != "dse" and not base.startswith("dse."):
        return []
    targets = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        targets.append(sub if sub in MODULES else base)
    return sorted(set(targets))


def _imports_of(module: str, source: str, is_package: bool = False) -> list[Import]:
    """The ``dse`` imports of one module's source text (``is_package``: an ``__init__.py``)."""
    found = []
    for node, in_function in _statements(ast.parse(source)):
        for target in _resolve(module, node, is_package):
            if target != module:
                found.append(Import(module, target, node.lineno, in_function))
    return found


def _imports() -> list[Import]:
    return [imp for module, path in MODULES.items()
            for imp in _imports_of(module, path.read_text(), path.name == "__init__.py")]


IMPORTS = _imports()


def _unit(module: str) -> tuple[int, str] | None:
    """(layer, unit) of a module by its longest listed prefix; ``dse`` matches only itself."""
    best: tuple[int, int, str] | None = None
    for rank, units in enumerate(LAYERS):
        for unit, prefixes in units.items():
            for p in prefixes:
                if module == p or (p != "dse" and module.startswith(p + ".")):
                    if best is None or len(p) > best[0]:
                        best = (len(p), rank, unit)
    return None if best is None else (best[1], best[2])


def _cycles(edges: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """(modules, one closed path through them) per circle: the strongly connected components
    of more than one module (Tarjan), each with its shortest cycle from its first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [(c, _closed_path(c, edges)) for c in sorted(components)]


def _closed_path(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """The shortest path from the component's first module back to itself (breadth first)."""
    start, members = component[0], set(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, set()) & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")


def _fail(title: str, lines: list[str]) -> None:
    if lines:
        pytest.fail(f"{title} ({len(lines)}):\n  " + "\n  ".join(lines), pytrace=False)


def test_every_module_has_a_layer() -> None:
    missing = [f"{_path_of(m)} ({m})" for m in MODULES if _unit(m) is None]
    _fail("modules missing from LAYERS in tests/test_layers.py", missing)


def test_no_import_circles() -> None:
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], Import] = {}
    for imp in IMPORTS:
        edges.setdefault(imp.source, set()).add(imp.target)
        where.setdefault((imp.source, imp.target), imp)
    lines = []
    for component, path in _cycles(edges):
        steps = [f"{a} -> {b} ({where[a, b].where()})" for a, b in zip(path, path[1:])]
        lines.append("circle: " + "; ".join(steps))
        if len(component) > len(path) - 1:
            lines.append(f"  (the circle ties {len(component)} modules: {', '.join(component)})")
    _fail("import circles between dse modules", lines)


def test_no_upward_or_sideways_imports() -> None:
    lines = []
    for imp in IMPORTS:
        src, dst = _unit(imp.source), _unit(imp.target)
        if src is None or dst is None or src == dst:
            continue
        if dst[0] > src[0]:
            lines.append(f"{imp.where()}: {imp.source} (layer {src[0]} {src[1]}) imports "
                         f"{imp.target} (layer {dst[0]} {dst[1]}), a layer above")
        elif dst[0] == src[0]:
            lines.append(f"{imp.where()}: {imp.source} ({src[1]}) imports {imp.target} "
                         f"({dst[1]}), a different package of the same layer {src[0]}")
    _fail("imports against the layer order", lines)


def test_no_dse_imports_inside_functions() -> None:
    lines = [f"{imp.where()}: {imp.source} imports {imp.target} inside a function"
             for imp in IMPORTS
             if imp.in_function and (imp.source, imp.target) not in INNER_IMPORTS_ALLOWED]
    _fail("dse imports inside functions (move them to the module top)", lines)


def test_allowed_inner_imports_still_exist() -> None:
    """An allow-list entry whose import has gone must be removed, so the list only shrinks."""
    present = {(i.source, i.target) for i in IMPORTS if i.in_function}
    stale = [f"{a} -> {b}" for a, b in INNER_IMPORTS_ALLOWED if (a, b) not in present]
    _fail("stale entries in INNER_IMPORTS_ALLOWED", stale)


def _loads_torch(statement: str) -> bool:
    """Run ``statement`` in a fresh interpreter on this checkout; did it load torch?"""
    code = f"{statement}\nimport sys\nprint('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip().splitlines()[-1] == "True"


def test_foundation_loads_no_torch() -> None:
    """Everything of layer 0 but the torch device choice imports without torch."""
    assert not _loads_torch("import dse.errors, dse.registry, dse.yamlio, dse.cache")


def test_cost_model_loads_no_torch() -> None:
    assert not _loads_torch("import dse.cost.latency")


def test_numpy_evaluation_loads_no_torch() -> None:
    """Threshold sweeps and metrics on cached outputs are numpy only (exit criteria included)."""
    assert not _loads_torch("import dse.evaluation")


def test_pareto_and_hypervolume_load_no_torch() -> None:
    assert not _loads_torch("import dse.search.pareto")
    assert not _loads_torch("from dse.search.pareto import hypervolume, normalised_hypervolume")


# --- the checker itself -----------------------------------------------------------------------

def test_checker_resolves_relative_and_submodule_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import _resnets\n"
        "from .backbones import build_backbone\n"
        "from dse.errors import ConfigError\n"
        "import dse.cost.latency\n"
        "if TYPE_CHECKING:\n"
        "    from dse.train.trained import LoadedModel\n"
        "def f():\n"
        "    from dse.data import load_dataset\n"
    )
    found = {(i.target, i.in_function) for i in _imports_of("dse.models.zoo", source)}
    assert found == {("dse.models._resnets", False), ("dse.models.backbones", False),
                     ("dse.errors", False), ("dse.cost.latency", False), ("dse.data", True)}


def test_checker_finds_a_circle_and_its_path() -> None:
    edges = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"e2"}, "e2": set()}
    assert _cycles(edges) == [(["a", "b", "c"], ["a", "b", "c", "a"])]


def test_checker_places_modules_by_longest_prefix() -> None:
    assert _unit("dse") == (0, "foundation")
    assert _unit("dse.models._registry") == (1, "models")
    assert _unit("dse.design.files") == (3, "design")
    assert _unit("dse.cli.study_report") == (9, "cli")
    assert _unit("dse.nowhere") is None
