"""No SQL is built from strings (issue 4 hardening): every statement is SQLAlchemy Core or a
constant with bound parameters. This walks the code that talks to PostgreSQL and fails on an
execute/fetch/text call whose SQL argument is an f-string, a %-format, a concatenation or a
.format() call — the ways user input gets into SQL."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "panda_server",
    "schedconfig",
    "client",
    "migrations",
    "autopilot",
]  # code that handles requests and input
SQL_CALLS = {"execute", "exec_driver_sql", "fetch", "text", "executemany"}


def _built(node: ast.AST) -> bool:
    """True if the expression builds a string at run time from parts."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return True
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("format", "join")
    ):
        return isinstance(node.func.value, ast.Constant)
    return False


def offences(source: str) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in SQL_CALLS:
            continue
        args = list(node.args)
        if name == "fetch" and len(args) >= 2:
            args = args[1:2]  # engine.fetch(conn, sql, params)
        if args and _built(args[0]):
            lines.append(node.lineno)
    return lines


def test_the_checker_catches_built_sql():
    bad = 'c.execute(f"select * from t where a = {x}")\nsa.text("select " + x)\nfetch(conn, "select %s" % x, {})\n'
    good = 'c.execute("select * from t where a = %(a)s", {"a": x})\nsa.select(t).where(t.c.a == x)\n'
    assert offences(bad) == [1, 2, 3]
    assert offences(good) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_sql_is_built_from_strings(package):
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        found += [f"{path.relative_to(ROOT)}:{line}" for line in offences(path.read_text())]
    assert found == []
