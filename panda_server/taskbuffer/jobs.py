"""The job rows: the one guarded path for status changes, and moves between the job tables.

Every function takes the caller's connection and never commits (the caller owns the
transaction). A status change is a conditional UPDATE (same table) or DELETE … RETURNING +
INSERT (another table) that names the states it may come from; zero rows means someone else
moved the job first, and StateConflict is raised instead of overwriting.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.db.engine import fetch
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
    returning: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Move one job to `new`, from one of the states ALLOWED to reach it (narrowed by `expect`).

    Returns the new row (only PandaID, jobStatus and the `returning` columns if given: the hot
    paths need one column, not 124). Raises NotFound if the job does not exist, StateConflict if
    it is in a state from which `new` is not allowed (or not expected).
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
        row = _move(conn, panda_id, table_name, target, states, update, returning)
        if row is not None:
            log.info("PandaID=%s status %s -> %s %s", panda_id, row["_from"], new.value, reason)
            return row
    _raise_why(conn, panda_id, new)
    raise AssertionError("unreachable")


@functools.lru_cache(maxsize=512)
def _guarded_update(table: str, columns: tuple[str, ...], returning: tuple[str, ...] | None) -> str:
    """UPDATE <table> SET <columns> WHERE PandaID AND jobStatus = ANY(states) RETURNING …

    Built once per (table, column set) and kept: the hot paths (heartbeats, the final update)
    then skip SQLAlchemy's per-statement machinery (db.engine.fetch). Names come from the schema only.
    """
    assert table in t.JOB_TABLE and all(c in t.JOB_TABLE[table].c for c in (*columns, *(returning or ())))
    sets = ", ".join(f'"{c}" = %(v{i})s' for i, c in enumerate(columns))
    ret = "*" if returning is None else ", ".join(f'"{c}"' for c in ("PandaID", "jobStatus", *returning))
    return f'UPDATE {table} SET {sets} WHERE "PandaID" = %(pid)s AND "jobStatus" = ANY(%(states)s) RETURNING {ret}'


def _update_row(conn: Connection, table: str, panda_id: int, states: Sequence[str], update: Mapping[str, Any],
                returning: Sequence[str] | None) -> dict[str, Any] | None:  # fmt: skip
    columns = tuple(sorted(update))
    query = _guarded_update(table, columns, None if returning is None else tuple(returning))
    params = {f"v{i}": update[c] for i, c in enumerate(columns)}
    found = fetch(conn, query, {**params, "pid": panda_id, "states": list(states)})
    return found[0] if found else None


def _move(conn: Connection, panda_id: int, source: str, target: str, states: list[str],
          update: Mapping[str, Any], returning: Sequence[str] | None) -> dict[str, Any] | None:  # fmt: skip
    src = t.JOB_TABLE[source]
    where = sa.and_(src.c.PandaID == panda_id, src.c.jobStatus.in_(states))
    if source == target:
        # one source state (the usual case): the guarded UPDATE alone tells where it came from
        old = states[0] if len(states) == 1 else conn.execute(
            sa.select(src.c.jobStatus).where(where).with_for_update()).scalar()  # fmt: skip
        if old is None:
            return None
        row = _update_row(conn, source, panda_id, states, update, returning)
        return None if row is None else {**row, "_from": old}
    row = conn.execute(sa.delete(src).where(where).returning(src)).mappings().first()
    if row is None:
        return None
    moved = {**row, **update}
    conn.execute(sa.insert(t.JOB_TABLE[target]).values(**{k: moved[k] for k in t.JOB_COLUMNS}))
    return {**moved, "_from": row["jobStatus"]}


@functools.lru_cache(maxsize=256)
def _advance_sql(table: str, columns: tuple[str, ...], returning: tuple[str, ...]) -> str:
    assert table in t.JOB_TABLE and all(c in t.JOB_TABLE[table].c for c in (*columns, *returning))
    assert not {"jobStatus", "modificationTime", "stateChangeTime"} & set(columns)
    sets = "".join(f', "{c}" = %(v{i})s' for i, c in enumerate(columns))
    ret = "".join(f', j."{c}"' for c in returning)
    return f"""
    WITH old AS (SELECT "PandaID", "jobStatus" FROM {table}
                  WHERE "PandaID" = %(pid)s AND "jobStatus" = ANY(%(states)s)
                    AND (%(attempt)s::bigint IS NULL OR "attemptNr" = %(attempt)s::bigint)
                  FOR UPDATE)
    UPDATE {table} AS j
       SET "jobStatus" = %(new)s, "modificationTime" = %(now)s,
           "stateChangeTime" = CASE WHEN old."jobStatus" = %(new)s THEN j."stateChangeTime" ELSE %(now)s END
           {sets}
      FROM old WHERE j."PandaID" = old."PandaID"
    RETURNING old."jobStatus" AS "_from", j."PandaID", j."jobStatus"{ret}
    """


def advance(conn: Connection, panda_id: int, new: JobStatus, *, sources: Collection[JobStatus],
            values: Mapping[str, Any], now: dt.datetime, attempt_nr: int | None = None,
            returning: Sequence[str] = ()) -> dict[str, Any] | None:  # fmt: skip
    """The pilot's fast path: move to `new` from one of `sources` (or stay in `new`, a heartbeat)
    and store `values`, in one guarded statement within one table; None if the job is in none of
    them (or at another attemptNr), and the caller takes the careful path. Every source must be
    ALLOWED to reach `new`, so this is set_status and update_fields in one round trip.
    """
    assert all((s == new or new in ALLOWED[s]) and TABLE_OF[s] == TABLE_OF[new] for s in sources)
    update = truncate_diags(values)
    columns = tuple(sorted(update))
    query = _advance_sql(TABLE_OF[new], columns, tuple(returning))
    params = {f"v{i}": update[c] for i, c in enumerate(columns)}
    params.update(pid=panda_id, states=[s.value for s in sources], attempt=attempt_nr, new=new.value, now=now)
    found = fetch(conn, query, params)
    if not found:
        return None
    if found[0]["_from"] != new.value:
        log.info("PandaID=%s status %s -> %s by pilot", panda_id, found[0]["_from"], new.value)
    return found[0]


def _raise_why(conn: Connection, panda_id: int, new: JobStatus) -> None:
    found = rows.find_jobs(conn, [panda_id])
    if panda_id not in found:
        raise NotFound(f"PandaID={panda_id} not found")
    current = found[panda_id][1]["jobStatus"]
    raise StateConflict(f"PandaID={panda_id} is {current}; cannot become {new.value}")


def update_fields(
    conn: Connection,
    panda_id: int,
    status: JobStatus | str,
    values: Mapping[str, Any],
    *,
    now: dt.datetime,
    returning: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """Update columns of a job that is still in `status` (a heartbeat); None if it moved on."""
    update = truncate_diags(values)
    update["modificationTime"] = now
    table = TABLE_OF[JobStatus(status)]
    return _update_row(conn, table, panda_id, [JobStatus(status).value], update, returning)


# The claim as one constant statement (compiled once; the hot path of getJob). The inner SELECT
# walks ix_jobsactive4_claim in dispatch order; FOR UPDATE SKIP LOCKED makes concurrent pilots
# pass over each other's candidate instead of waiting for it or sharing it.
_CLAIM = """
    UPDATE jobsactive4 SET "jobStatus" = 'sent', "modificationTime" = %(now)s, "stateChangeTime" = %(now)s,
           "startTime" = %(now)s, "modificationHost" = %(node)s,
           "computingElement" = COALESCE(%(ce)s, "computingElement"),
           "schedulerID" = COALESCE(%(scheduler)s, "schedulerID")
     WHERE "jobStatus" = 'activated' AND "PandaID" = (
           SELECT "PandaID" FROM jobsactive4
            WHERE "jobStatus" = 'activated' AND "computingSite" = %(site)s AND "commandToPilot" IS NULL
              AND "prodSourceLabel" = ANY(%(labels)s)
              AND (%(mem)s <= 0 OR "minRamCount" IS NULL OR "minRamCount" = 0 OR "minRamCount" <= %(mem)s)
              AND (%(disk)s <= 0 OR "maxDiskCount" IS NULL OR "maxDiskCount" = 0 OR "maxDiskCount" <= %(disk)s)
              AND (%(user)s::text IS NULL OR "prodUserID" = %(user)s)
            ORDER BY "currentPriority" DESC NULLS LAST, "PandaID"
            LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING *
    """


def claim_for_pilot(
    conn: Connection,
    *,
    site: str,
    labels: Sequence[str],
    mem: int,
    disk: int,
    prod_user_id: str | None,
    node: str,
    computing_element: str | None = None,
    scheduler_id: str | None = None,
    now: dt.datetime,
) -> dict[str, Any] | None:
    """Atomically take the best activated job of `site` for a pilot: activated → sent.

    S08 getJobs: highest currentPriority, then lowest PandaID; minRamCount/maxDiskCount of 0
    mean no limit; jobs with a pending commandToPilot are skipped; a pilot without the pilot
    role gets only its own jobs (prod_user_id).
    """
    assert JobStatus.sent in ALLOWED[JobStatus.activated]
    params = dict(now=now, node=node, ce=computing_element, scheduler=scheduler_id, site=site,
                  labels=list(labels), mem=mem, disk=disk, user=prod_user_id)  # fmt: skip
    found = fetch(conn, _CLAIM, params)
    if found:
        log.info("PandaID=%s status activated -> sent site=%s", found[0]["PandaID"], site)
    return found[0] if found else None


# Most lookups (every updateJob) are for jobs a pilot holds: look in jobsactive4 first.
LOOKUP_ORDER = ("jobsactive4", "jobsdefined4", "jobswaiting4", "jobsarchived4")


@functools.lru_cache(maxsize=8)
def _status_query(table: str) -> str:
    assert table in t.JOB_TABLE
    return (
        'SELECT "PandaID", "jobStatus", "attemptNr", "commandToPilot", "prodUserID", "prodSourceLabel", '
        '"computingSite" '
        f'FROM {table} WHERE "PandaID" = ANY(%(ids)s)'
    )


def status_of(conn: Connection, ids: Sequence[int]) -> dict[int, Mapping[str, Any]]:
    """{PandaID: {jobStatus, attemptNr, commandToPilot, prodUserID, prodSourceLabel, computingSite,
    table}} across all tables."""
    out: dict[int, Mapping[str, Any]] = {}
    wanted = list(dict.fromkeys(int(i) for i in ids))
    for name in LOOKUP_ORDER:
        missing = [i for i in wanted if i not in out]
        if not missing:
            break
        for r in fetch(conn, _status_query(name), {"ids": missing}):
            out[r["PandaID"]] = {**r, "table": name}
    return out
