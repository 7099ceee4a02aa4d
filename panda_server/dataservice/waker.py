"""Waker: `waiting` jobs whose inputs have appeared in DDM go back to `defined` (S08 Waker, §5.6).

`panda-daemon waker` looks at waiting jobs each cycle, checks their inputs through DDM as the
setupper would (resolve.py, nothing written), and sends the resolvable ones back to `defined`
(missing files → unknown) for the setupper. A job waiting longer than `waiting_timeout`
(PANDA_WAITING_TIMEOUT, S08 1 day) fails with taskBufferErrorCode 104 "waiting timeout, missing: …".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from panda_server.dataservice import builds, context, files, resolve
from panda_server.dataservice.context import DataService
from panda_server.db import tables as t
from panda_server.db.engine import transaction
from panda_server.errors import StateConflict
from panda_server.protocol.codes import TaskBufferError
from panda_server.protocol.jobspec import JobSpec
from panda_server.protocol.states import FileStatus, JobStatus
from panda_server.settings import Settings
from panda_server.taskbuffer import jobs, rows

log = logging.getLogger(__name__)
BATCH = 200


@dataclasses.dataclass
class Summary:
    woken: int = 0
    still_waiting: int = 0
    timed_out: int = 0


def run_once(engine: Engine, settings: Settings, now: dt.datetime, svc: DataService | None = None) -> Summary:
    svc = svc or context.make(engine, settings)
    summary = Summary()
    with transaction(engine) as conn:
        batch = rows.lock_jobs(conn, JobStatus.waiting, limit=BATCH)
        if batch:
            _wake(conn, svc, batch, settings, now, summary)
    if summary.woken or summary.timed_out:
        log.info("waker %s", summary)
    return summary


def _wake(conn: Connection, svc: DataService, batch: list[JobSpec], settings: Settings, now: dt.datetime,
          summary: Summary) -> None:  # fmt: skip
    lib = builds.lib_inputs(conn, batch)
    res = resolve.resolve(svc.ddm, batch, lib_inputs=lib.keys())  # in memory only: the setupper fills
    limit = dt.timedelta(seconds=settings.waiting_timeout)
    for job in batch:
        if job.PandaID not in res.missing:
            summary.woken += _to_defined(conn, job, now)
        elif job.stateChangeTime is not None and now - job.stateChangeTime > limit:
            summary.timed_out += _time_out(conn, job, res.missing[job.PandaID], now)
        else:
            summary.still_waiting += 1


def _to_defined(conn: Connection, job: JobSpec, now: dt.datetime) -> int:
    try:
        jobs.set_status(conn, job.PandaID, JobStatus.defined, now=now, expect=[JobStatus.waiting],
                        reason="inputs appeared")  # fmt: skip
    except StateConflict:
        return 0
    f = t.filestable4
    conn.execute(sa.update(f).where(f.c.PandaID == job.PandaID, f.c.status == FileStatus.missing.value)
                 .values(status=FileStatus.unknown.value, modificationTime=now))  # fmt: skip
    return 1


def _time_out(conn: Connection, job: JobSpec, missing: list[str], now: dt.datetime) -> int:
    diag = f"waiting timeout, missing: {'; '.join(missing)}"
    values = {"taskBufferErrorCode": int(TaskBufferError.WAITING_TIMEOUT), "taskBufferErrorDiag": diag}
    return files.fail_job(conn, job.PandaID, expect=JobStatus.waiting, values=values, now=now, reason=diag)
