"""Adder: finish or fail `holding` jobs from the pilot's stored output report.

S08/S25 Adder: for a job the pilot reported `finished`, every output and log file must be in the
report with its size and checksum; they are recorded on the file rows (status ready) and the
job is archived as `finished`. A missing file, a bad field or an unparsable report fails the job
with ddmErrorCode 200 (EC_Adder) and a diag naming the file. A job the pilot reported `failed`
is archived `failed` (its log recorded if it was saved). The outputs are then registered in
DDM (outputs.py): a production job whose outputs must reach the cloud's T1 goes `transferring`
(the finisher completes it), others `finished`; a DDM failure fails the job with ddmErrorCode
200. The closer then closes the job's destination blocks that are complete.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from panda_server.dataservice import closer, context, outputs
from panda_server.dataservice import report as reportlib
from panda_server.dataservice.context import DataService
from panda_server.db import tables as t
from panda_server.db.engine import transaction
from panda_server.ddm.interface import DDMError
from panda_server.errors import StateConflict
from panda_server.protocol.codes import DdmError
from panda_server.protocol.jobspec import FileSpec
from panda_server.protocol.states import FileStatus, FileType, JobStatus
from panda_server.settings import Settings
from panda_server.taskbuffer import jobs, reports, rows

log = logging.getLogger(__name__)
BATCH = 50


@dataclasses.dataclass
class Summary:
    finished: int = 0
    failed: int = 0
    skipped: int = 0
    transferring: int = 0


def run_once(engine: Engine, settings: Settings, now: dt.datetime, svc: DataService | None = None) -> Summary:
    svc = svc or context.make(engine, settings)
    summary = Summary()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with transaction(engine) as conn:
        taken = reports.take(conn, limit=BATCH, worker=worker, now=now)
    for rep in taken:
        with transaction(engine) as conn:  # one job per transaction: a bad one cannot block others
            _add_one(conn, svc, rep, now, summary)
    if taken:
        log.info("adder finished=%d failed=%d skipped=%d", summary.finished, summary.failed, summary.skipped)
    return summary


def _add_one(
    conn: Connection, svc: DataService, rep: dict[str, Any], now: dt.datetime, summary: Summary
) -> None:
    panda_id = rep["PandaID"]
    info = jobs.status_of(conn, [panda_id]).get(panda_id)
    if info is None or info["jobStatus"] != JobStatus.holding.value:
        log.warning("PandaID=%s report dropped: job is %s", panda_id, info and info["jobStatus"])
        reports.delete(conn, panda_id)
        summary.skipped += 1
        return
    files = [f for f in rows.files_of(conn, [panda_id])[panda_id] if f.type != FileType.input.value]
    problem, parsed = _check(rep, files)
    pilot_ok = rep["jobStatus"] == JobStatus.finished.value
    final = JobStatus.finished if pilot_ok and problem is None else JobStatus.failed
    values: dict[str, Any] = {}
    if pilot_ok and problem is not None:
        values = {"ddmErrorCode": int(DdmError.ADDER), "ddmErrorDiag": f"Adder: {problem}"}
    _record_files(conn, files, parsed, succeeded=final == JobStatus.finished, now=now)
    final, values = _register(conn, svc, panda_id, files, final, values, now)
    try:
        jobs.set_status(conn, panda_id, final, now=now, expect=[JobStatus.holding], values=values,
                        reason=problem or values.get("ddmErrorDiag") or f"pilot reported {rep['jobStatus']}")  # fmt: skip
    except StateConflict as exc:
        log.info("adder: %s", exc)
        summary.skipped += 1
        return
    reports.delete(conn, panda_id)
    closer.close(conn, svc, [f.destinationDBlock for f in files], now)
    summary.finished += final == JobStatus.finished
    summary.failed += final == JobStatus.failed
    summary.transferring += final == JobStatus.transferring


def _register(conn: Connection, svc: DataService, panda_id: int, files: list[FileSpec], final: JobStatus,
              values: dict[str, Any], now: dt.datetime) -> tuple[JobStatus, dict[str, Any]]:  # fmt: skip
    """Register the outputs in DDM; the job's final state (transferring when they move to the T1)."""
    job = rows.find_jobs(conn, [panda_id], tables=["jobsactive4"])[panda_id][1]
    try:
        final = outputs.register(conn, svc, job, files, succeeded=final == JobStatus.finished, now=now)
    except DDMError as exc:
        for f in files:
            f.status = FileStatus.failed.value if f.type == FileType.output.value else f.status
        final, values = JobStatus.failed, {"ddmErrorCode": int(DdmError.ADDER),
                                           "ddmErrorDiag": f"Adder: DDM registration failed: {exc}"}  # fmt: skip
    fs = t.filestable4
    for f in files:
        conn.execute(sa.update(fs).where(fs.c.rowID == f.rowID).values(status=f.status))
    return final, values


def _check(rep: dict[str, Any], files: list[FileSpec]) -> tuple[str | None, dict[str, reportlib.FileReport]]:
    """(first problem or None, parsed report). Only a `finished` report must be complete."""
    try:
        parsed = reportlib.parse(rep["data"])
    except reportlib.ReportError as exc:
        return f"unusable output report: {exc}", {}
    for f in files:
        entry = parsed.get(f.lfn)
        if entry is None:
            return f"{f.lfn} is missing from the pilot's output report", parsed
        if entry.fsize is None or entry.checksum is None:
            return f"{f.lfn} has no fsize or checksum in the report", parsed
        if f.GUID and entry.guid and f.GUID.lower() != entry.guid.lower():
            return f"{f.lfn} GUID {entry.guid} differs from the job's {f.GUID}", parsed
    return None, parsed


def _record_files(
    conn: Connection,
    files: list[FileSpec],
    parsed: dict[str, reportlib.FileReport],
    *,
    succeeded: bool,
    now: dt.datetime,
) -> None:
    ft = t.filestable4
    for f in files:
        entry = parsed.get(f.lfn)
        usable = entry is not None and entry.fsize is not None and entry.checksum is not None
        values: dict[str, Any] = {"modificationTime": now}
        if usable:
            values.update(fsize=entry.fsize, checksum=entry.checksum, GUID=f.GUID or entry.guid)
            if entry.checksum.startswith("md5:"):
                values["md5sum"] = entry.checksum[4:]
        ready = usable and (succeeded or f.type == FileType.log.value)
        values["status"] = FileStatus.ready.value if ready else FileStatus.failed.value
        conn.execute(sa.update(ft).where(ft.c.rowID == f.rowID).values(**values))
        for name in ("fsize", "checksum", "GUID", "status"):  # the DDM registration reads them next
            if name in values:
                setattr(f, name, values[name])
