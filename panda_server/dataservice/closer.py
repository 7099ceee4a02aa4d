"""Closer: a destination block whose files are all accounted for is closed (S08 Closer.py, §5.4).

Run by the adder (and finisher) for the blocks of each job they settle. A block is complete when
none of its files is still `unknown` (every job writing into it ended one way or another).
A `_sub` dataset is then closed in DDM (its open subscription still delivers what it holds).
A build job's library dataset is the upstream of run jobs: when it closes after the build job
finished, the run jobs' library inputs get the library's GUID, size and checksum (signed fields:
the jobs are re-signed) and the activator takes the run jobs on; when the build job failed, its
run jobs fail with taskBufferErrorCode 100 "upstream job failed".
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.dataservice import activator, datasets, files
from panda_server.dataservice.context import DataService
from panda_server.db import tables as t
from panda_server.ddm.interface import DDMError
from panda_server.protocol.codes import TaskBufferError
from panda_server.protocol.states import FileStatus, FileType, JobStatus
from panda_server.taskbuffer import rows

log = logging.getLogger(__name__)


def close(conn: Connection, svc: DataService, names: Iterable[str], now: dt.datetime) -> None:
    for name in sorted(set(n for n in names if n)):
        row = datasets.by_name(conn, name)
        if row is None or row["status"] in ("tobeclosed", "completed") or _open_files(conn, name):
            continue
        if not datasets.set_status(conn, name, "tobeclosed", now=now, unless=["tobeclosed", "completed"]):
            continue
        try:
            svc.ddm.close_dataset(name)
        except DDMError as exc:  # stays tobeclosed; nothing waits on a _sub being frozen
            log.error("closer: could not close %s in DDM: %s", name, exc)
            continue
        datasets.set_status(conn, name, "completed", now=now)
        log.info("closer: %s closed", name)
        if not datasets.is_sub(name):
            _release_downstream(conn, svc, name, now)


def _open_files(conn: Connection, name: str) -> int:
    f = t.filestable4
    query = sa.select(sa.func.count()).where(
        f.c.destinationDBlock == name, f.c.status == FileStatus.unknown.value
    )
    return conn.execute(query).scalar_one()


def _release_downstream(conn: Connection, svc: DataService, name: str, now: dt.datetime) -> None:
    """The library dataset closed: activate (or fail) the run jobs that wait on it."""
    products = _products(conn, name)
    if not products:
        return
    if any(p["status"] != FileStatus.ready.value for p in products.values()):
        _fail_downstream(conn, name, now)
        return
    waiting = _assigned_on(conn, name)
    for job in rows.peek_jobs(conn, waiting, tables=["jobsdefined4"]):
        if job is None:
            continue
        for f in job.Files:
            lib = products.get(f.lfn)
            if f.type == FileType.input.value and f.dispatchDBlock == name and lib is not None:
                f.GUID, f.fsize, f.checksum, f.scope = (
                    lib["GUID"],
                    lib["fsize"],
                    lib["checksum"],
                    lib["scope"],
                )
        files.save(conn, job, now=now, fields=("GUID", "fsize", "checksum", "scope"))
        files.resign(conn, job, svc.signing_key)
    activator.activate_dataset(conn, name, now)


def _products(conn: Connection, name: str) -> dict[str, dict]:
    f = t.filestable4
    query = sa.select(f).where(f.c.destinationDBlock == name, f.c.type == FileType.output.value)
    return {r["lfn"]: dict(r) for r in conn.execute(query).mappings()}


def _assigned_on(conn: Connection, name: str) -> list[int]:
    d = t.jobsdefined4
    query = sa.select(d.c.PandaID).where(
        d.c.dispatchDBlock == name, d.c.jobStatus == JobStatus.assigned.value
    )
    return list(conn.execute(query.order_by(d.c.PandaID)).scalars())


def _fail_downstream(conn: Connection, name: str, now: dt.datetime) -> None:
    values = {"taskBufferErrorCode": int(TaskBufferError.KILLED),
              "taskBufferErrorDiag": f"upstream job failed: {name} was not produced"}  # fmt: skip
    for panda_id in _assigned_on(conn, name):
        files.fail_job(
            conn, panda_id, expect=JobStatus.assigned, values=values, now=now, reason="upstream failed"
        )
