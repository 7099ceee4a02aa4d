"""killJobs and reassignJobs (S08 DBProxy.killJob / resetJob)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.errors import StateConflict
from panda_server.protocol.codes import KILL_CODES, TaskBufferError
from panda_server.protocol.identity import user_name
from panda_server.protocol.states import TERMINAL, WITH_PILOT, FileStatus, FileType, JobStatus
from panda_server.taskbuffer import jobs, pandalog

log = logging.getLogger(__name__)
REASSIGNABLE = frozenset({JobStatus.defined, JobStatus.assigned, JobStatus.waiting, JobStatus.activated})
_SUB_SUFFIX = re.compile(r"_sub\d+$")


def may_act_on(owner_dn: str | None, dn: str, production: bool) -> bool:
    """S08 kill ownership: the requester's CN must match the owner's, unless production role."""
    return production or (owner_dn is not None and user_name(owner_dn) == user_name(dn))


def kill_jobs(
    conn: Connection, ids: Sequence[int], *, dn: str, production: bool, code: str | None, now: dt.datetime
) -> list[bool]:
    """True per job the kill was accepted for: tobekilled for pilot-held jobs, cancelled otherwise."""
    error, diag = KILL_CODES.get(str(code), (TaskBufferError.KILLED, f"killed by {user_name(dn)}"))
    results = []
    for panda_id in ids:
        results.append(_kill_one(conn, int(panda_id), dn, production, int(error), diag, now))
    pandalog.record(conn, "killJobs", f"{sum(results)}/{len(results)} killed: {list(ids)[:50]}",
                    now=now, user=user_name(dn))  # fmt: skip
    return results


def _kill_one(
    conn: Connection, panda_id: int, dn: str, production: bool, error: int, diag: str, now: dt.datetime
) -> bool:
    for _ in range(3):  # the job may move while we look; bounded
        info = jobs.status_of(conn, [panda_id]).get(panda_id)
        if info is None or not may_act_on(info["prodUserID"], dn, production):
            return False
        status = JobStatus(info["jobStatus"])
        if status in TERMINAL:
            return False
        values = {"taskBufferErrorCode": error, "taskBufferErrorDiag": diag}
        if status in WITH_PILOT:
            # the pilot learns it from the next updateJob reply and reports failed/1144
            row = jobs.update_fields(
                conn, panda_id, status, {**values, "commandToPilot": "tobekilled"}, now=now
            )
            if row is not None:
                return True
            continue
        try:
            jobs.set_status(conn, panda_id, JobStatus.cancelled, now=now, expect=[status],
                            values={**values, "endTime": now, "commandToPilot": "tobekilled"}, reason=diag)  # fmt: skip
        except StateConflict:
            continue
        _set_output_files(conn, panda_id, FileStatus.cancelled)
        return True
    return False


def _set_output_files(conn: Connection, panda_id: int, status: FileStatus) -> None:
    f = t.filestable4
    conn.execute(
        sa.update(f)
        .where(f.c.PandaID == panda_id, f.c.type.in_([FileType.output.value, FileType.log.value]))
        .values(status=status.value)
    )


def reassign_jobs(
    conn: Connection, ids: Sequence[int], *, dn: str, production: bool, now: dt.datetime
) -> list[bool]:
    """Send waiting/defined/assigned/activated jobs back to defined for a new brokerage."""
    results = []
    for panda_id in ids:
        results.append(_reassign_one(conn, int(panda_id), dn, production, now))
    pandalog.record(
        conn, "reassignJobs", f"{sum(results)}/{len(results)} reassigned", now=now, user=user_name(dn)
    )
    return results


def _reassign_one(conn: Connection, panda_id: int, dn: str, production: bool, now: dt.datetime) -> bool:
    found = jobs.status_of(conn, [panda_id]).get(panda_id)
    if found is None or not may_act_on(found["prodUserID"], dn, production):
        return False
    status = JobStatus(found["jobStatus"])
    if status not in REASSIGNABLE:
        return False
    table = t.JOB_TABLE[found["table"]]
    row = conn.execute(sa.select(table).where(table.c.PandaID == panda_id)).mappings().one()
    values = {"computingElement": None, "dispatchDBlock": None, "destinationSE": None}
    if row["relocationFlag"] != 1:
        values["computingSite"] = None
    if status == JobStatus.activated:
        values["currentPriority"] = max(row["currentPriority"] or 0, 100)
    try:
        if status == JobStatus.defined:
            if jobs.update_fields(conn, panda_id, status, values, now=now) is None:
                return False
        else:
            jobs.set_status(conn, panda_id, JobStatus.defined, now=now, expect=[status], values=values,
                            reason="reassigned")  # fmt: skip
    except StateConflict:
        return False
    _reset_files(conn, panda_id)
    return True


def _reset_files(conn: Connection, panda_id: int) -> None:
    f = t.filestable4
    for row in conn.execute(
        sa.select(f.c.rowID, f.c.type, f.c.destinationDBlock).where(f.c.PandaID == panda_id)
    ):
        values = {"dispatchDBlock": None}
        if row.type != FileType.input.value:
            values["status"] = FileStatus.unknown.value
            if row.destinationDBlock:
                values["destinationDBlock"] = _SUB_SUFFIX.sub("", row.destinationDBlock)
        conn.execute(sa.update(f).where(f.c.rowID == row.rowID).values(**values))
