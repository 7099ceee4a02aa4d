"""storeJobs: insert submitted jobs as `defined` rows with their files and parameters.

S08 TaskBuffer.storeJobs / DBProxy.insertNewJob: PandaIDs from the sequence, $PANDAID in LFNs
(and the job parameters that name them) replaced by the zero-padded PandaID, prodUserID from
the caller's certificate, a per-user jobDefinitionID, relocationFlag=1 when the submitter chose
the site, and the user-job priority formula of §4.4 (without quotas, which nothing fills).

Not classic: each job is signed with the server's job-signing key once it is final (after the
$PANDAID substitution) and the signature is stored in jobparamstable.jobSignature; our pilot
refuses a job whose specification no longer matches it (protocol/signing.py). Code that later
changes a signed field of a stored job (an input's GUID or checksum, an output's LFN, …) must
store job_signature(job) with it, in the same transaction (docs/development.md).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.errors import InvalidRequest, PandaError, RoleRequired
from panda_server.protocol import signing
from panda_server.protocol.jobspec import JobSpec
from panda_server.protocol.states import FileStatus, FileType, JobStatus
from panda_server.taskbuffer import pandalog, rows, users

NEVER = dt.datetime(1, 1, 1)  # prodDBUpdateTime of a job Bamboo has not reported yet
USER_LABELS = frozenset({"user", "panda"})
_PANDAID = re.compile(r"\$PANDAID")


def store_jobs(
    conn: Connection,
    jobs: list[JobSpec],
    *,
    dn: str,
    production: bool,
    host: str,
    now: dt.datetime,
    signing_key: Path,
) -> list[tuple[int, int, str | None]]:
    """Insert jobs; returns [(PandaID, jobDefinitionID, jobName)] in submission order."""
    _validate(jobs, production)
    key = load_signing_key(signing_key)  # before anything is written: no key, no unsigned jobs
    user = users.lock_user(conn, dn, now=now)
    requested = {j.jobDefinitionID for j in jobs if j.jobDefinitionID is not None}
    shared_def_id = None if requested else users.take_job_definition_id(conn, user, None, now=now)
    n_user_jobs = _count_user_jobs(conn, dn) if any(_is_user(j) for j in jobs) else 0
    out = []
    for job in jobs:
        def_id = job.jobDefinitionID
        if def_id is None:
            def_id = shared_def_id
        else:
            users.take_job_definition_id(conn, user, def_id, now=now)
        _prepare(conn, job, dn=dn, production=production, def_id=def_id, n_user_jobs=n_user_jobs, now=now)
        _insert(conn, job, host=host, signature=signing.sign_job(job, key))
        out.append((job.PandaID, job.jobDefinitionID, job.jobName))
    pandalog.record(conn, "submitJobs", f"{host} - {len(out)} jobs PandaID={out[0][0]}..{out[-1][0]}",
                    now=now, user=user["name"])  # fmt: skip
    return out


def _is_user(job: JobSpec) -> bool:
    return (job.prodSourceLabel or "user") in USER_LABELS


def _validate(jobs: list[JobSpec], production: bool) -> None:
    if not jobs:
        raise InvalidRequest("no jobs in the submission")
    for index, job in enumerate(jobs):
        if not production and job.prodSourceLabel == "managed":
            raise RoleRequired(f"job {index}: prodSourceLabel=managed needs the production role")
        for f in job.Files:
            if not f.lfn:
                raise InvalidRequest(f"job {index}: a file has no lfn")
            if f.type not in {x.value for x in FileType}:
                raise InvalidRequest(
                    f"job {index}: file {f.lfn} has type {f.type!r}; use input, output or log"
                )


def _count_user_jobs(conn: Connection, dn: str) -> int:
    total = 0
    for name in ("jobsdefined4", "jobswaiting4", "jobsactive4"):
        table = t.JOB_TABLE[name]
        total += conn.execute(sa.select(sa.func.count()).where(table.c.prodUserID == dn)).scalar_one()
    return total


def _prepare(
    conn: Connection,
    job: JobSpec,
    *,
    dn: str,
    production: bool,
    def_id: int,
    n_user_jobs: int,
    now: dt.datetime,
) -> None:
    job.PandaID = conn.execute(t.PANDAID_SEQ.next_value()).scalar_one()
    job.jobDefinitionID = def_id
    if not production or job.prodUserID is None:
        job.prodUserID = dn
    job.prodSourceLabel = job.prodSourceLabel or "user"
    job.jobStatus = JobStatus.defined.value
    job.commandToPilot = None
    job.creationTime = job.modificationTime = job.stateChangeTime = now
    job.prodDBUpdateTime = NEVER
    job.attemptNr = job.attemptNr if job.attemptNr is not None else 1
    job.relocationFlag = 1 if job.computingSite else 0
    if _is_user(job):
        # S08 user priority: 1000 - (jobs of the user already in PanDA)/5 (+ site offsets later)
        job.assignedPriority = 1000 - n_user_jobs // 5
        job.currentPriority = job.assignedPriority
    else:
        job.assignedPriority = job.assignedPriority if job.assignedPriority is not None else 0
        job.currentPriority = job.currentPriority if job.currentPriority is not None else job.assignedPriority
    stamp = f"{job.PandaID:05d}"
    if job.jobParameters:
        job.jobParameters = _PANDAID.sub(stamp, job.jobParameters)
    for f in job.Files:
        f.PandaID = job.PandaID
        f.lfn = _PANDAID.sub(stamp, f.lfn)
        if f.status != FileStatus.ready.value:
            f.status = FileStatus.unknown.value


def _insert(conn: Connection, job: JobSpec, *, host: str, signature: str) -> None:
    job.creationHost = job.creationHost or host
    conn.execute(t.jobsdefined4.insert().values(**rows.job_values(job)))
    conn.execute(t.jobparamstable.insert().values(
        PandaID=job.PandaID, modificationTime=job.creationTime, jobParameters=job.jobParameters,
        jobSignature=signature))  # fmt: skip
    if not job.Files:
        return
    file_rows = []
    for f in job.Files:
        f.rowID = conn.execute(t.ROWID_SEQ.next_value()).scalar_one()
        values = f.to_dict()
        values["modificationTime"] = job.creationTime
        file_rows.append(values)
    conn.execute(t.filestable4.insert(), file_rows)


def load_signing_key(path: Path) -> signing.PrivateKey:
    """The server's job-signing key (Settings.jobsign_key), read once per process."""
    return _load_key(Path(path))


@functools.cache
def _load_key(path: Path) -> signing.PrivateKey:
    try:
        return signing.load_private_key(path)
    except signing.SigningKeyError as exc:  # not cached: the next submission tries again
        raise PandaError(f"cannot sign jobs: {exc}. Create the key with `panda-ca init` "
                         "(or point PANDA_PKI_DIR at the PKI that has it) and retry") from None  # fmt: skip


def job_signature(job: JobSpec, key_path: Path) -> str:
    """What store_jobs stores with a job (jobparamstable.jobSignature), for the job as it is now,
    files included in their rowID order: to re-sign a job whose signed fields were changed after
    submission, and for jobs written to the DB by other means (tests, benchmarks)."""
    return signing.sign_job(job, load_signing_key(key_path))
