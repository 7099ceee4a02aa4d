"""Setupper (minimal): activate defined jobs that need no data movement.

S08 Setupper: a job whose computingSite is set and which has no input files has nothing to
dispatch, so it goes straight to `activated` (dispatchDBlock NULL). A computingSite unknown to
schedconfig fails the job with ddmErrorCode 100 (EC_Setupper). Jobs without a site or with
inputs wait for brokerage and DDM (a later stage of this daemon).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from panda_server.db import tables as t
from panda_server.db.engine import transaction
from panda_server.errors import StateConflict
from panda_server.protocol.codes import DdmError
from panda_server.protocol.states import FileType, JobStatus
from panda_server.settings import Settings
from panda_server.taskbuffer import jobs

log = logging.getLogger(__name__)
BATCH = 100


@dataclasses.dataclass
class Summary:
    activated: int = 0
    failed: int = 0
    left: int = 0  # need brokerage or input data: not handled here yet


def run_once(engine: Engine, settings: Settings, now: dt.datetime) -> Summary:
    summary = Summary()
    with transaction(engine) as conn:
        for panda_id, site, n_inputs in _candidates(conn):
            _setup_one(conn, panda_id, site, n_inputs, now, summary)
    if summary.activated or summary.failed:
        log.info("setupper activated=%d failed=%d left=%d", summary.activated, summary.failed, summary.left)
    return summary


def _candidates(conn: Connection) -> list[tuple[int, str | None, int]]:
    d, f = t.jobsdefined4, t.filestable4
    n_inputs = (
        sa.select(sa.func.count()).where(f.c.PandaID == d.c.PandaID, f.c.type == FileType.input.value)
        .scalar_subquery()
    )  # fmt: skip
    query = (
        sa.select(d.c.PandaID, d.c.computingSite, n_inputs)
        .where(d.c.jobStatus == JobStatus.defined.value)
        .order_by(d.c.PandaID)
        .limit(BATCH)
        .with_for_update(of=d, skip_locked=True)
    )
    return [tuple(r) for r in conn.execute(query)]


def _setup_one(
    conn: Connection, panda_id: int, site: str | None, n_inputs: int, now: dt.datetime, summary: Summary
) -> None:
    if not site or n_inputs:
        summary.left += 1
        return
    s = t.schedconfig
    known = conn.execute(sa.select(s.c.cloud).where(s.c.siteid == site).limit(1)).first()
    try:
        if known is None:
            jobs.set_status(conn, panda_id, JobStatus.failed, now=now, expect=[JobStatus.defined], values={
                "ddmErrorCode": int(DdmError.SETUPPER), "endTime": now,
                "ddmErrorDiag": f"Setupper: unknown computingSite {site}; check schedconfig"},
                reason="unknown site")  # fmt: skip
            summary.failed += 1
            return
        values = {"dispatchDBlock": None, "cloud": known.cloud}
        jobs.set_status(conn, panda_id, JobStatus.activated, now=now, expect=[JobStatus.defined], values=values,
                        reason="no input files")  # fmt: skip
        summary.activated += 1
    except StateConflict as exc:
        log.info("setupper: %s", exc)
