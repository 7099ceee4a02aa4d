"""Row ↔ JobSpec/FileSpec conversion and reads across the four job tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.db.engine import fetch
from panda_server.protocol.jobspec import FileSpec, JobSpec
from panda_server.protocol.states import TABLE_OF, JobStatus

FILE_COLUMNS = [c for c in t.filestable4.c if c.name != "modificationTime"]


def job_from_row(row: Mapping[str, Any]) -> JobSpec:
    job = JobSpec()
    for name in t.JOB_COLUMNS:
        object.__setattr__(job, name, row.get(name))
    return job


def file_from_row(row: Mapping[str, Any]) -> FileSpec:
    f = FileSpec()
    for c in FILE_COLUMNS:
        object.__setattr__(f, c.name, row.get(c.name))
    return f


def job_values(job: JobSpec) -> dict[str, Any]:
    return {name: getattr(job, name) for name in t.JOB_COLUMNS}


def find_jobs(
    conn: Connection, ids: Sequence[int], *, tables: Iterable[str] = t.JOB_TABLE, for_update: bool = False
) -> dict[int, tuple[str, Mapping[str, Any]]]:
    """{PandaID: (table name, row)} for the ids present in any of `tables`."""
    found: dict[int, tuple[str, Mapping[str, Any]]] = {}
    wanted = list(dict.fromkeys(int(i) for i in ids))
    for name in tables:
        missing = [i for i in wanted if i not in found]
        if not missing:
            break
        table = t.JOB_TABLE[name]
        query = sa.select(table).where(table.c.PandaID.in_(missing))
        if for_update:
            query = query.with_for_update()
        for row in conn.execute(query).mappings():
            found[row["PandaID"]] = (name, row)
    return found


# Constant statements for getJob's hot path (no per-call statement compilation).
_FILES = (
    "SELECT " + ", ".join(f'"{c.name}"' for c in FILE_COLUMNS)
    + ' FROM filestable4 WHERE "PandaID" = ANY(%(ids)s) ORDER BY "rowID"'
)  # fmt: skip
_PARAMS = (
    'SELECT "PandaID", "jobParameters", "jobSignature" FROM jobparamstable WHERE "PandaID" = ANY(%(ids)s)'
)


def files_of(conn: Connection, ids: Sequence[int]) -> dict[int, list[FileSpec]]:
    out: dict[int, list[FileSpec]] = {int(i): [] for i in ids}
    if not out:
        return out
    for row in fetch(conn, _FILES, {"ids": list(out)}):
        out[row["PandaID"]].append(file_from_row(row))
    return out


def job_parameters(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    return {pid: params for pid, (params, _signature) in signed_parameters(conn, ids).items()}


def signed_parameters(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[str | None, str | None]]:
    """{PandaID: (jobParameters, jobSignature)}: what getJob sends (signature NULL if unsigned)."""
    found = fetch(conn, _PARAMS, {"ids": [int(i) for i in ids]})
    return {r["PandaID"]: (r["jobParameters"], r["jobSignature"]) for r in found}


def job_metadata(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    m = t.metatable
    rows = conn.execute(sa.select(m.c.PandaID, m.c.metaData).where(m.c.PandaID.in_(list(ids))))
    return {r.PandaID: r.metaData for r in rows}


def lock_jobs(conn: Connection, status: JobStatus, *, limit: int) -> list[JobSpec]:
    """Up to `limit` jobs in `status`, oldest PandaID first, locked for this transaction; rows other
    workers hold are skipped (FOR UPDATE SKIP LOCKED), so several daemon copies share the work."""
    name = TABLE_OF[status]
    table = t.JOB_TABLE[name]
    query = (
        sa.select(table.c.PandaID).where(table.c.jobStatus == status.value)
        .order_by(table.c.PandaID).limit(limit).with_for_update(skip_locked=True)
    )  # fmt: skip
    ids = list(conn.execute(query).scalars())
    return [j for j in peek_jobs(conn, ids, tables=[name]) if j is not None]


def peek_jobs(
    conn: Connection, ids: Sequence[int], *, with_params: bool = True, tables: Iterable[str] = t.JOB_TABLE
) -> list[JobSpec | None]:
    """Full JobSpecs (files, parameters, metadata) in the order of `ids`; None where unknown."""
    found = find_jobs(conn, ids, tables=tables)
    present = list(found)
    files = files_of(conn, present)
    params = job_parameters(conn, present) if with_params else {}
    meta = job_metadata(conn, present) if with_params else {}
    out: list[JobSpec | None] = []
    for i in ids:
        entry = found.get(int(i))
        if entry is None:
            out.append(None)
            continue
        job = job_from_row(entry[1])
        object.__setattr__(job, "jobParameters", params.get(job.PandaID))
        object.__setattr__(job, "metadata", meta.get(job.PandaID))
        job.Files = files.get(job.PandaID, [])
        out.append(job)
    return out
