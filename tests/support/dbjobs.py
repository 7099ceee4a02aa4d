"""Put jobs into a given state directly in the DB (test set-up only; assertions use the API)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.protocol.jobspec import JobSpec
from panda_server.protocol.states import TABLE_OF, JobStatus
from panda_server.settings import Settings
from panda_server.taskbuffer import rows, store
from tests.support.jobs import simple_job


def insert_job(
    conn: Connection,
    status: JobStatus | str,
    *,
    job: JobSpec | None = None,
    now: dt.datetime | None = None,
    **attrs,
) -> int:
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    job = job or simple_job(**attrs)
    job.PandaID = conn.execute(t.PANDAID_SEQ.next_value()).scalar_one()
    job.jobStatus = JobStatus(status).value
    job.creationTime = job.modificationTime = job.stateChangeTime = now
    job.attemptNr = job.attemptNr or 1
    job.prodUserID = job.prodUserID or "/DC=org/DC=pandawms/OU=Users/CN=Jane Doe"
    conn.execute(t.JOB_TABLE[TABLE_OF[JobStatus(status)]].insert().values(**rows.job_values(job)))
    for f in job.Files:
        f.PandaID = job.PandaID
        f.rowID = conn.execute(t.ROWID_SEQ.next_value()).scalar_one()
        f.lfn = f.lfn.replace("$PANDAID", f"{job.PandaID:05d}")
        conn.execute(t.filestable4.insert().values(**f.to_dict(), modificationTime=now))
    # signed as store_jobs signs (with the test PKI's key: tests/conftest.py sets PANDA_PKI_DIR)
    conn.execute(t.jobparamstable.insert().values(PandaID=job.PandaID, jobParameters=job.jobParameters,
                                                  jobSignature=store.job_signature(job, Settings.from_env().jobsign_key)))  # fmt: skip
    return job.PandaID
