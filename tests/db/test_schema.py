"""The Alembic-migrated database is exactly what panda_server/db/tables.py describes."""

from __future__ import annotations

import sqlalchemy as sa

from panda_server.db import migrate


def test_migrated_schema_equals_table_definitions(engine):
    assert migrate.current(engine) is not None
    assert migrate.differences(engine) == []


def test_sequences_exist_and_pandaids_start_high(engine):
    with engine.connect() as conn:
        names = set(conn.execute(sa.text("select relname from pg_class where relkind='S'")).scalars())
        assert {"jobsdefined4_pandaid_seq", "filestable4_row_id_seq", "subcounter_subid_seq"} <= names
        start = conn.execute(
            sa.text("select start_value from pg_sequences where sequencename='jobsdefined4_pandaid_seq'")
        )
        assert start.scalar_one() == 1000


def test_upgrade_is_idempotent(engine):
    migrate.upgrade(engine)
    assert migrate.differences(engine) == []
