"""No function in the package is over MAX_LINES lines (its docstring not counted): long
functions hide several jobs.

A function that grows past the limit is split into named steps (see dse/train/full.py's
``train_config`` or dse/cost/network_bench.py's ``composite_benchmarks`` for examples).
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dse"
MAX_LINES = 80


def _long_functions(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
                if lines > MAX_LINES:
                    found.append(f"{path.relative_to(package.parent)}:{node.lineno} "
                                 f"{node.name} ({lines} lines)")
    return found


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0] if node.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


def test_no_function_is_longer_than_the_limit() -> None:
    assert _long_functions() == []


def test_the_check_sees_a_long_function(tmp_path) -> None:
    pkg = tmp_path / "dse"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    doc = '    """A docstring\n\n    over several lines."""\n'
    (pkg / "long.py").write_text(f"def too_long():\n{body}\n\n\ndef documented():\n{doc}"
                                 f"{body[:body.rindex(chr(10))]}\n")
    assert _long_functions(pkg) == [f"dse/long.py:1 too_long ({MAX_LINES + 1} lines)"]
