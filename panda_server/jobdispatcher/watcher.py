"""Watcher: the server-side heartbeat watchdog (S08 jobdispatcher/Watcher.py, run by copyArchive).

A pilot reports every 30 min; a job it stopped reporting on must not stay active forever:

* `sent` (dispatched, never acknowledged) older than `watcher_sent_timeout` → failed, 102.
* `starting`/`running` without a heartbeat for the label's timeout (production 6 h, analysis 2 h)
  → failed, 100; except production jobs at a site whose schedconfig `retry` is not 'FALSE', which go
  to `holding` so that a later pilot at the site can recover them (S08 job recovery).
* `holding` without a pilot report (job_output_report) for `watcher_holding_timeout` → failed, 101.
  A holding job with a report belongs to the Adder and is left alone.

Race safety: candidates are selected with their staleness condition FOR UPDATE SKIP LOCKED in the
transaction that changes them, so a concurrent heartbeat either commits first (the job is no
longer stale and is not selected) or waits for us and then finds the job failed (the dispatcher
answers `tobekilled`) or holding (kept holding; its final report then goes to the Adder).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from panda_server.db import tables as t
from panda_server.db.engine import transaction
from panda_server.errors import NotFound, StateConflict
from panda_server.protocol.codes import JobDispatcherError
from panda_server.protocol.states import FileStatus, FileType, JobStatus
from panda_server.settings import Settings
from panda_server.taskbuffer import jobs

log = logging.getLogger(__name__)

BATCH = 100  # jobs per transaction: row locks are held only briefly
MAX_PER_CYCLE = 500  # jobs per category per cycle: a backlog is worked off over several cycles
ANALYSIS_LABELS = frozenset({"user", "panda"})
HEARTBEAT_WATCHED = (JobStatus.starting, JobStatus.running)
CATEGORIES = ("sent", "lost", "holding")
_COLUMNS = ("PandaID", "jobStatus", "prodSourceLabel", "computingSite", "modificationTime")


class Verdict(NamedTuple):
    status: JobStatus
    code: int | None  # jobDispatcherErrorCode; None while the job waits for recovery
    diag: str


@dataclasses.dataclass
class Summary:
    sent_failed: int = 0
    lost_failed: int = 0
    to_holding: int = 0
    recovery_failed: int = 0
    skipped: int = 0  # moved by someone else meanwhile (StateConflict / NotFound)


def _span(seconds: float) -> str:
    """30 min, 6 h, 90 s: the unit classic diags use (S08 "within 30 min")."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def is_analysis(label: str | None) -> bool:
    return label in ANALYSIS_LABELS


def heartbeat_timeout(label: str | None, settings: Settings) -> float:
    if is_analysis(label):
        return settings.watcher_heartbeat_timeout_analysis
    return settings.watcher_heartbeat_timeout_production


def verdict(
    job: Mapping[str, Any],
    site_retry: bool,
    settings: Settings,
    now: dt.datetime,
    *,
    has_report: bool = False,
) -> Verdict | None:
    """What the watcher does with one job (jobStatus, prodSourceLabel, modificationTime); None: nothing.

    Pure, so that the rules can be read and tested as a table; the SQL in _stale() selects the
    same jobs and this re-checks each one.
    """
    status, since = JobStatus(job["jobStatus"]), job["modificationTime"]
    age = (now - since).total_seconds()
    if status == JobStatus.sent:
        limit = settings.watcher_sent_timeout
        if age <= limit:
            return None
        diag = f"Sent job didn't receive reply from pilot within {_span(limit)}"
        return Verdict(JobStatus.failed, int(JobDispatcherError.SENT_TIMEOUT), diag)
    if status in HEARTBEAT_WATCHED:
        limit = heartbeat_timeout(job["prodSourceLabel"], settings)
        if age <= limit:
            return None
        lost = f"lost heartbeat: no update from the pilot since {since:%Y-%m-%d %H:%M:%S} (limit {limit:g} s)"
        if site_retry and not is_analysis(job["prodSourceLabel"]):
            # S08: managed job at a retry site → holding, the job-recovery window of a later pilot
            return Verdict(JobStatus.holding, None, f"{lost}; waiting for job recovery by a later pilot")
        return Verdict(JobStatus.failed, int(JobDispatcherError.LOST_HEARTBEAT), lost)
    if status == JobStatus.holding and not has_report:
        limit = settings.watcher_holding_timeout
        if age <= limit:
            return None
        diag = f"job recovery not done within {_span(limit)}"
        return Verdict(JobStatus.failed, int(JobDispatcherError.RECOVERY_FAILED), diag)
    return None


def run_once(engine: Engine, settings: Settings, now: dt.datetime) -> Summary:
    """One short transaction per batch, so that heartbeats wait for a lock at most one batch long;
    batches advance by PandaID, so that a job skipped in this cycle is not picked again in it."""
    summary = Summary()
    for category in CATEGORIES:
        last_id, done = 0, 0
        while done < MAX_PER_CYCLE:
            with transaction(engine) as conn:
                batch = _candidates(conn, category, settings, now, after=last_id)
                _judge_batch(conn, batch, settings, now, summary)
            if batch:
                last_id = batch[-1]["PandaID"]
            done += len(batch)
            if len(batch) < BATCH:
                break
    if summary != Summary():
        log.info("watcher %s", summary)
    return summary


