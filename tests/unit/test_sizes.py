"""The package stays readable in parts: no module over 400 lines, no function over 60 (issue 25).

A table of command-line options is one long function by nature (cli.build_parser): it is listed,
with its own ceiling, so that it cannot grow into something else unnoticed.
"""

import ast
from pathlib import Path

from conftest import REPO

MODULE_LINES = 400
FUNCTION_LINES = 60
TABLES = {("harness/cli.py", "build_parser"): 100}  # argv tables: the options one after another


def sources() -> list[Path]:
    return sorted((REPO / "harness").rglob("*.py"))


def test_no_module_is_over_its_limit():
    long = {str(p.relative_to(REPO)): n for p in sources() if (n := len(p.read_text().splitlines())) > MODULE_LINES}
    assert long == {}, f"split these modules (over {MODULE_LINES} lines): {long}"


def test_no_function_is_over_its_limit():
    long = {}
    for p in sources():
        rel = str(p.relative_to(REPO))
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > TABLES.get((rel, node.name), FUNCTION_LINES):
                    long[f"{rel}:{node.lineno} {node.name}"] = lines
    assert long == {}, f"split these functions (over {FUNCTION_LINES} lines): {long}"


def test_the_listed_tables_exist():
    """A table that was split or renamed leaves its exception behind: the list names only real ones."""
    found = {(str(p.relative_to(REPO)), n.name) for p in sources() for n in ast.walk(ast.parse(p.read_text()))
             if isinstance(n, ast.FunctionDef)}
    assert set(TABLES) <= found
