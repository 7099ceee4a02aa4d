"""Engine creation and the one transaction helper every use case goes through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.rows import dict_row
from sqlalchemy.engine import Connection, Engine

from panda_server.errors import DBUnavailable


def make_engine(url: str, *, pool_size: int = 8, max_overflow: int = 8) -> Engine:
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # no ping per checkout (a round trip on every request): a connection broken by a DB
        # restart fails one request with DBUnavailable and the pool is invalidated and refilled
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"connect_timeout": 10, "application_name": "panda-server"},
    )


def fetch(conn: Connection, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run constant SQL (psycopg `%(name)s` parameters) on the DBAPI connection of `conn`, inside
    its transaction; rows as dicts. For the dispatcher's hot paths, which would otherwise spend
    more CPU in SQLAlchemy's per-statement machinery than PostgreSQL spends running them."""
    with conn.connection.dbapi_connection.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One short transaction: commit on success, roll back on any error.

    Driver connection failures become DBUnavailable (503 / StatusCode 30) with the cause kept.
    """
    try:
        with engine.begin() as conn:
            try:
                yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                # raised by fetch() below, outside SQLAlchemy: drop the connection from the pool
                # ourselves so that the next request gets a fresh one
                conn.invalidate(exc)
                raise DBUnavailable() from exc
    except sa.exc.OperationalError as exc:
        if exc.connection_invalidated or "connect" in str(exc.orig).lower():
            raise DBUnavailable() from exc
        raise
    except sa.exc.InterfaceError as exc:
        raise DBUnavailable() from exc
