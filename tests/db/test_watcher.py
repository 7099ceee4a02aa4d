"""The heartbeat watchdog (panda-daemon watcher) against real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from panda_server.caller import Caller
from panda_server.db import tables as t
from panda_server.jobdispatcher import dispatcher, watcher
from panda_server.jobdispatcher.watcher import Verdict, verdict
from panda_server.protocol.states import JobStatus
from panda_server.settings import Settings
from panda_server.taskbuffer import reports, rows
from tests.support.dbjobs import insert_job

NOW = dt.datetime(2026, 11, 24, 12, 0, 0)
S = Settings()
H = dt.timedelta(hours=1)
PILOT = Caller(dn="/DC=org/DC=pandawms/OU=Robots/CN=pilot", secure=True, pilot=True)


def _job(conn, panda_id):
    return rows.peek_jobs(conn, [panda_id])[0]


def _insert(engine, status, age: dt.timedelta, *, site="CLOUDA_T1", label="managed", outputs=0) -> int:
    with engine.begin() as conn:
        return insert_job(conn, status, now=NOW - age, site=site, label=label, outputs=outputs)


# --- the pure decision, as a table ---

SENT_102 = Verdict(JobStatus.failed, 102, "Sent job didn't receive reply from pilot within 30 min")
SINCE = "since 2026-11-24 "


@pytest.mark.parametrize(
    ("status", "label", "age", "retry", "report", "expected"),
    [
        ("sent", "managed", dt.timedelta(minutes=29), True, False, None),
        ("sent", "managed", dt.timedelta(minutes=31), True, False, SENT_102),
        ("sent", "user", dt.timedelta(minutes=31), False, False, SENT_102),
        ("running", "managed", 5 * H, True, False, None),
        ("running", "managed", 7 * H, True, False, ("holding", None, "waiting for job recovery")),
        ("starting", "managed", 7 * H, True, False, ("holding", None, "waiting for job recovery")),
        ("running", "managed", 7 * H, False, False, ("failed", 100, "limit 21600 s")),
        ("running", None, 7 * H, False, False, ("failed", 100, "lost heartbeat: no update from the pilot")),
        ("running", "test", 7 * H, True, False, ("holding", None, SINCE + "05:00:00")),
        ("running", "user", 1 * H, True, False, None),
        ("running", "user", 3 * H, True, False, ("failed", 100, SINCE + "09:00:00 (limit 7200 s)")),
        ("starting", "panda", 3 * H, True, False, ("failed", 100, "limit 7200 s")),
        ("holding", "managed", 47 * H, True, False, None),
        ("holding", "managed", 49 * H, True, False, ("failed", 101, "job recovery not done within 48 h")),
        ("holding", "user", 49 * H, False, False, ("failed", 101, "within 48 h")),
        ("holding", "managed", 49 * H, True, True, None),  # the Adder's
        ("activated", "managed", 100 * H, True, False, None),
        ("transferring", "managed", 100 * H, True, False, None),
    ],
)
def test_verdict(status, label, age, retry, report, expected):
    job = {"jobStatus": status, "prodSourceLabel": label, "modificationTime": NOW - age}
    found = verdict(job, retry, S, NOW, has_report=report)
    if expected is None or isinstance(expected, Verdict):
        assert found == expected
        return
    new, code, diag_part = expected
    assert (found.status, found.code) == (JobStatus(new), code)
    assert diag_part in found.diag


def test_verdict_follows_the_settings():
    short = Settings(watcher_sent_timeout=90, watcher_holding_timeout=3 * 3600)
    sent = {
        "jobStatus": "sent",
        "prodSourceLabel": "managed",
        "modificationTime": NOW - dt.timedelta(seconds=91),
    }
    assert verdict(sent, True, short, NOW).diag.endswith("within 90 s")
    holding = {**sent, "jobStatus": "holding", "modificationTime": NOW - 4 * H}
    assert verdict(holding, True, short, NOW).diag == "job recovery not done within 3 h"


# --- cycles against the DB ---


def test_sent_jobs_without_reply_fail_with_102(clean_db):
    stale = _insert(clean_db, JobStatus.sent, dt.timedelta(minutes=31), outputs=1)
    fresh = _insert(clean_db, JobStatus.sent, dt.timedelta(minutes=5))
    summary = watcher.run_once(clean_db, S, NOW)
    assert summary == watcher.Summary(sent_failed=1)
    with clean_db.connect() as conn:
        job = _job(conn, stale)
        assert (job.jobStatus, job.jobDispatcherErrorCode) == ("failed", 102)
        assert job.jobDispatcherErrorDiag == "Sent job didn't receive reply from pilot within 30 min"
        assert job.endTime == NOW
        assert {f.status for f in job.Files} == {"failed"}  # output and log: nothing will come
        assert _job(conn, fresh).jobStatus == "sent"
    assert watcher.run_once(clean_db, S, NOW) == watcher.Summary()  # idempotent


def test_lost_heartbeat_production_goes_to_holding_at_a_retry_site(clean_db):
    held = _insert(clean_db, JobStatus.running, 7 * H, site="CLOUDA_T1")
    fresh = _insert(clean_db, JobStatus.running, 5 * H, site="CLOUDA_T1")
    assert watcher.run_once(clean_db, S, NOW) == watcher.Summary(to_holding=1)
    with clean_db.connect() as conn:
        job = _job(conn, held)
        assert (job.jobStatus, job.jobDispatcherErrorCode) == ("holding", None)
        assert "lost heartbeat" in job.jobDispatcherErrorDiag
        assert "waiting for job recovery" in job.jobDispatcherErrorDiag
        assert _job(conn, fresh).jobStatus == "running"
    # no recovery within 48 h of going to holding → 101
    assert watcher.run_once(clean_db, S, NOW + 47 * H).recovery_failed == 0
    assert watcher.run_once(clean_db, S, NOW + 49 * H).recovery_failed == 1
    with clean_db.connect() as conn:
        job = _job(conn, held)
        assert (job.jobStatus, job.jobDispatcherErrorCode) == ("failed", 101)
        assert job.jobDispatcherErrorDiag == "job recovery not done within 48 h"


@pytest.fixture
def no_retry_site(schedconfig_loaded, engine):
    """CLOUDB_T1 with schedconfig retry 'FALSE' for one test (schedconfig is shared by the session)."""
    s = t.schedconfig
    with engine.begin() as conn:
        conn.execute(sa.update(s).where(s.c.siteid == "CLOUDB_T1").values(retry="FALSE"))
    yield "CLOUDB_T1"
    with engine.begin() as conn:
        conn.execute(sa.update(s).where(s.c.siteid == "CLOUDB_T1").values(retry="TRUE"))


def test_lost_heartbeat_fails_production_jobs_where_recovery_is_off(clean_db, no_retry_site):
    at_no_retry = _insert(clean_db, JobStatus.starting, 7 * H, site=no_retry_site)
    at_unknown = _insert(clean_db, JobStatus.running, 7 * H, site="NO_SUCH_SITE")
    assert watcher.run_once(clean_db, S, NOW) == watcher.Summary(lost_failed=2)
    with clean_db.connect() as conn:
        for panda_id in (at_no_retry, at_unknown):
            job = _job(conn, panda_id)
            assert (job.jobStatus, job.jobDispatcherErrorCode) == ("failed", 100)
            assert job.jobDispatcherErrorDiag.startswith("lost heartbeat: no update from the pilot since")


def test_analysis_jobs_have_the_shorter_timeout_and_no_recovery(clean_db):
    analysis = _insert(clean_db, JobStatus.running, 3 * H, site="ANALY_CLOUDA_T1", label="user")
    young = _insert(clean_db, JobStatus.running, 1 * H, site="ANALY_CLOUDA_T1", label="panda")
    production = _insert(clean_db, JobStatus.running, 3 * H, site="CLOUDA_T1")
    assert watcher.run_once(clean_db, S, NOW) == watcher.Summary(lost_failed=1)
    with clean_db.connect() as conn:
        job = _job(conn, analysis)
        assert (job.jobStatus, job.jobDispatcherErrorCode) == ("failed", 100)
        assert "(limit 7200 s)" in job.jobDispatcherErrorDiag
        assert _job(conn, young).jobStatus == "running"
        assert _job(conn, production).jobStatus == "running"


def test_holding_jobs_with_a_report_are_left_to_the_adder(clean_db):
    with_report = _insert(clean_db, JobStatus.holding, 100 * H)
    without = _insert(clean_db, JobStatus.holding, 100 * H)
    with clean_db.begin() as conn:
        reports.save(conn, with_report, pilot_status="finished", data="{}", attempt_nr=1, label="managed",
                     now=NOW)  # fmt: skip
    assert watcher.run_once(clean_db, S, NOW) == watcher.Summary(recovery_failed=1)
    with clean_db.connect() as conn:
        assert _job(conn, with_report).jobStatus == "holding"
        assert _job(conn, without).jobStatus == "failed"


def test_timeouts_come_from_the_settings(clean_db):
    short = Settings(watcher_heartbeat_timeout_production=60, watcher_sent_timeout=30)
    running = _insert(clean_db, JobStatus.running, dt.timedelta(minutes=2), site="NO_SUCH_SITE")
    sent = _insert(clean_db, JobStatus.sent, dt.timedelta(minutes=1))
    assert watcher.run_once(clean_db, S, NOW) == watcher.Summary()
    assert watcher.run_once(clean_db, short, NOW) == watcher.Summary(sent_failed=1, lost_failed=1)
    with clean_db.connect() as conn:
        assert _job(conn, running).jobDispatcherErrorDiag.endswith("(limit 60 s)")
        assert _job(conn, sent).jobDispatcherErrorDiag.endswith("within 30 s")


def test_cycles_are_bounded_and_batched(clean_db, monkeypatch):
    monkeypatch.setattr(watcher, "BATCH", 2)
    monkeypatch.setattr(watcher, "MAX_PER_CYCLE", 4)
    ids = [_insert(clean_db, JobStatus.sent, H) for _ in range(5)]
    assert watcher.run_once(clean_db, S, NOW).sent_failed == 4
    assert watcher.run_once(clean_db, S, NOW).sent_failed == 1
    with clean_db.connect() as conn:
        assert {_job(conn, i).jobStatus for i in ids} == {"failed"}


def test_a_concurrent_heartbeat_is_not_overwritten(clean_db):
    """The pilot's heartbeat holds the row lock: the watcher skips the job, and once the heartbeat
    commits the job is fresh and stays running."""
    panda_id = _insert(clean_db, JobStatus.running, 7 * H, site="NO_SUCH_SITE")
    heartbeat_time = NOW - dt.timedelta(minutes=1)
    with clean_db.connect() as pilot_conn:
        tx = pilot_conn.begin()
        a = t.jobsactive4
        pilot_conn.execute(
            sa.update(a).where(a.c.PandaID == panda_id).values(modificationTime=heartbeat_time)
        )
        assert watcher.run_once(clean_db, S, NOW) == watcher.Summary()  # skipped, did not wait
        tx.commit()
    assert watcher.run_once(clean_db, S, NOW) == watcher.Summary()
    with clean_db.connect() as conn:
        job = _job(conn, panda_id)
        assert (job.jobStatus, job.modificationTime, job.jobDispatcherErrorCode) == (
            "running",
            heartbeat_time,
            None,
        )


def test_a_heartbeat_after_the_watcher_gets_tobekilled(clean_db):
    panda_id = _insert(clean_db, JobStatus.running, 7 * H, site="NO_SUCH_SITE")
    assert watcher.run_once(clean_db, S, NOW).lost_failed == 1
    for state in ("running", "finished"):
        with clean_db.begin() as conn:
            reply = dispatcher.update_job(conn, {"jobId": str(panda_id), "state": state}, PILOT, NOW)
        assert reply["command"] == "tobekilled"
    with clean_db.connect() as conn:
        job = _job(conn, panda_id)
        assert (job.jobStatus, job.jobDispatcherErrorCode) == ("failed", 100)


def _wait_for_a_lock_waiter(engine, timeout: float = 10.0) -> None:
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while conn.execute(query).scalar_one() == 0:
            assert time.monotonic() < deadline, "the heartbeat never waited for the watcher's lock"
            time.sleep(0.05)
            conn.rollback()


def test_a_heartbeat_waiting_for_the_watchers_lock_gets_tobekilled(clean_db, monkeypatch):
    """The heartbeat arrives while the watcher holds the row: it waits, then sees the job failed."""
    panda_id = _insert(clean_db, JobStatus.running, 7 * H, site="NO_SUCH_SITE")
    replies = []

    def heartbeat():
        with clean_db.begin() as conn:
            replies.append(
                dispatcher.update_job(conn, {"jobId": str(panda_id), "state": "running"}, PILOT, NOW)
            )

    pilot = threading.Thread(target=heartbeat)
    judge = watcher._judge_batch

    def judge_then_race(conn, batch, *args):
        judge(conn, batch, *args)
        if batch:  # the job is failed but not committed yet: let the pilot's update run into the lock
            pilot.start()
            _wait_for_a_lock_waiter(clean_db)

    monkeypatch.setattr(watcher, "_judge_batch", judge_then_race)
    assert watcher.run_once(clean_db, S, NOW).lost_failed == 1
    pilot.join(timeout=30)
    assert replies and replies[0]["command"] == "tobekilled"
    with clean_db.connect() as conn:
        assert _job(conn, panda_id).jobStatus == "failed"


def test_a_late_pilot_recovers_a_held_job_through_the_adder(clean_db):
    """After lost heartbeat → holding, the pilot's final report is kept for the Adder and the
    watcher no longer fails the job."""
    panda_id = _insert(clean_db, JobStatus.running, 7 * H, site="CLOUDA_T1")
    assert watcher.run_once(clean_db, S, NOW).to_holding == 1
    with clean_db.begin() as conn:
        reply = dispatcher.update_job(
            conn, {"jobId": str(panda_id), "state": "finished", "xml": "{}"}, PILOT, NOW
        )
    assert reply["command"] == "NULL"
    assert watcher.run_once(clean_db, S, NOW + 100 * H) == watcher.Summary()
    with clean_db.connect() as conn:
        assert _job(conn, panda_id).jobStatus == "holding"
        assert reports.exists(conn, panda_id)


def test_panda_daemon_watcher_once(clean_db, db_url):
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with clean_db.begin() as conn:
        stale = insert_job(conn, JobStatus.sent, now=now - dt.timedelta(minutes=10))
    env = {**os.environ, "PANDA_DATABASE_URL": db_url, "PANDA_WATCHER_SENT_TIMEOUT": "300"}
    daemon = Path(sys.executable).parent / "panda-daemon"
    proc = subprocess.run(
        [str(daemon), "watcher", "--once"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert f"PandaID={stale}" in proc.stderr and "sent -> failed" in proc.stderr
    with clean_db.connect() as conn:
        job = _job(conn, stale)
        assert (job.jobStatus, job.jobDispatcherErrorCode) == ("failed", 102)
        assert job.jobDispatcherErrorDiag.endswith("within 5 min")
