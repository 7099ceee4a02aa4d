"""PanDA's own `datasets` rows (S08 Datasets table): the dispatch and `_sub` datasets it made.

type: input | dispatch | output. Status flows (reference/panda-server.md §5.7):
  dispatch  defined → completed (activator)          | failed (its subscription failed)
  output    defined → running (subscribed T2 → T1) → tobeclosed → completed (closer)
The vuid is DDM's. Every function takes the caller's connection and never commits.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from panda_server.db import tables as t

SUB_SUFFIX = re.compile(r"_sub\d+$")
DISPATCH_PREFIX = "panda."


def top_level(name: str) -> str:
    """The dataset a `_sub` dataset feeds (`<name>_sub0123` → `<name>`); other names unchanged."""
    return SUB_SUFFIX.sub("", name)


def is_sub(name: str) -> bool:
    return SUB_SUFFIX.search(name) is not None


def add(conn: Connection, *, vuid: str, name: str, type_: str, status: str, nfiles: int,
        now: dt.datetime) -> None:  # fmt: skip
    """Insert a row (an existing name is left alone: a rerun setupper registers nothing twice)."""
    d = t.datasets
    stmt = insert(d).values(vuid=vuid, name=name, type=type_, status=status, numberfiles=nfiles,
                            currentfiles=0, creationdate=now, modificationdate=now, transferStatus=0)  # fmt: skip
    conn.execute(stmt.on_conflict_do_nothing())


def by_vuid(conn: Connection, vuid: str) -> dict[str, Any] | None:
    d = t.datasets
    row = conn.execute(sa.select(d).where(d.c.vuid == vuid)).mappings().first()
    return dict(row) if row else None


def by_name(conn: Connection, name: str) -> dict[str, Any] | None:
    d = t.datasets
    row = conn.execute(sa.select(d).where(d.c.name == name)).mappings().first()
    return dict(row) if row else None


def set_status(conn: Connection, name: str, status: str, *, now: dt.datetime,
               unless: Collection[str] = ()) -> bool:  # fmt: skip
    """Compare-and-set the status (S08 withCriteria "status<>'tobeclosed'"); True if it changed."""
    d = t.datasets
    query = sa.update(d).where(d.c.name == name, d.c.status != status)
    if unless:
        query = query.where(d.c.status.not_in(list(unless)))
    return conn.execute(query.values(status=status, modificationdate=now)).rowcount > 0


def with_status(
    conn: Connection, type_: str, statuses: Collection[str], *, limit: int
) -> list[dict[str, Any]]:
    d = t.datasets
    query = (
        sa.select(d).where(d.c.type == type_, d.c.status.in_(list(statuses)))
        .order_by(d.c.modificationdate, d.c.name).limit(limit)
    )  # fmt: skip
    return [dict(r) for r in conn.execute(query).mappings()]
