"""The pilot's final output report, kept for the Adder (S25 job_output_report)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.db.engine import fetch

_SAVE = """
    INSERT INTO job_output_report ("PandaID", "jobStatus", data, "attemptNr", "prodSourceLabel", "timeStamp",
                                   "lockedBy", "lockedTime")
    VALUES (%(pid)s, %(status)s, %(data)s, %(attempt)s, %(label)s, %(now)s, NULL, NULL)
    ON CONFLICT ("PandaID") DO UPDATE SET "jobStatus" = %(status)s, data = %(data)s, "attemptNr" = %(attempt)s,
        "prodSourceLabel" = %(label)s, "timeStamp" = %(now)s, "lockedBy" = NULL, "lockedTime" = NULL
    """


def save(
    conn: Connection,
    panda_id: int,
    *,
    pilot_status: str,
    data: str | None,
    attempt_nr: int | None,
    label: str | None,
    now: dt.datetime,
) -> None:
    """Keep (or replace) the pilot's final report of a job for the Adder."""
    fetch(
        conn,
        _SAVE,
        dict(pid=panda_id, status=pilot_status, data=data, attempt=attempt_nr, label=label, now=now),
    )


def exists(conn: Connection, panda_id: int) -> bool:
    r = t.job_output_report
    return conn.execute(sa.select(r.c.PandaID).where(r.c.PandaID == panda_id)).first() is not None


def take(
    conn: Connection,
    *,
    limit: int,
    worker: str,
    now: dt.datetime,
    stale_after: dt.timedelta = dt.timedelta(minutes=10),
) -> list[dict[str, Any]]:
    """Lock up to `limit` reports for one adder (skipping those other adders hold right now)."""
    r = t.job_output_report
    query = (
        sa.select(r)
        .where(sa.or_(r.c.lockedBy.is_(None), r.c.lockedTime < now - stale_after))
        .order_by(r.c.timeStamp)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    found = [dict(row) for row in conn.execute(query).mappings()]
    if found:
        ids = [row["PandaID"] for row in found]
        conn.execute(sa.update(r).where(r.c.PandaID.in_(ids)).values(lockedBy=worker, lockedTime=now))
    return found


def delete(conn: Connection, panda_id: int) -> None:
    conn.execute(sa.delete(t.job_output_report).where(t.job_output_report.c.PandaID == panda_id))
