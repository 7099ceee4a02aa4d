"""The job rows: the one guarded path for status changes, and moves between the job tables.

Every function takes the caller's connection and never commits (the caller owns the
transaction). A status change is a conditional UPDATE (same table) or DELETE … RETURNING +
INSERT (another table) that names the states it may come from; zero rows means someone else
moved the job first, and StateConflict is raised instead of overwriting.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.errors import NotFound, StateConflict
from panda_server.protocol.jobspec import DIAG_LIMITS
from panda_server.protocol.states import ALLOWED, TABLE_OF, JobStatus, sources_of
from panda_server.taskbuffer import rows

log = logging.getLogger(__name__)


def truncate_diags(values: Mapping[str, Any]) -> dict[str, Any]:
    """Cut diag texts to their column size (S25 JobDispatcher truncation)."""
    out = dict(values)
    for name, limit in DIAG_LIMITS.items():
        if isinstance(out.get(name), str) and len(out[name]) > limit:
            out[name] = out[name][:limit]
    return out


def set_status(
    conn: Connection,
    panda_id: int,
    new: JobStatus | str,
    *,
    now: dt.datetime,
    expect: Collection[JobStatus | str] | None = None,
    values: Mapping[str, Any] | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """Move one job to `new`, from one of the states ALLOWED to reach it (narrowed by `expect`).

    Returns the new row. Raises NotFound if the job does not exist, StateConflict if it is in a
    state from which `new` is not allowed (or not expected).
    """
    new = JobStatus(new)
    allowed_from = sources_of(new)
    if expect is not None:
        allowed_from = allowed_from & {JobStatus(s) for s in expect}
    update = truncate_diags(values or {})
    update.update(jobStatus=new.value, modificationTime=now, stateChangeTime=now)
    target = TABLE_OF[new]
    by_table: dict[str, list[str]] = {}
    for s in allowed_from:
        by_table.setdefault(TABLE_OF[s], []).append(s.value)
    for table_name, states in by_table.items():
        row = _move(conn, panda_id, table_name, target, states, update)
        if row is not None:
            log.info("PandaID=%s status %s -> %s %s", panda_id, row["_from"], new.value, reason)
            return row
    _raise_why(conn, panda_id, new)
    raise AssertionError("unreachable")


def _move(
    conn: Connection, panda_id: int, source: str, target: str, states: list[str], update: Mapping[str, Any]
) -> dict[str, Any] | None:
    src = t.JOB_TABLE[source]
    where = sa.and_(src.c.PandaID == panda_id, src.c.jobStatus.in_(states))
    if source == target:
        old = conn.execute(sa.select(src.c.jobStatus).where(where).with_for_update()).scalar()
        if old is None:
            return None
        row = conn.execute(sa.update(src).where(where).values(**update).returning(src)).mappings().first()
        return None if row is None else {**row, "_from": old}
    row = conn.execute(sa.delete(src).where(where).returning(src)).mappings().first()
    if row is None:
        return None
    moved = {**row, **update}
    conn.execute(sa.insert(t.JOB_TABLE[target]).values(**{k: moved[k] for k in t.JOB_COLUMNS}))
    return {**moved, "_from": row["jobStatus"]}


def _raise_why(conn: Connection, panda_id: int, new: JobStatus) -> None:
    found = rows.find_jobs(conn, [panda_id])
    if panda_id not in found:
        raise NotFound(f"PandaID={panda_id} not found")
    current = found[panda_id][1]["jobStatus"]
    raise StateConflict(f"PandaID={panda_id} is {current}; cannot become {new.value}")


def update_fields(
    conn: Connection, panda_id: int, status: JobStatus | str, values: Mapping[str, Any], *, now: dt.datetime
) -> dict[str, Any] | None:
    """Update columns of a job that is still in `status` (a heartbeat); None if it moved on."""
    table = t.JOB_TABLE[TABLE_OF[JobStatus(status)]]
    update = truncate_diags(values)
    update["modificationTime"] = now
    query = (
        sa.update(table)
        .where(table.c.PandaID == panda_id, table.c.jobStatus == JobStatus(status).value)
        .values(**update)
        .returning(table)
    )
    row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def claim_for_pilot(
    conn: Connection,
    *,
    site: str,
    labels: Sequence[str],
    mem: int,
    disk: int,
    prod_user_id: str | None,
    values: Mapping[str, Any],
    now: dt.datetime,
) -> dict[str, Any] | None:
    """Atomically take the best activated job of `site` for a pilot: activated → sent.

    S08 getJobs: highest currentPriority, then lowest PandaID; minRamCount/maxDiskCount of 0
    mean no limit; jobs with a pending commandToPilot are skipped. FOR UPDATE SKIP LOCKED makes
    concurrent pilots pass over each other's candidate instead of waiting or sharing it.
    """
    assert JobStatus.sent in ALLOWED[JobStatus.activated]
    a = t.jobsactive4
    cond = [
        a.c.jobStatus == JobStatus.activated.value,
        a.c.computingSite == site,
        a.c.commandToPilot.is_(None),
        a.c.prodSourceLabel.in_(list(labels)),
    ]
    if mem > 0:
        cond.append(sa.or_(a.c.minRamCount.is_(None), a.c.minRamCount == 0, a.c.minRamCount <= mem))
    if disk > 0:
        cond.append(sa.or_(a.c.maxDiskCount.is_(None), a.c.maxDiskCount == 0, a.c.maxDiskCount <= disk))
    if prod_user_id:
        cond.append(a.c.prodUserID == prod_user_id)
    pick = (
        sa.select(a.c.PandaID)
        .where(*cond)
        .order_by(a.c.currentPriority.desc().nulls_last(), a.c.PandaID)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    update = {**values, "jobStatus": JobStatus.sent.value, "modificationTime": now,
              "stateChangeTime": now, "startTime": now}  # fmt: skip
    query = (
        sa.update(a)
        .where(a.c.PandaID == pick, a.c.jobStatus == JobStatus.activated.value)
        .values(**update)
        .returning(a)
    )
    row = conn.execute(query).mappings().first()
    if row is not None:
        log.info("PandaID=%s status activated -> sent site=%s", row["PandaID"], site)
    return dict(row) if row else None


def status_of(conn: Connection, ids: Sequence[int]) -> dict[int, Mapping[str, Any]]:
    """{PandaID: {jobStatus, attemptNr, commandToPilot, prodUserID, table}} across all tables."""
    out: dict[int, Mapping[str, Any]] = {}
    wanted = list(dict.fromkeys(int(i) for i in ids))
    for name, table in t.JOB_TABLE.items():
        missing = [i for i in wanted if i not in out]
        if not missing:
            break
        query = sa.select(
            table.c.PandaID, table.c.jobStatus, table.c.attemptNr, table.c.commandToPilot,
            table.c.prodUserID, table.c.prodSourceLabel,
        ).where(table.c.PandaID.in_(missing))  # fmt: skip
        for r in conn.execute(query).mappings():
            out[r["PandaID"]] = {**r, "table": name}
    return out
