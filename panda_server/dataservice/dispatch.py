"""Setupper, source side (S08 _setupSource + _subscribeDistpatchDB): bring a bunch's inputs to its site.

Per brokered bunch: inputs already at the site's RSE are `ready`; a build job's library is
`pending` on the library dataset (builds.py); every other input of a production job is `pending`
in one dispatch dataset `panda.<uuid>_dis<PandaID>`, registered in DDM at the site and
subscribed from the cloud's T1 with the datasetCompleted callback. Analysis jobs never move data:
an input not at their site fails them. A DDM failure fails the bunch's jobs with ddmErrorCode 100.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy.engine import Connection

from panda_server.dataservice import datasets, resolve
from panda_server.dataservice.builds import LibInput
from panda_server.dataservice.context import DataService
from panda_server.ddm.interface import DDMError, FileInfo
from panda_server.protocol.jobspec import JobSpec
from panda_server.protocol.states import FileStatus


class SetupFailure(Exception):
    """A job cannot be set up; the message becomes its ddmErrorDiag (ddmErrorCode 100)."""


def place_inputs(
    conn: Connection,
    svc: DataService,
    jobs: Sequence[JobSpec],
    *,
    site_rse: str,
    source_rse: str | None,
    replicas: Mapping[str, frozenset[str]],
    lib: Mapping[int, LibInput],
    now: dt.datetime,
) -> dict[int, str]:
    """Mark each input ready or pending and set job.dispatchDBlock; {PandaID: problem} for failures."""
    failed: dict[int, str] = {}
    to_move: list[JobSpec] = []
    for job in jobs:
        problem = _mark_local(job, site_rse, replicas, lib)
        if problem:
            failed[job.PandaID] = problem
        elif any(f.status == FileStatus.pending.value and f.rowID not in lib for f in resolve.inputs(job)):
            to_move.append(job)
    if to_move:
        try:
            name = _dispatch_dataset(conn, svc, to_move, site_rse=site_rse, source_rse=source_rse, now=now)
        except DDMError as exc:
            failed.update(
                {j.PandaID: f"could not register or subscribe the dispatch dataset: {exc}" for j in to_move}
            )
        else:
            for job in to_move:
                _set_dispatch_block(job, name, lib)
    return failed


def _mark_local(job: JobSpec, site_rse: str, replicas: Mapping[str, frozenset[str]],
                lib: Mapping[int, LibInput]) -> str | None:  # fmt: skip
    job.dispatchDBlock = None
    for f in resolve.inputs(job):
        f.dispatchDBlock = None
        if f.rowID in lib:
            f.status, f.dispatchDBlock = FileStatus.pending.value, lib[f.rowID].dataset
            job.dispatchDBlock = lib[f.rowID].dataset
        elif site_rse in replicas.get(f.GUID or "", ()):
            f.status = FileStatus.ready.value
        elif job.prodSourceLabel in ("user", "panda"):
            return f"analysis jobs read their input where it is: {f.lfn} is not at {site_rse}"
        else:
            f.status = FileStatus.pending.value
    return None


def _set_dispatch_block(job: JobSpec, name: str, lib: Mapping[int, LibInput]) -> None:
    job.dispatchDBlock = name
    for f in resolve.inputs(job):
        if f.status == FileStatus.pending.value and f.rowID not in lib:
            f.dispatchDBlock = name


def _dispatch_dataset(conn: Connection, svc: DataService, jobs: Sequence[JobSpec], *, site_rse: str,
                      source_rse: str | None, now: dt.datetime) -> str:  # fmt: skip
    """Register and subscribe one dispatch dataset for the pending inputs of `jobs`; its name."""
    files: dict[str, FileInfo] = {}
    for job in jobs:
        for f in resolve.inputs(job):
            # pending with no dispatchDBlock yet: to be moved (a build job's library has its dataset's)
            if f.status == FileStatus.pending.value and f.dispatchDBlock is None and f.GUID not in files:
                files[f.GUID] = resolve.file_info(f)  # DDMError if it lacks GUID, size or adler32
    name = f"{datasets.DISPATCH_PREFIX}{uuid.uuid4()}_dis{jobs[0].PandaID}"
    vuid = svc.ddm.register_dataset(name, list(files.values()), rse=site_rse)
    datasets.add(conn, vuid=vuid, name=name, type_="dispatch", status="defined", nfiles=len(files), now=now)
    svc.ddm.subscribe(name, site_rse, source=source_rse, callback=svc.callback)
    return name
