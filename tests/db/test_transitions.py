"""Every (from, to) pair of job states: allowed ones move the row to the right table, others are
refused with StateConflict and change nothing."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from panda_server.db import tables as t
from panda_server.errors import NotFound, StateConflict
from panda_server.protocol.states import ALLOWED, TABLE_OF, TERMINAL, JobStatus
from panda_server.taskbuffer import jobs
from tests.support.dbjobs import insert_job

NOW = dt.datetime(2026, 11, 24, 12, 0, 0)
PAIRS = [(a, b) for a in JobStatus for b in JobStatus if a != b]


def _where(conn, panda_id):
    for name, table in t.JOB_TABLE.items():
        row = conn.execute(sa.select(table).where(table.c.PandaID == panda_id)).mappings().first()
        if row is not None:
            return name, row
    return None, None


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_transition(engine, old, new):
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            panda_id = insert_job(conn, old, now=NOW - dt.timedelta(hours=1))
            if new in ALLOWED[old]:
                row = jobs.set_status(conn, panda_id, new, now=NOW, values={"pilotErrorDiag": "x" * 600})
                table, stored = _where(conn, panda_id)
                assert table == TABLE_OF[new], f"{old}->{new} landed in {table}"
                assert stored["jobStatus"] == new.value == row["jobStatus"]
                assert stored["stateChangeTime"] == NOW and stored["modificationTime"] == NOW
                assert len(stored["pilotErrorDiag"]) == 500  # truncated to the column size
                # exactly one row across the four tables
                assert (
                    sum(
                        conn.execute(sa.select(sa.func.count()).where(tb.c.PandaID == panda_id)).scalar_one()
                        for tb in t.JOB_TABLE.values()
                    )
                    == 1
                )
            else:
                with pytest.raises(StateConflict, match=f"is {old.value}; cannot become {new.value}"):
                    jobs.set_status(conn, panda_id, new, now=NOW)
                table, stored = _where(conn, panda_id)
                assert (table, stored["jobStatus"]) == (TABLE_OF[old], old.value)
                assert stored["modificationTime"] == NOW - dt.timedelta(hours=1)
        finally:
            trans.rollback()


def test_terminal_states_have_no_exits():
    for state in TERMINAL:
        assert ALLOWED[state] == frozenset()
    # and every non-terminal state can reach a terminal one (nothing gets stuck)
    for state in set(JobStatus) - TERMINAL:
        assert ALLOWED[state] & TERMINAL, state


def test_expect_narrows_the_source(engine):
    with engine.connect() as conn, conn.begin() as trans:
        panda_id = insert_job(conn, JobStatus.running)
        with pytest.raises(StateConflict):
            jobs.set_status(conn, panda_id, JobStatus.holding, now=NOW, expect=[JobStatus.starting])
        assert jobs.set_status(conn, panda_id, JobStatus.holding, now=NOW, expect=[JobStatus.running])
        trans.rollback()


def test_unknown_job_is_not_found(engine):
    with engine.connect() as conn, conn.begin() as trans:
        with pytest.raises(NotFound):
            jobs.set_status(conn, 99_999_999, JobStatus.failed, now=NOW)
        trans.rollback()
