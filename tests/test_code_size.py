"""Small modules and short functions: no file of the package over 500 lines, no function over
80 lines (from ``def`` to its end, docstring excluded). ``LONG_FUNCTIONS`` lists the functions
still allowed over the limit: none today, and none may be added."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rareid"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80
EXCEPTIONS: set[str] = set()
#: Functions still over the limit (path, name): each must shrink, none may be added.
LONG_FUNCTIONS: set[tuple[str, str]] = set()


def sources() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).as_posix() not in EXCEPTIONS
    )


def function_lengths(tree: ast.AST) -> list[tuple[str, int, int]]:
    """(name, first line, length without the docstring) of every function of ``tree``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            first = node.body[0]
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                length -= first.end_lineno - first.lineno + 1
            out.append((node.name, node.lineno, length))
    return out


def test_no_module_over_500_lines() -> None:
    assert len(sources()) > 50
    long = {
        path.relative_to(PACKAGE).as_posix(): count
        for path in sources()
        if (count := len(path.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"modules over {MAX_FILE_LINES} lines: {long}"


def test_no_function_over_80_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE)}:{line} {name} ({length} lines)"
        for path in sources()
        for name, line, length in function_lengths(ast.parse(path.read_text()))
        if length > MAX_FUNCTION_LINES
        and (path.relative_to(PACKAGE).as_posix(), name) not in LONG_FUNCTIONS
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_measure_counts_code_not_docstrings() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(81))
    tree = ast.parse(f'def f():\n    """Doc\n\n    more."""\n{body}\n')
    assert function_lengths(tree) == [("f", 1, 82)]
