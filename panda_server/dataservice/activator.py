"""Activator: a dispatch dataset is complete → its inputs are `ready` → jobs with all inputs ready
are `activated` (S08 Activator.py; reference/panda-server.md §5.2).

Started by the datasetCompleted callback (ddmhandler.py) or the closer (a build job's library
dataset), and by `panda-daemon activator`, the polling fallback for a lost callback: it asks
DDM about every dispatch dataset still `defined`. A dispatch subscription DDM gave up on fails
its jobs with ddmErrorCode 201 and DDM's error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from panda_server.dataservice import context, datasets, files
from panda_server.dataservice.context import DataService
from panda_server.db import tables as t
from panda_server.db.engine import transaction
from panda_server.errors import StateConflict
from panda_server.protocol.codes import DdmError
from panda_server.protocol.states import FileStatus, FileType, JobStatus
from panda_server.settings import Settings
from panda_server.taskbuffer import jobs

log = logging.getLogger(__name__)
BATCH = 100


@dataclasses.dataclass
class Summary:
    datasets: int = 0
    activated: int = 0
    failed: int = 0


def activate_dataset(conn: Connection, name: str, now: dt.datetime) -> int:
    """Inputs with dispatchDBlock=name → ready; activate the jobs now fully ready. Returns how many."""
    f = t.filestable4
    touched = conn.execute(
        sa.update(f)
        .where(f.c.dispatchDBlock == name, f.c.type == FileType.input.value, f.c.status != FileStatus.ready.value)
        .values(status=FileStatus.ready.value, modificationTime=now)
        .returning(f.c.PandaID)
    ).scalars()  # fmt: skip
    ids = set(touched) | set(_waiting_on(conn, name))
    datasets.set_status(conn, name, "completed", now=now)
    activated = 0
    for panda_id in sorted(ids):
        if _not_ready(conn, panda_id):
            continue
        try:
            jobs.set_status(conn, panda_id, JobStatus.activated, now=now, expect=[JobStatus.assigned],
                            reason=f"inputs ready ({name})")  # fmt: skip
            activated += 1
        except StateConflict:
            continue  # not assigned (any more): reassigned, killed, or activated by a concurrent call
    log.info("activator %s: %d jobs activated", name, activated)
    return activated


def _waiting_on(conn: Connection, name: str) -> list[int]:
    d = t.jobsdefined4
    query = sa.select(d.c.PandaID).where(
        d.c.dispatchDBlock == name, d.c.jobStatus == JobStatus.assigned.value
    )
    return list(conn.execute(query).scalars())


def _not_ready(conn: Connection, panda_id: int) -> bool:
    f = t.filestable4
    query = sa.select(sa.func.count()).where(
        f.c.PandaID == panda_id, f.c.type == FileType.input.value, f.c.status != FileStatus.ready.value
    )
    return conn.execute(query).scalar_one() > 0


def fail_dataset(conn: Connection, name: str, why: str, now: dt.datetime) -> int:
    """The dispatch transfer failed for good: its assigned jobs fail (ddmErrorCode 201)."""
    failed = 0
    values = {
        "ddmErrorCode": int(DdmError.SUBSCRIPTION),
        "ddmErrorDiag": f"dispatch subscription {name} failed: {why}",
    }
    for panda_id in _waiting_on(conn, name):
        failed += files.fail_job(conn, panda_id, expect=JobStatus.assigned, values=values, now=now,
                                 reason="dispatch failed")  # fmt: skip
    datasets.set_status(conn, name, "failed", now=now)
    return failed


def site_of(conn: Connection, name: str) -> str | None:
    d = t.jobsdefined4
    return conn.execute(sa.select(d.c.computingSite).where(d.c.dispatchDBlock == name).limit(1)).scalar()


def run_once(engine: Engine, settings: Settings, now: dt.datetime, svc: DataService | None = None) -> Summary:
    """The polling fallback: settle every dispatch dataset DDM finished or gave up on."""
    svc = svc or context.make(engine, settings)
    summary = Summary()
    with transaction(engine) as conn:
        pending = datasets.with_status(conn, "dispatch", ["defined"], limit=BATCH)
    for row in pending:
        with transaction(engine) as conn:
            _settle(conn, svc, row["name"], now, summary)
    if summary.activated or summary.failed:
        log.info("activator poll %s", summary)
    return summary


def _settle(conn: Connection, svc: DataService, name: str, now: dt.datetime, summary: Summary) -> None:
    site = site_of(conn, name)
    if site is None:  # nobody waits for it any more (reassigned or killed)
        datasets.set_status(conn, name, "completed", now=now)
        return
    sub = svc.ddm.subscription(name, context.rse_of(conn, site))
    if sub is None:
        return
    if sub.state == "done":
        summary.datasets += 1
        summary.activated += activate_dataset(conn, name, now)
    elif sub.state == "failed":
        summary.datasets += 1
        summary.failed += fail_dataset(conn, name, sub.error or "transfer failed", now)
