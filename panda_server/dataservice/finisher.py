"""Finisher: outputs arrived at their destination → files `ready` → `transferring` jobs `finished`
(S08 Finisher.py; reference/panda-server.md §5.5).

Started by the datasetCompleted callback for a `_sub` dataset (ddmhandler.py) and by
`panda-daemon finisher`, which also is the polling fallback: it asks DDM about every `_sub`
dataset with files still transferring. The replicas are checked in DDM file by file, so a
callback for part of a dataset finishes exactly the jobs whose outputs are all there. The
finished files are added to the top-level dataset at the destination.
An output subscription DDM gave up on fails its jobs (ddmErrorCode 201); a job `transferring`
longer than its cloud's transtimehi (priority >= 900) or transtimelo days fails with
taskBufferErrorCode 101 "transfer timeout for <lfns>" (S08 copyArchive).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from panda_server.dataservice import context, datasets, files, resolve
from panda_server.dataservice.context import DataService
from panda_server.db import tables as t
from panda_server.db.engine import transaction
from panda_server.ddm.interface import DDMError
from panda_server.errors import StateConflict
from panda_server.protocol.codes import DdmError, TaskBufferError
from panda_server.protocol.states import FileStatus, FileType, JobStatus
from panda_server.settings import Settings
from panda_server.taskbuffer import jobs, rows

log = logging.getLogger(__name__)
BATCH = 100
HIGH_PRIORITY = 900


@dataclasses.dataclass
class Summary:
    finished: int = 0
    failed: int = 0
    timed_out: int = 0


def _transferring(conn: Connection, name: str) -> list:
    f = t.filestable4
    query = sa.select(f).where(f.c.destinationDBlock == name, f.c.status == FileStatus.transferring.value)
    return [rows.file_from_row(r) for r in conn.execute(query.order_by(f.c.rowID)).mappings()]


def finish_dataset(conn: Connection, svc: DataService, name: str, now: dt.datetime) -> int:
    """Mark the dataset's files that reached their destination ready; finish complete jobs."""
    pending = _transferring(conn, name)
    if not pending:
        return 0
    dest = {se: context.rse_of(conn, se) for se in {f.destinationSE for f in pending}}
    replicas = svc.ddm.list_replicas([f.GUID for f in pending])
    arrived = [f for f in pending if dest[f.destinationSE] in replicas.get(f.GUID, ())]
    if not arrived:
        return 0
    ft = t.filestable4
    conn.execute(sa.update(ft).where(ft.c.rowID.in_([f.rowID for f in arrived]))
                 .values(status=FileStatus.ready.value, modificationTime=now))  # fmt: skip
    _add_to_top_level(svc, name, arrived, dest)
    finished = 0
    for panda_id in sorted({f.PandaID for f in arrived}):
        finished += _finish_job(conn, panda_id, now)
    log.info(
        "finisher %s: %d of %d files arrived, %d jobs finished", name, len(arrived), len(pending), finished
    )
    return finished


def _add_to_top_level(svc: DataService, name: str, arrived: Sequence, dest: dict[str, str]) -> None:
    top = datasets.top_level(name)
    by_rse: dict[str, list] = {}
    for f in arrived:
        by_rse.setdefault(dest[f.destinationSE], []).append(resolve.file_info(f))
    try:
        for rse, infos in by_rse.items():
            svc.ddm.register_files(top, infos, rse)
    except DDMError as exc:  # the job's outputs are safe at the destination; the catalog can be fixed
        log.error("finisher: could not add %d files of %s to %s: %s", len(arrived), name, top, exc)


def _finish_job(conn: Connection, panda_id: int, now: dt.datetime) -> int:
    f = t.filestable4
    left = conn.execute(sa.select(sa.func.count()).where(
        f.c.PandaID == panda_id, f.c.type.in_([FileType.output.value, FileType.log.value]),
        f.c.status != FileStatus.ready.value)).scalar_one()  # fmt: skip
    if left:
        return 0
    try:
        jobs.set_status(conn, panda_id, JobStatus.finished, now=now, expect=[JobStatus.transferring],
                        reason="outputs at their destination")  # fmt: skip
    except StateConflict:
        return 0
    return 1


