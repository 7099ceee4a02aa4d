"""Writing file rows back, and re-signing a job whose signed file fields changed.

docs/development.md, "Changing a signed job field": the setupper fills input GUIDs, sizes,
checksums and scopes from DDM; the job's signature (protocol/signing.py) covers those, so the
job is re-signed in the same transaction, or our pilot would refuse it (1390).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.errors import StateConflict
from panda_server.protocol.jobspec import JobSpec
from panda_server.protocol.states import FileStatus, FileType, JobStatus
from panda_server.taskbuffer import jobs, store

log = logging.getLogger(__name__)

SAVED_FIELDS = ("GUID", "fsize", "checksum", "scope", "status", "dispatchDBlock", "destinationDBlock",
                "destinationSE", "md5sum")  # fmt: skip


def save(conn: Connection, job: JobSpec, *, now: dt.datetime, fields: Iterable[str] = SAVED_FIELDS) -> None:
    """Write the listed fields of every file of `job` (its FileSpecs, as changed in memory)."""
    f = t.filestable4
    names = list(fields)
    for spec in job.Files:
        values: dict[str, Any] = {name: getattr(spec, name) for name in names}
        conn.execute(sa.update(f).where(f.c.rowID == spec.rowID).values(**values, modificationTime=now))


def set_files(conn: Connection, panda_ids: Iterable[int], values: Mapping[str, Any], *, now: dt.datetime,
              types: Iterable[str] = (FileType.output.value, FileType.log.value)) -> None:  # fmt: skip
    f = t.filestable4
    conn.execute(
        sa.update(f).where(f.c.PandaID.in_(list(panda_ids)), f.c.type.in_(list(types)))
        .values(**values, modificationTime=now)
    )  # fmt: skip


def fail_job(conn: Connection, panda_id: int, *, expect: JobStatus, values: Mapping[str, Any],
             now: dt.datetime, reason: str) -> bool:  # fmt: skip
    """A data-service stage gives up on a job: `failed` (endTime now), outputs and log `failed`.

    False if the job is no longer in `expect` (someone else moved it first).
    """
    try:
        jobs.set_status(conn, panda_id, JobStatus.failed, now=now, expect=[expect],
                        values={**values, "endTime": now}, reason=reason)  # fmt: skip
    except StateConflict as exc:
        log.info("%s", exc)
        return False
    set_files(conn, [panda_id], {"status": FileStatus.failed.value}, now=now)
    return True


def resign(conn: Connection, job: JobSpec, key: Path) -> None:
    """Store a fresh signature for the job as it is now (files in rowID order)."""
    job.Files.sort(key=lambda spec: spec.rowID)
    p = t.jobparamstable
    conn.execute(
        sa.update(p).where(p.c.PandaID == job.PandaID).values(jobSignature=store.job_signature(job, key))
    )