def _stale(category: str, settings: Settings, now: dt.datetime) -> sa.ColumnElement[bool]:
    """The SQL form of verdict()'s time conditions, so that only stale jobs are locked."""
    a, r = t.jobsactive4, t.job_output_report

    def older(seconds: float) -> sa.ColumnElement[bool]:
        return a.c.modificationTime < now - dt.timedelta(seconds=seconds)

    if category == "sent":
        return sa.and_(a.c.jobStatus == JobStatus.sent.value, older(settings.watcher_sent_timeout))
    if category == "lost":
        analysis = a.c.prodSourceLabel.in_(sorted(ANALYSIS_LABELS))
        return sa.and_(
            a.c.jobStatus.in_([s.value for s in HEARTBEAT_WATCHED]),
            sa.or_(
                sa.and_(analysis, older(settings.watcher_heartbeat_timeout_analysis)),
                sa.and_(sa.not_(sa.func.coalesce(analysis, False)),
                        older(settings.watcher_heartbeat_timeout_production)),
            ),
        )  # fmt: skip
    assert category == "holding"
    no_report = ~sa.exists().where(r.c.PandaID == a.c.PandaID)
    return sa.and_(
        a.c.jobStatus == JobStatus.holding.value, older(settings.watcher_holding_timeout), no_report
    )


def _candidates(
    conn: Connection, category: str, settings: Settings, now: dt.datetime, *, after: int
) -> list[dict[str, Any]]:
    a = t.jobsactive4
    query = (
        sa.select(*(a.c[name] for name in _COLUMNS))
        .where(_stale(category, settings, now), a.c.PandaID > after)
        .order_by(a.c.PandaID)
        .limit(BATCH)
        .with_for_update(of=a, skip_locked=True)
    )
    return [dict(row) for row in conn.execute(query).mappings()]


def _retry_sites(conn: Connection, sites: Iterable[str | None]) -> set[str]:
    """Sites whose schedconfig allows job recovery (S08: only retry 'FALSE' disables it).

    A site unknown to schedconfig gets no recovery: no pilot will come to pick the job up.
    """
    s = t.schedconfig
    wanted = sorted({site for site in sites if site})
    if not wanted:
        return set()
    enabled = sa.func.bool_or(sa.func.upper(sa.func.coalesce(s.c.retry, "TRUE")) != "FALSE")
    query = sa.select(s.c.siteid).where(s.c.siteid.in_(wanted)).group_by(s.c.siteid).having(enabled)
    return set(conn.execute(query).scalars())


def _judge_batch(
    conn: Connection, batch: list[dict[str, Any]], settings: Settings, now: dt.datetime, summary: Summary
) -> None:
    retry = _retry_sites(conn, (job["computingSite"] for job in batch))
    for job in batch:
        # holding candidates were selected without a report (and are locked, so none can arrive)
        found = verdict(job, job["computingSite"] in retry, settings, now)
        if found is not None:
            _apply(conn, job, found, now, summary)


def _apply(
    conn: Connection, job: Mapping[str, Any], found: Verdict, now: dt.datetime, summary: Summary
) -> None:
    panda_id, old = job["PandaID"], job["jobStatus"]
    values: dict[str, Any] = {"jobDispatcherErrorDiag": found.diag}
    if found.status == JobStatus.failed:
        values.update(jobDispatcherErrorCode=found.code, endTime=now)
    try:
        jobs.set_status(
            conn, panda_id, found.status, now=now, expect=[old], values=values, reason="by watcher"
        )
    except (StateConflict, NotFound) as exc:
        log.info("watcher PandaID=%s site=%s skipped: %s", panda_id, job["computingSite"], exc)
        summary.skipped += 1
        return
    log.info("watcher PandaID=%s site=%s %s -> %s: %s", panda_id, job["computingSite"], old, found.status.value,
             found.diag)  # fmt: skip
    if found.status == JobStatus.failed:
        _fail_outputs(conn, panda_id, now)
    _count(summary, found)


def _fail_outputs(conn: Connection, panda_id: int, now: dt.datetime) -> None:
    """S08 Watcher: a failed job's output and log files are marked failed (nothing will come)."""
    f = t.filestable4
    conn.execute(
        sa.update(f)
        .where(f.c.PandaID == panda_id, f.c.type.in_([FileType.output.value, FileType.log.value]),
               f.c.status.is_distinct_from(FileStatus.ready.value))
        .values(status=FileStatus.failed.value, modificationTime=now)
    )  # fmt: skip


def _count(summary: Summary, found: Verdict) -> None:
    if found.status == JobStatus.holding:
        summary.to_holding += 1
    elif found.code == JobDispatcherError.SENT_TIMEOUT:
        summary.sent_failed += 1
    elif found.code == JobDispatcherError.LOST_HEARTBEAT:
        summary.lost_failed += 1
    else:
        summary.recovery_failed += 1