def fail_transfers(conn: Connection, name: str, why: str, now: dt.datetime) -> int:
    """DDM gave up on the dataset's subscription: its transferring jobs fail (ddmErrorCode 201)."""
    ids = sorted({f.PandaID for f in _transferring(conn, name)})
    values = {
        "ddmErrorCode": int(DdmError.SUBSCRIPTION),
        "ddmErrorDiag": f"output subscription {name} failed: {why}",
    }
    return sum(_fail_job(conn, panda_id, values, now) for panda_id in ids)


def _fail_job(conn: Connection, panda_id: int, values: dict, now: dt.datetime) -> int:
    reason = values.get("ddmErrorDiag") or values.get("taskBufferErrorDiag") or ""
    return files.fail_job(
        conn, panda_id, expect=JobStatus.transferring, values=values, now=now, reason=reason
    )


def run_once(engine: Engine, settings: Settings, now: dt.datetime, svc: DataService | None = None) -> Summary:
    svc = svc or context.make(engine, settings)
    summary = Summary()
    with transaction(engine) as conn:
        names = _datasets_in_transfer(conn)
    for name in names:
        with transaction(engine) as conn:
            _settle(conn, svc, name, now, summary)
    with transaction(engine) as conn:
        summary.timed_out = time_out(conn, now)
    if summary.finished or summary.failed or summary.timed_out:
        log.info("finisher poll %s", summary)
    return summary


def _datasets_in_transfer(conn: Connection) -> list[str]:
    f = t.filestable4
    query = (
        sa.select(f.c.destinationDBlock).where(f.c.status == FileStatus.transferring.value)
        .group_by(f.c.destinationDBlock).order_by(sa.func.min(f.c.modificationTime)).limit(BATCH)
    )  # fmt: skip
    return [n for n in conn.execute(query).scalars() if n]


def _settle(conn: Connection, svc: DataService, name: str, now: dt.datetime, summary: Summary) -> None:
    pending = _transferring(conn, name)
    if not pending:
        return
    sub = svc.ddm.subscription(name, context.rse_of(conn, pending[0].destinationSE))
    if sub is None:
        return
    if sub.state == "failed":
        summary.failed += fail_transfers(conn, name, sub.error or "transfer failed", now)
    else:  # done, or partly done: files already there finish their jobs
        summary.finished += finish_dataset(conn, svc, name, now)


def time_out(conn: Connection, now: dt.datetime) -> int:
    """Fail jobs transferring longer than their cloud allows (S08 copyArchive; code 101)."""
    a, c = t.jobsactive4, t.cloudconfig
    query = (
        sa.select(a.c.PandaID, a.c.stateChangeTime, a.c.currentPriority, c.c.transtimelo, c.c.transtimehi)
        .select_from(a.outerjoin(c, c.c.name == a.c.cloud))
        .where(a.c.jobStatus == JobStatus.transferring.value).order_by(a.c.stateChangeTime).limit(BATCH * 10)
    )  # fmt: skip
    failed = 0
    for r in conn.execute(query):
        days = (r.transtimehi or 1) if (r.currentPriority or 0) >= HIGH_PRIORITY else (r.transtimelo or 2)
        if r.stateChangeTime is None or now - r.stateChangeTime < dt.timedelta(days=days):
            continue
        lfns = ",".join(f.lfn for f in rows.files_of(conn, [r.PandaID])[r.PandaID]
                        if f.status == FileStatus.transferring.value)  # fmt: skip
        values = {"taskBufferErrorCode": int(TaskBufferError.TRANSFER_TIMEOUT),
                  "taskBufferErrorDiag": f"transfer timeout for {lfns}"}  # fmt: skip
        failed += _fail_job(conn, r.PandaID, values, now)
    return failed
