"""Adder, DDM side (S08 Adder: registerFilesInDatasets, the T2 → T1 subscription, §5.3).

A finished job's outputs and log are registered in their `_sub` datasets at the execution
site's RSE (where the pilot wrote them). When they must reach another RSE (a production job
whose destinationSE, normally the cloud's T1, is elsewhere; never ANALY_ sites or analysis jobs)
the `_sub` dataset is subscribed site → destination with the datasetCompleted callback, the
files and the job become `transferring`, and the finisher completes the job when the files are
there. Otherwise the files go into the top-level dataset too and the job is `finished`.
A failed job registers only its log. Blocks PanDA did not create (no `datasets` row: jobs that
bypassed the setupper) are not registered anywhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from panda_server.dataservice import context, datasets, resolve
from panda_server.dataservice.context import DataService
from panda_server.protocol.jobspec import FileSpec
from panda_server.protocol.states import FileStatus, FileType, JobStatus


def needs_transfer(job: dict, site_rse: str, dest_rse: str) -> bool:
    """S08 Adder "go to transferring": production, not ANALY_, destination RSE elsewhere."""
    if job["prodSourceLabel"] in ("user", "panda") or context.is_analysis_site(job["computingSite"]):
        return False
    return bool(dest_rse) and bool(site_rse) and dest_rse != site_rse


def register(conn: Connection, svc: DataService, job: dict, outs: Sequence[FileSpec], *, succeeded: bool,
             now: dt.datetime) -> JobStatus:  # fmt: skip
    """Register the job's ready outputs in DDM; finished or transferring (DDMError propagates)."""
    site_rse = context.rse_of(conn, job["computingSite"])
    dest_rse = context.rse_of(conn, job["destinationSE"]) or site_rse
    ready = [
        f for f in outs if f.status == FileStatus.ready.value and (succeeded or f.type == FileType.log.value)
    ]
    blocks: dict[str, list[FileSpec]] = {}
    for f in ready:
        if f.destinationDBlock and datasets.by_name(conn, f.destinationDBlock) is not None:
            blocks.setdefault(f.destinationDBlock, []).append(f)
    for name, block in blocks.items():
        svc.ddm.register_files(name, [resolve.file_info(f) for f in block], site_rse)
    if not succeeded:
        return JobStatus.failed
    if blocks and needs_transfer(job, site_rse, dest_rse):
        for name in blocks:
            svc.ddm.subscribe(name, dest_rse, source=site_rse, callback=svc.callback)
            datasets.set_status(conn, name, "running", now=now, unless=["tobeclosed", "completed"])
        for f in outs:
            if f.destinationDBlock in blocks:
                f.status = FileStatus.transferring.value
        return JobStatus.transferring
    for name, block in blocks.items():
        top = datasets.top_level(name)
        if top != name and svc.ddm.get_dataset(top) is not None:
            svc.ddm.register_files(top, [resolve.file_info(f) for f in block], site_rse)
    return JobStatus.finished
