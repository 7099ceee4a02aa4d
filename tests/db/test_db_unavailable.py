"""A PostgreSQL outage costs requests a clear DBUnavailable, never a stuck connection pool."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from panda_server.db import localpg
from panda_server.db.engine import fetch, make_engine, transaction
from panda_server.errors import DBUnavailable


@pytest.fixture
def private_pg(workdir):
    base = workdir / "pg-restart"
    localpg.init(base)
    port = localpg.free_port()
    url = localpg.start(base, port)
    yield base, port, url
    localpg.stop(base, mode="immediate")


def _query(engine, raw: bool) -> int:
    with transaction(engine) as conn:
        if raw:
            return fetch(conn, "SELECT 1 AS one", {})[0]["one"]
        return conn.execute(sa.text("SELECT 1")).scalar()


@pytest.mark.parametrize("raw", [True, False], ids=["psycopg-path", "sqlalchemy-path"])
def test_restart_costs_at_most_the_pooled_connections(private_pg, raw):
    base, port, url = private_pg
    engine = make_engine(url, pool_size=2, max_overflow=0)
    try:
        with engine.connect() as a, engine.connect() as b:  # two live connections in the pool
            a.execute(sa.text("SELECT 1")), b.execute(sa.text("SELECT 1"))
        localpg.stop(base, mode="immediate")
        with pytest.raises(DBUnavailable):  # down: a clear error
            _query(engine, raw)
        localpg.start(base, port)
        outcomes = []
        for _ in range(4):  # bounded: at most the pool's stale connections may fail
            try:
                outcomes.append(_query(engine, raw))
            except DBUnavailable:
                outcomes.append("unavailable")
        assert outcomes[-1] == 1 and outcomes.count("unavailable") <= 2, outcomes
    finally:
        engine.dispose()
