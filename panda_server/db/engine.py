"""Engine creation and the one transaction helper every use case goes through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
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


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One short transaction: commit on success, roll back on any error.

    Driver connection failures become DBUnavailable (503 / StatusCode 30) with the cause kept.
    """
    try:
        with engine.begin() as conn:
            yield conn
    except sa.exc.OperationalError as exc:
        if exc.connection_invalidated or "connect" in str(exc.orig).lower():
            raise DBUnavailable() from exc
        raise
    except sa.exc.InterfaceError as exc:
        raise DBUnavailable() from exc
