"""What goes wrong around the factory and what it then does: failed submissions, batch systems
that do not answer, broken queue rows, a queue environ aiming at the factory's variables, a
factory superseded, old logs."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from autopilot import services, tracking
from autopilot.factory import UNASKABLE, Factory
from autopilot.submitters.base import BatchState, BatchStatus
from panda_server.db import tables as t
from schedconfig.model import QueueSpec
from tests.support.factory import factory_settings, pilots, utcnow
from tests.support.pilots import add_queue, insert_activated, shell_job


@pytest.fixture
def grid(live, engine):
    yield live
    with engine.begin() as conn:
        conn.execute(sa.delete(t.schedconfig).where(t.schedconfig.c.nickname.like("APFAIL%")))


def test_a_failed_submission_leaves_no_row_and_says_why(grid, engine, db_url, tmp_path):
    add_queue(engine, "APFAIL_SUB", siteid="APFAIL_SUB", nqueue=3, system="local")
    insert_activated(engine, shell_job("APFAIL_SUB", "echo x"))
    settings = factory_settings(grid, db_url, tmp_path, autopilot_wrapper=str(tmp_path / "no-such-wrapper"))
    f = Factory(settings, engine)
    [qr] = f.run_cycle(utcnow(), only=["APFAIL_SUB"]).queues
    assert qr.submitted == [] and "cannot start" in qr.error and "no-such-wrapper" in qr.error
    assert pilots(engine) == {}  # the rows written before submission went with it
    with engine.connect() as conn:
        inst = conn.execute(
            sa.select(t.schedinstance).where(t.schedinstance.c.nickname == "APFAIL_SUB")
        ).one()
    assert inst.nqueue == 0 and "error: cannot start" in inst.errinfo


def test_an_unconfirmed_submission_is_counted_then_lost(grid, engine, db_url, tmp_path):
    """Rows are written before the batch system gets the pilots: a factory that died before it
    learnt the batch ids still counts them (no double submission), and they end as lost."""
    add_queue(engine, "APFAIL_GAP", siteid="APFAIL_GAP", nqueue=2, system="local")
    insert_activated(engine, shell_job("APFAIL_GAP", "echo x"))
    settings = factory_settings(grid, db_url, tmp_path, autopilot_lost_grace=60.0)
    f = Factory(settings, engine)
    batch = f.batch(QueueSpec(nickname="APFAIL_GAP", cloud="CLOUDA"), 2, utcnow())
    with engine.begin() as conn:
        tracking.record(conn, batch, factory=f.name, system="local", submithost="h", user="u", now=utcnow())
    [qr] = f.run_cycle(utcnow(), only=["APFAIL_GAP"]).queues
    assert qr.view.inactive == 2 and qr.submitted == []  # nqueue reached by the unconfirmed two
    f.poll(utcnow() + dt.timedelta(seconds=61))
    rows = pilots(engine)
    assert {r.state for r in rows.values()} == {"lost"} and {r.jobid for r in rows.values()} == {""}


def test_pilots_of_a_batch_system_that_does_not_answer_are_lost_after_an_hour(grid, engine, db_url, tmp_path):
    settings = factory_settings(grid, db_url, tmp_path)
    f = Factory(settings, engine)  # condor: there is no condor_q on this machine
    batch = f.batch(QueueSpec(nickname="APFAIL_CONDOR", cloud="CLOUDA", system="condor"), 2, utcnow())
    with engine.begin() as conn:
        tracking.record(conn, batch, factory=f.name, system="condor", submithost="h", user="u", now=utcnow())
        tracking.confirm(conn, batch, ["12.0", "12.1"])
    assert f.poll(utcnow()) == 0 and {r.state for r in pilots(engine).values()} == {"submitted"}
    assert f.poll(utcnow() + dt.timedelta(seconds=UNASKABLE + 1)) == 2
    rows = pilots(engine).values()
    assert {r.state for r in rows} == {"lost"}
    assert all("condor could not be asked for 60 min: condor_q: command not found" in r.errinfo for r in rows)


def test_a_broken_queue_row_costs_that_queue_only(grid, engine, db_url, tmp_path):
    add_queue(engine, "APFAIL_OK", siteid="APFAIL_OK", nqueue=1, system="local", status="offline")
    add_queue(engine, "APFAIL_BAD", siteid="APFAIL_BAD", nqueue=1, system="local")
    with engine.begin() as conn:  # an operator's classic status the queue model does not know
        conn.execute(
            sa.update(t.schedconfig).where(t.schedconfig.c.nickname == "APFAIL_BAD").values(status="error")
        )
    settings = factory_settings(grid, db_url, tmp_path)
    report = Factory(settings, engine).run_cycle(utcnow(), only=["APFAIL_OK", "APFAIL_BAD"])
    assert [q.nickname for q in report.queues] == ["APFAIL_OK"]


def test_the_queue_environ_cannot_replace_the_factorys_variables(grid, engine, db_url, tmp_path):
    settings = factory_settings(grid, db_url, tmp_path)
    f = Factory(settings, engine)
    env = f.batch(
        QueueSpec(nickname="APFAIL_ENV", cloud="CLOUDA", environ="SITE_X=1"), 1, utcnow()
    ).pilot_environment(0)
    assert env["PANDA_JSID"] == "test-factory" and env["SITE_X"] == "1"
    for name in ("PANDA_JSID", "PILOT_CODE_URL", "X509_USER_PROXY", "GTAG", "APFCID", "FACTORYQUEUE", "PATH"):
        with pytest.raises(ValueError, match=f"may not set {name}"):
            f.batch(QueueSpec(nickname="APFAIL_ENV", cloud="CLOUDA", environ=f"{name}=x"), 1, utcnow())
    with pytest.raises(ValueError, match="APFAIL_ENV: schedconfig environ entry 'BAD-KEY=1'"):
        f.batch(QueueSpec(nickname="APFAIL_ENV", cloud="CLOUDA", environ="BAD-KEY=1"), 1, utcnow())


def test_a_superseded_factory_stops_and_a_crashed_one_is_replaced(clean_db, engine):
    now = utcnow()
    me = services.me("fac-x", url="http://l", config="c", cyclesec=10)
    with engine.begin() as conn:
        services.register(conn, me, now)
        assert services.beat(conn, "fac-x", "cycle 0", now) is None
        conn.execute(sa.update(t.servicelist).values(pid=os.getpid() + 1_000_000))  # another took the name
        assert services.beat(conn, "fac-x", "cycle 1", now) == "superseded"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with engine.begin() as conn:  # the row's process on this host is gone: a restart may take over at once
        conn.execute(sa.update(t.servicelist).values(pid=int(dead.stdout)))
        services.register(conn, me, now)
        assert conn.execute(sa.select(t.servicelist.c.pid)).scalar() == os.getpid()


def test_old_logs_go_but_not_those_of_live_pilots(grid, engine, db_url, tmp_path):
    settings = factory_settings(grid, db_url, tmp_path, autopilot_log_days=7)
    f = Factory(settings, engine)
    now = utcnow()
    for days in (3, 10, 20):
        f.log_dir(now - dt.timedelta(days=days), "Q").mkdir(parents=True)
    assert f.clean_logs(now) == 2
    assert sorted(d.name for d in f.logs.iterdir()) == [f"{now - dt.timedelta(days=3):%Y-%m-%d}"]
    old = now - dt.timedelta(days=12)
    f.log_dir(old, "Q").mkdir(parents=True)
    batch = f.batch(QueueSpec(nickname="Q", cloud="CLOUDA"), 1, old)
    with engine.begin() as conn:  # a pilot from 12 days ago still runs: its day stays
        tracking.record(conn, batch, factory=f.name, system="local", submithost="h", user="u", now=old)
    assert f.clean_logs(now) == 0 and f.log_dir(old, "Q").is_dir()


def test_settings_out_of_range_are_refused(grid, engine, db_url, tmp_path):
    settings = factory_settings(grid, db_url, tmp_path)
    env = {**os.environ, **{k: str(v) for k, v in settings.describe().items()}}
    for key, value in (("PANDA_AUTOPILOT_INTERVAL", "0"), ("PANDA_AUTOPILOT_MAX_PER_CYCLE", "-1"),
                       ("PANDA_AUTOPILOT_LOG_DAYS", "0")):  # fmt: skip
        out = subprocess.run([sys.executable, "-m", "autopilot.cli", "--once"], env={**env, key: value},
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode == 2 and key in out.stderr
    assert pilots(engine) == {}


def test_schedinstance_counts_the_days_ended_pilots(grid, engine, db_url, tmp_path):
    add_queue(engine, "APFAIL_CNT", siteid="APFAIL_CNT", nqueue=2, system="local", status="offline")
    f = Factory(factory_settings(grid, db_url, tmp_path), engine)
    now = utcnow()
    batch = f.batch(QueueSpec(nickname="APFAIL_CNT", cloud="CLOUDA"), 5, now - dt.timedelta(hours=2))
    with engine.begin() as conn:
        tracking.record(conn, batch, factory=f.name, system="local", submithost="h", user="u", now=now)
        for i, state in enumerate(("done", "done", "failed", "lost", "running")):
            row = conn.execute(sa.select(t.pilotqueue).where(t.pilotqueue.c.tpid == batch.tpid(i))).one()
            tracking.change(conn, row, tracking.Change(state), now)
        conn.execute(sa.update(t.pilotqueue).where(t.pilotqueue.c.jobid == "").values(jobid="1"))
    running = BatchStatus(BatchState.running)  # what the batch system says of the live one
    f.submitters["local"] = type("Stub", (), {"status": lambda self, ids: dict.fromkeys(ids, running)})()
    f.run_cycle(now, only=["APFAIL_CNT"])
    with engine.connect() as conn:
        inst = conn.execute(
            sa.select(t.schedinstance).where(t.schedinstance.c.nickname == "APFAIL_CNT")
        ).one()
    assert (inst.ndone, inst.nfailed, inst.naborted, inst.nrunning, inst.nqueue) == (2, 1, 1, 1, 0)


def test_no_pilot_goes_out_with_an_unusable_proxy_and_the_queue_says_why(grid, engine, db_url, tmp_path):
    add_queue(engine, "APFAIL_PROXY", siteid="APFAIL_PROXY", nqueue=2, system="local")
    insert_activated(engine, shell_job("APFAIL_PROXY", "echo x"))
    settings = factory_settings(grid, db_url, tmp_path, autopilot_pilot_proxy=str(tmp_path / "gone.proxy"))
    report = Factory(settings, engine).run_cycle(utcnow(), only=["APFAIL_PROXY"])
    [qr] = report.queues
    assert qr.decision.n == 2 and qr.submitted == [] and "gone.proxy unreadable" in report.problem
    assert pilots(engine) == {}
    with engine.connect() as conn:
        inst = conn.execute(
            sa.select(t.schedinstance).where(t.schedinstance.c.nickname == "APFAIL_PROXY")
        ).one()
    assert "not submitted: pilot proxy" in inst.errinfo and inst.nqueue == 0
