"""Setupper: take `defined` jobs through input resolution, brokerage and data placement.

S08 Setupper.run, in order (reference/panda-server.md §5.1):
1. resolve inputs through DDM (resolve.py); an input DDM cannot name or has no replica of
   → the job goes `waiting` (the waker retries it);
2. broker (brokerage/broker.py, pure) the jobs without a site; nothing fits → `failed` with
   brokerageErrorCode 100 and the reasons; every decision is logged and kept in pandalog;
3. per bunch: inputs at the site `ready`, others in a dispatch dataset subscribed T1 → site
   (dispatch.py); outputs into `_sub` datasets (destination.py);
4. jobs with nothing to wait for → `activated`, others → `assigned` (the activator takes them on
   when their dispatch dataset is complete). A DDM failure → `failed`, ddmErrorCode 100.
Run jobs of a build job still running are brokered after it, to its site (builds.py).
One transaction per batch; DDM calls happen inside it (a crash leaves at most unused DDM
datasets behind, and the jobs stay `defined` for the next cycle).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from sqlalchemy.engine import Connection, Engine

from panda_server.brokerage import broker, snapshot
from panda_server.brokerage.model import Assignment, BrokerJob, Snapshot
from panda_server.dataservice import builds, context, destination, dispatch, files, resolve
from panda_server.dataservice.context import DataService
from panda_server.db.engine import transaction
from panda_server.ddm.interface import DDMError
from panda_server.errors import StateConflict
from panda_server.protocol.codes import BrokerageError, DdmError
from panda_server.protocol.jobspec import JobSpec
from panda_server.protocol.states import FileStatus, JobStatus
from panda_server.settings import Settings
from panda_server.taskbuffer import jobs as jobrows
from panda_server.taskbuffer import pandalog, rows

log = logging.getLogger(__name__)
BATCH = 200


@dataclasses.dataclass
class Summary:
    activated: int = 0
    assigned: int = 0
    waiting: int = 0
    failed: int = 0
    left: int = 0  # kept defined for a later cycle (their build job is not brokered yet)


def run_once(engine: Engine, settings: Settings, now: dt.datetime, svc: DataService | None = None) -> Summary:
    svc = svc or context.make(engine, settings)
    summary = Summary()
    with transaction(engine) as conn:
        batch = rows.lock_jobs(conn, JobStatus.defined, limit=BATCH)
        if batch:
            setup_jobs(conn, svc, batch, now, summary)
    if batch:
        log.info("setupper %s", summary)
    return summary


def setup_jobs(
    conn: Connection, svc: DataService, batch: list[JobSpec], now: dt.datetime, summary: Summary
) -> None:
    lib = builds.lib_inputs(conn, batch)
    res = resolve.resolve(svc.ddm, batch, lib_inputs=lib.keys())
    ready = []
    for job in batch:
        if job.PandaID in res.missing:
            _to_waiting(conn, svc, job, res, now, summary)
        else:
            ready.append(job)
    builds_first = [j for j in ready if not _depends(j, lib)]
    run_jobs = [j for j in ready if _depends(j, lib)]
    snap = dataclasses.replace(snapshot.load(conn, now), replicas=res.replicas)
    _broker_and_place(conn, svc, builds_first, snap, res, lib, now, summary)
    for job in run_jobs:
        producer = next(lib[f.rowID].producer for f in job.Files if f.rowID in lib)
        job.computingSite = builds.producer_site(conn, producer)
        if job.computingSite is None:
            summary.left += 1
    run_jobs = [j for j in run_jobs if j.computingSite]
    if run_jobs:
        snap = dataclasses.replace(snapshot.load(conn, now), replicas=res.replicas)
        _broker_and_place(conn, svc, run_jobs, snap, res, lib, now, summary)


def _depends(job: JobSpec, lib: dict[int, builds.LibInput]) -> bool:
    return any(f.rowID in lib for f in job.Files)


def _broker_and_place(conn: Connection, svc: DataService, batch: list[JobSpec], snap: Snapshot,
                      res: resolve.Resolution, lib: dict, now: dt.datetime, summary: Summary) -> None:  # fmt: skip
    if not batch:
        return
    by_id = {j.PandaID: j for j in batch}
    assignments = broker.schedule([_broker_job(j) for j in batch], snap)
    broker.log_decisions(assignments, log)
    bunches: dict[int, list[Assignment]] = {}
    for a in assignments:
        pandalog.record(conn, "brokerage", f"PandaID={a.PandaID} {a.reason}", now=now, name="panda.broker")
        if a.site is None:
            _fail(conn, by_id[a.PandaID], now, summary, brokerage=(a.error_code, a.error_diag or a.reason))
        else:
            bunches.setdefault(a.bunch, []).append(a)
    for items in bunches.values():
        _place_bunch(
            conn, svc, [by_id[a.PandaID] for a in items], items[0].site, snap, res, lib, now, summary
        )


def _broker_job(job: JobSpec) -> BrokerJob:
    ins = resolve.inputs(job)
    return BrokerJob(
        PandaID=job.PandaID, prodSourceLabel=job.prodSourceLabel or "managed", computingSite=job.computingSite,
        cloud=job.cloud, prodDBlock=job.prodDBlock, AtlasRelease=job.AtlasRelease, cmtConfig=job.cmtConfig,
        minRamCount=job.minRamCount or 0, maxDiskCount=job.maxDiskCount or 0,
        inputs=tuple(f.GUID for f in ins if f.GUID), input_bytes=sum(f.fsize or 0 for f in ins),
    )  # fmt: skip


def _place_bunch(conn: Connection, svc: DataService, bunch: list[JobSpec], site: str, snap: Snapshot,
                 res: resolve.Resolution, lib: dict, now: dt.datetime, summary: Summary) -> None:  # fmt: skip
    if site not in snap.sites:
        for job in bunch:
            _fail(conn, job, now, summary, ddm=f"unknown computingSite {site}; check schedconfig")
        return
    info = snap.sites[site]
    tier1 = snap.clouds[info.cloud].tier1 if info.cloud in snap.clouds else None
    source_rse = snap.sites[tier1].ddm if tier1 in snap.sites else None
    for job in bunch:
        job.computingSite, job.cloud = site, job.cloud or info.cloud
        job.destinationSE = destination.destination_site(
            job, known_sites=set(snap.sites), site=site, tier1=tier1
        )
    failed = dispatch.place_inputs(conn, svc, bunch, site_rse=info.ddm, source_rse=source_rse,
                                   replicas=res.replicas, lib=lib, now=now)  # fmt: skip
    ok = [j for j in bunch if j.PandaID not in failed]
    try:
        destination.place_outputs(conn, svc, ok, site_rse=info.ddm, now=now,
                                  dest_rse={j.destinationSE: snap.sites[j.destinationSE].ddm for j in ok})  # fmt: skip
    except DDMError as exc:
        failed.update({j.PandaID: f"could not register the output datasets: {exc}" for j in ok})
    for job in bunch:
        if job.PandaID in failed:
            _fail(conn, job, now, summary, ddm=failed[job.PandaID])
        else:
            _commit_job(conn, svc, job, res, now, summary)


def _commit_job(conn: Connection, svc: DataService, job: JobSpec, res: resolve.Resolution,
                now: dt.datetime, summary: Summary) -> None:  # fmt: skip
    files.save(conn, job, now=now)
    if any(f.rowID in res.changed for f in job.Files):
        files.resign(conn, job, svc.signing_key)
    waits = any(f.status == FileStatus.pending.value for f in resolve.inputs(job))
    new = JobStatus.assigned if waits else JobStatus.activated
    values = {"computingSite": job.computingSite, "cloud": job.cloud, "destinationSE": job.destinationSE,
              "dispatchDBlock": job.dispatchDBlock}  # fmt: skip
    try:
        jobrows.set_status(
            conn,
            job.PandaID,
            new,
            now=now,
            expect=[JobStatus.defined],
            values=values,
            reason=f"at {job.computingSite}" + (f" waiting for {job.dispatchDBlock}" if waits else ""),
        )
    except StateConflict as exc:
        log.info("setupper: %s", exc)
        return
    summary.assigned += waits
    summary.activated += not waits


def _to_waiting(conn: Connection, svc: DataService, job: JobSpec, res: resolve.Resolution,
                now: dt.datetime, summary: Summary) -> None:  # fmt: skip
    for f in resolve.inputs(job):
        if f.rowID in res.missing_rows:
            f.status = FileStatus.missing.value
    files.save(conn, job, now=now, fields=("GUID", "fsize", "checksum", "scope", "status"))
    if any(f.rowID in res.changed for f in job.Files):
        files.resign(conn, job, svc.signing_key)
    why = "; ".join(res.missing[job.PandaID])[:250]
    try:
        jobrows.set_status(conn, job.PandaID, JobStatus.waiting, now=now, expect=[JobStatus.defined],
                           values={"brokerageErrorDiag": None}, reason=f"missing input: {why}")  # fmt: skip
    except StateConflict as exc:
        log.info("setupper: %s", exc)
        return
    summary.waiting += 1


def _fail(conn: Connection, job: JobSpec, now: dt.datetime, summary: Summary, *,
          brokerage: tuple[int | None, str] | None = None, ddm: str | None = None) -> None:  # fmt: skip
    if brokerage is not None:
        values = {"brokerageErrorCode": brokerage[0] or int(BrokerageError.RELEASE_NOT_FOUND),
                  "brokerageErrorDiag": brokerage[1]}  # fmt: skip
    else:
        values = {"ddmErrorCode": int(DdmError.SETUPPER), "ddmErrorDiag": f"Setupper: {ddm}"}
    summary.failed += files.fail_job(conn, job.PandaID, expect=JobStatus.defined, values=values, now=now,
                                     reason=str(values))  # fmt: skip
