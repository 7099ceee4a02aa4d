"""The factory with the `local` submitter against the live test server: real wrapper, real pilots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests
import sqlalchemy as sa

from autopilot import logserver
from autopilot.factory import Factory
from panda_server.db import tables as t
from tests.support.factory import factory_settings, follow, pilots, sleeper, utcnow
from tests.support.pilots import add_queue, insert_activated, job_row, run_adder, shell_job, wait_for

QUEUE = "APLOCAL_T2"


@pytest.fixture
def grid(live, engine, db_url, tmp_path):
    add_queue(engine, QUEUE, siteid=QUEUE, nqueue=2, system="local")
    yield live
    with engine.begin() as conn:
        conn.execute(sa.delete(t.schedconfig).where(t.schedconfig.c.nickname.like("APLOCAL%")))


def finished(engine, ids) -> bool:
    run_adder(engine)  # the pilots leave their jobs holding; the adder finishes them
    return all(job_row(engine, i)["jobStatus"] in ("finished", "failed") for i in ids)


def test_activated_jobs_get_pilots_that_run_them_to_finished(grid, engine, db_url, tmp_path):
    settings = factory_settings(grid, db_url, tmp_path)
    ids = [insert_activated(engine, shell_job(QUEUE, f"echo job {i}")) for i in range(3)]
    f = Factory(settings, engine)
    report = f.run_cycle(utcnow(), only=[QUEUE])
    [qr] = [q for q in report.queues if q.nickname == QUEUE]
    assert (qr.view.activated, qr.view.inactive, len(qr.submitted)) == (3, 0, 2)  # nqueue 2
    assert "3 activated, 0 queued < nqueue 2" in qr.decision.reason
    rows = pilots(engine)
    assert {r.state for r in rows.values()} == {"submitted"} and len(rows) == 2
    assert sorted(r.jobid for r in rows.values()) == sorted(qr.submitted)  # the PIDs

    server = logserver.serve(f.logs, "127.0.0.1", settings.autopilot_log_port)
    try:
        seen = follow(f, engine, lambda: finished(engine, ids) and all(
            r.state == "done" for r in pilots(engine).values()), seconds=150)  # fmt: skip
        jobs = [job_row(engine, i) for i in ids]
        assert [j["jobStatus"] for j in jobs] == ["finished"] * 3
        rows = pilots(engine)
        for tpid, states in seen.items():
            assert states[0] == "submitted" and states[-1] == "done", (tpid, states)
        assert any("running" in states for states in seen.values())  # seen while it ran
        urls = {r.url: r for r in rows.values()}
        for j in jobs:  # the server links every job to the pilot that ran it
            assert j["schedulerID"] == "test-factory"
            url = j["pilotID"].split("|")[0]
            assert url in urls
        assert {r.pandaid for r in rows.values()} <= set(ids) and any(r.pandaid for r in rows.values())
        for r in rows.values():
            assert r.errcode in (0, 82) and r.tstart and r.tend and r.tend >= r.tstart
            log = requests.get(r.url, timeout=10)  # the GTAG link
            assert log.status_code == 200 and log.headers["Content-Type"].startswith("text/plain")
            assert f"pilot {r.tpid} of factory test-factory" in log.text
            assert f"exit code {r.errcode}" in log.text
        with engine.connect() as conn:
            inst = conn.execute(sa.select(t.schedinstance).where(t.schedinstance.c.nickname == QUEUE)).one()
        assert (inst.name, inst.nqueue, inst.njobs) == ("test-factory", 2, 3)
    finally:
        server.shutdown()


def test_no_pilots_to_an_offline_queue_nor_beyond_the_limit(grid, engine, db_url, tmp_path):
    add_queue(engine, "APLOCAL_OFF", siteid="APLOCAL_OFF", status="offline", system="local")
    add_queue(engine, "APLOCAL_LIM", siteid="APLOCAL_LIM", nqueue=5, pilotlimit=3, system="local")
    for site in ("APLOCAL_OFF", "APLOCAL_LIM"):
        for i in range(10):
            insert_activated(engine, shell_job(site, f"echo {i}"))
    settings = factory_settings(grid, db_url, tmp_path, autopilot_wrapper=str(sleeper(tmp_path)))
    f = Factory(settings, engine)
    only = ("APLOCAL_OFF", "APLOCAL_LIM")
    first = {q.nickname: q for q in f.run_cycle(utcnow(), only=only).queues}
    assert first["APLOCAL_OFF"].submitted == [] and first["APLOCAL_OFF"].decision.reason == "queue offline"
    assert len(first["APLOCAL_LIM"].submitted) == 3  # nqueue 5, capped by pilotlimit 3
    assert "capped to 3 by pilotlimit 3" in first["APLOCAL_LIM"].decision.reason
    second = {q.nickname: q for q in f.run_cycle(utcnow(), only=only).queues}
    assert (
        second["APLOCAL_LIM"].submitted == []
        and "pilotlimit 3 reached" in second["APLOCAL_LIM"].decision.reason
    )
    rows = pilots(engine)
    assert sorted(r.nickname for r in rows.values()) == ["APLOCAL_LIM"] * 3
    with engine.connect() as conn:
        off = conn.execute(
            sa.select(t.schedinstance).where(t.schedinstance.c.nickname == "APLOCAL_OFF")
        ).one()
    assert (off.nqueue, off.errinfo) == (0, "queue offline")

    # the operator cancels them (panda-autopilot cancel): the batch system ends them, the rows say failed
    env = {**os.environ, **{k: str(v) for k, v in settings.describe().items()}}
    out = subprocess.run([sys.executable, "-m", "autopilot.cli", "cancel", *rows], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "cancelled 3 pilots in local" in out.stdout
    follow(f, engine, lambda: all(r.state == "failed" for r in pilots(engine).values()), seconds=60)
    assert {r.errinfo for r in pilots(engine).values()} == {
        "local: killed by signal 15"
    }  # the stand-in's TERM


def test_a_test_queue_gets_one_pilot_and_a_dry_run_changes_nothing(grid, engine, db_url, tmp_path):
    add_queue(engine, "APLOCAL_TEST", siteid="APLOCAL_TEST", status="test", nqueue=1, system="local")
    insert_activated(engine, shell_job("APLOCAL_TEST", "echo t"))
    settings = factory_settings(grid, db_url, tmp_path, autopilot_wrapper=str(sleeper(tmp_path)))
    env = {**os.environ, **{k: str(v) for k, v in settings.describe().items()}}
    dry = subprocess.run([sys.executable, "-m", "autopilot.cli", "--once", "--dry-run", "--queue", "APLOCAL_TEST"],
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "APLOCAL_TEST" in dry.stdout and "test: one test pilot" in dry.stdout
    assert pilots(engine) == {}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.schedinstance)).scalar() == 0
    f = Factory(settings, engine)
    # one test pilot per cycle, none while one is queued or once there are more than nqueue (1)
    [qr] = f.run_cycle(utcnow(), only=["APLOCAL_TEST"]).queues
    assert len(qr.submitted) == 1
    [qr] = f.run_cycle(utcnow(), only=["APLOCAL_TEST"]).queues  # the first runs: total 1 = nqueue
    assert len(qr.submitted) == 1 and qr.view.active == 1
    [qr] = f.run_cycle(utcnow(), only=["APLOCAL_TEST"]).queues
    assert qr.submitted == [] and qr.view.total == 2 and qr.decision.reason.startswith("test: ")
    f.submitter("local").cancel([r.jobid for r in pilots(engine).values()])
    follow(f, engine, lambda: all(r.state == "failed" for r in pilots(engine).values()), seconds=60)


def test_a_pilot_killed_outright_is_failed_and_one_that_vanished_is_lost(grid, engine, db_url, tmp_path):
    add_queue(engine, "APLOCAL_KILL", siteid="APLOCAL_KILL", nqueue=2, system="local")
    insert_activated(engine, shell_job("APLOCAL_KILL", "echo k"))
    settings = factory_settings(grid, db_url, tmp_path, autopilot_wrapper=str(sleeper(tmp_path)),
                                autopilot_lost_grace=0.0)  # fmt: skip
    f = Factory(settings, engine)
    [qr] = f.run_cycle(utcnow(), only=["APLOCAL_KILL"]).queues
    first, second = qr.submitted
    follow(f, engine, lambda: {r.state for r in pilots(engine).values()} == {"running"}, seconds=30)

    os.killpg(int(first), signal.SIGKILL)  # the wrapper cannot report; this factory reaps its child
    follow(f, engine, lambda: by_jobid(engine)[first].state == "failed", seconds=30)
    assert by_jobid(engine)[first].errinfo == "local: killed by signal 9"
    assert by_jobid(engine)[second].state == "running"

    later = Factory(settings, engine)  # a restarted factory: the second pilot is not its child
    os.killpg(int(second), signal.SIGKILL)
    follow(later, engine, lambda: by_jobid(engine)[second].state == "lost", seconds=30)
    assert by_jobid(engine)[second].errinfo == "not known to local and no exit code reported"
    f.submitter("local").status([second])  # reap the zombie


def by_jobid(engine) -> dict:
    return {r.jobid: r for r in pilots(engine).values()}


def test_pilots_fetch_their_code_from_the_factory(grid, engine, db_url, tmp_path):
    add_queue(engine, QUEUE, siteid=QUEUE, nqueue=1, system="local")
    [panda_id] = [insert_activated(engine, shell_job(QUEUE, "echo fetched"))]
    settings = factory_settings(grid, db_url, tmp_path, autopilot_fetch_pilot=True)
    f = Factory(settings, engine)
    server = logserver.serve(f.logs, "127.0.0.1", settings.autopilot_log_port)
    try:
        [qr] = f.run_cycle(utcnow(), only=[QUEUE]).queues
        assert len(qr.submitted) == 1
        follow(f, engine, lambda: finished(engine, [panda_id]) and all(
            r.state == "done" for r in pilots(engine).values()), seconds=120)  # fmt: skip
    finally:
        server.shutdown()
    assert job_row(engine, panda_id)["jobStatus"] == "finished"
    [row] = pilots(engine).values()
    log = (f.log_dir(row.tsubmit, QUEUE) / f"{row.tpid}.out").read_text()
    assert f"pilot code fetched from {settings.autopilot_log_base}/pilotcode.tar.gz" in log


def test_heartbeat_remote_stop_and_one_factory_per_name(grid, engine, db_url, tmp_path):
    add_queue(engine, "APLOCAL_IDLE", siteid="APLOCAL_IDLE", nqueue=0, system="local")  # never gets pilots
    settings = factory_settings(grid, db_url, tmp_path)
    env = {**os.environ, **{k: str(v) for k, v in settings.describe().items()}}
    cli = [sys.executable, "-m", "autopilot.cli"]
    proc = subprocess.Popen([*cli, "--queue", "APLOCAL_IDLE"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        beats = set()

        def beating():
            with engine.connect() as conn:
                row = conn.execute(
                    sa.select(t.servicelist).where(t.servicelist.c.name == "test-factory")
                ).first()
            if row is not None and row.status == "running":
                beats.add(row.tcheck)
            return len(beats) >= 3

        wait_for(beating, 60, "three heartbeats")
        listed = subprocess.run([*cli, "factories"], env=env, capture_output=True, text=True, timeout=60)
        [line] = [x for x in listed.stdout.splitlines() if x.startswith("test-factory")]
        assert " running " in line and str(proc.pid) in line and "cycle " in line
        assert requests.get(f"http://127.0.0.1:{settings.autopilot_log_port}/", timeout=10).status_code == 200

        twin = subprocess.run([*cli, "--once", "--queue", "APLOCAL_IDLE"], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert twin.returncode == 1 and "factory test-factory is already running" in twin.stderr

        told = subprocess.run([*cli, "tell", "test-factory", "stop"], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert told.returncode == 0 and "asked test-factory to stop" in told.stdout
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    with engine.connect() as conn:
        row = conn.execute(sa.select(t.servicelist).where(t.servicelist.c.name == "test-factory")).one()
    assert (row.status, row.message, row.doaction) == ("stopped", "stopped by an operator", None)
    assert pilots(engine) == {}
    nobody = subprocess.run([*cli, "tell", "test-factory", "stop"], env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert nobody.returncode == 1 and "no running factory named test-factory" in nobody.stderr


def test_clear_errors_for_bad_usage_and_an_unreachable_database(grid, engine, db_url, tmp_path):
    settings = factory_settings(grid, db_url, tmp_path)
    env = {**os.environ, **{k: str(v) for k, v in settings.describe().items()}}
    cli = [sys.executable, "-m", "autopilot.cli"]

    def run(*args, **extra):
        return subprocess.run([*cli, *args], env={**env, **extra}, capture_output=True, text=True, timeout=60)

    out = run("--once", "--queue", "NO_SUCH_QUEUE")
    assert out.returncode == 2 and "no such queue in schedconfig: NO_SUCH_QUEUE" in out.stderr
    assert run("--cycles", "-1").returncode == 2
    assert run("cancel").returncode == 2 and "either pilots' tpids or --all" in run("cancel").stderr
    out = run("cancel", "tp_nobody.0")
    assert out.returncode == 1 and "unknown pilots: tp_nobody.0" in out.stderr
    assert run("tell", "test-factory", "reboot").returncode == 2  # only known actions
    down = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/panda"
    out = run("pilots", PANDA_DATABASE_URL=down)
    assert out.returncode == 1 and "cannot use the database" in out.stderr and "s3cret" not in out.stderr
    assert pilots(engine) == {}
