"""Client-facing use cases (S08 userinterface/UserIF.py): validate, call the task buffer, answer.

Each function runs inside the caller's transaction. Ids and job lists are bounded by Settings.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.caller import Caller
from panda_server.db import tables as t
from panda_server.errors import InvalidRequest, NotSecure
from panda_server.protocol.jobspec import JobSpec
from panda_server.taskbuffer import control, rows, store


def _require_dn(caller: Caller) -> str:
    if not caller.secure or not caller.dn:
        raise NotSecure()
    return caller.dn


def parse_ids(raw: Any, limit: int) -> list[int]:
    """ids as a JSON list, a Python list, or a comma/space separated string."""
    if raw in (None, ""):
        raise InvalidRequest("ids is required")
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except ValueError:
                raise InvalidRequest("ids is not valid JSON") from None
        else:
            raw = text.replace(",", " ").split()
    if not isinstance(raw, list):
        raw = [raw]
    if len(raw) > limit:
        raise InvalidRequest(f"at most {limit} ids per call, got {len(raw)}")
    try:
        return [int(x) for x in raw]
    except (TypeError, ValueError):
        raise InvalidRequest("every id must be an integer PandaID") from None


def submit_jobs(
    conn: Connection,
    jobs: list[JobSpec],
    caller: Caller,
    now: dt.datetime,
    *,
    signing_key: Path,
) -> list[tuple[int, int, str | None]]:
    dn = _require_dn(caller)
    return store.store_jobs(conn, jobs, dn=dn, production=caller.production, host=caller.host, now=now,
                            signing_key=signing_key)  # fmt: skip


def get_jobs(conn: Connection, ids: Sequence[int], *, with_archive: bool = True) -> list[JobSpec | None]:
    tables = t.JOB_TABLE if with_archive else ("jobsdefined4", "jobswaiting4", "jobsactive4")
    return rows.peek_jobs(conn, ids, tables=tables)


def kill_jobs(
    conn: Connection, ids: Sequence[int], caller: Caller, code: str | None, now: dt.datetime
) -> list[bool]:
    dn = _require_dn(caller)
    return control.kill_jobs(conn, ids, dn=dn, production=caller.production, code=code, now=now)


def reassign_jobs(conn: Connection, ids: Sequence[int], caller: Caller, now: dt.datetime) -> list[bool]:
    dn = _require_dn(caller)
    return control.reassign_jobs(conn, ids, dn=dn, production=caller.production, now=now)


def query_panda_ids(conn: Connection, job_definition_ids: Sequence[int]) -> list[int | None]:
    """S08 queryPandaIDs: the newest PandaID of the managed job with each jobDefinitionID."""
    best: dict[int, int] = {}
    for table in t.JOB_TABLE.values():
        query = (
            sa.select(table.c.jobDefinitionID, sa.func.max(table.c.PandaID))
            .where(
                table.c.jobDefinitionID.in_(list(job_definition_ids)), table.c.prodSourceLabel == "managed"
            )
            .group_by(table.c.jobDefinitionID)
        )
        for def_id, panda_id in conn.execute(query):
            best[def_id] = max(best.get(def_id, 0), panda_id)
    return [best.get(int(i)) for i in job_definition_ids]
