"""Pilot statistics (panda_server/taskbuffer/sitedata.py) against real PostgreSQL, and through the
live server: getJob/updateJob counts → minute bins → the sitedata windows the broker reads."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
import sqlalchemy as sa

from panda_server.brokerage.model import PilotStats
from panda_server.daemons.registry import DAEMONS
from panda_server.db import tables as t
from panda_server.settings import Settings
from panda_server.taskbuffer import sitedata
from tests.support.jobs import simple_job
from tests.support.server import running_server
from tests.wire.helpers import activated, legacy, reply

NOW = dt.datetime(2026, 11, 24, 12, 30, 20)
BIN = NOW.replace(second=0)


@pytest.fixture
def db(engine):
    with engine.begin() as conn:
        conn.execute(sa.delete(t.sitedata_bins))
        conn.execute(sa.delete(t.sitedata))
    return engine


def bins(engine) -> dict[tuple[str, str, dt.datetime], tuple[int, int]]:
    b = t.sitedata_bins
    with engine.connect() as conn:
        return {(r.site, r.flag, r.bin): (r.getJob, r.updateJob) for r in conn.execute(sa.select(b))}


def windows(engine) -> dict[tuple[str, str, int], tuple[int, int]]:
    s = t.sitedata
    with engine.connect() as conn:
        return {(r.site, r.flag, r.hours): (r.getJob, r.updateJob) for r in conn.execute(sa.select(s))}


@pytest.mark.parametrize(
    ("label", "flag"),
    [("managed", "production"), (None, "production"), ("", "production"), ("NULL", "production"),
     ("unified", "production"), ("user", "analysis"), ("panda", "analysis"), ("test", "test"),
     ("ptest", "test"), ("rc_test", "test")],
)  # fmt: skip
def test_flag_of_label(label, flag):
    assert sitedata.flag_of(label) == flag


def test_counts_are_flushed_into_minute_bins_and_added(db):
    counter = sitedata.PilotCounter()
    for _ in range(3):
        counter.count("CLOUDA_T1", "getJob", "production", NOW)
    counter.count("CLOUDA_T1", "updateJob", "production", NOW + dt.timedelta(seconds=30))
    counter.count("CLOUDA_T1", "updateJob", "production", NOW + dt.timedelta(seconds=50))  # next minute
    counter.count("ANALY_CLOUDA_T1", "getJob", "analysis", NOW)
    assert counter.flush(db, NOW) == 3
    assert counter.pending() == {}
    one_minute_later = BIN + dt.timedelta(minutes=1)
    assert bins(db) == {("CLOUDA_T1", "production", BIN): (3, 1),
                        ("CLOUDA_T1", "production", one_minute_later): (0, 1),
                        ("ANALY_CLOUDA_T1", "analysis", BIN): (1, 0)}  # fmt: skip
    counter.count("CLOUDA_T1", "getJob", "production", NOW)
    other = sitedata.PilotCounter()  # another server process, same minute: added, not overwritten
    other.count("CLOUDA_T1", "getJob", "production", NOW)
    assert counter.flush(db, NOW) == other.flush(db, NOW) == 1
    assert bins(db)[("CLOUDA_T1", "production", BIN)] == (5, 1)
    assert counter.flush(db, NOW) == 0  # nothing pending: no transaction at all


def test_refresh_sums_the_1h_and_3h_windows_and_prunes_old_bins(db):
    with db.begin() as conn:
        sitedata.add_bins(conn, {
            ("CLOUDA_T1", "production", BIN - dt.timedelta(minutes=10)): (4, 2),
            ("CLOUDA_T1", "production", BIN - dt.timedelta(minutes=50)): (1, 1),
            ("CLOUDA_T1", "production", BIN - dt.timedelta(hours=2)): (10, 20),  # 3 h window only
            ("CLOUDA_T1", "production", BIN - dt.timedelta(hours=4)): (100, 100),  # pruned
            ("CLOUDB_T1", "production", BIN - dt.timedelta(hours=2, minutes=30)): (7, 0),
            ("ANALY_CLOUDA_T1", "analysis", BIN): (3, 3),
        })  # fmt: skip
        conn.execute(
            sa.insert(t.sitedata).values(site="GONE", flag="production", hours=3, getJob=9, updateJob=9)
        )
        summary = sitedata.refresh(conn, NOW)
    assert summary == {"rows": 5, "pruned_bins": 1}
    assert windows(db) == {
        ("CLOUDA_T1", "production", 1): (5, 3),
        ("CLOUDA_T1", "production", 3): (15, 23),
        ("CLOUDB_T1", "production", 3): (7, 0),
        ("ANALY_CLOUDA_T1", "analysis", 1): (3, 3),
        ("ANALY_CLOUDA_T1", "analysis", 3): (3, 3),
    }
    assert BIN - dt.timedelta(hours=4) not in {k[2] for k in bins(db)}
    with db.connect() as conn:
        assert {r.lastmod for r in conn.execute(sa.select(t.sitedata))} == {NOW}
        assert sitedata.pilot_stats(conn) == {"CLOUDA_T1": PilotStats(15, 23), "CLOUDB_T1": PilotStats(7, 0)}
        assert sitedata.pilot_stats(conn, hours=1) == {"CLOUDA_T1": PilotStats(5, 3)}
        assert sitedata.pilot_stats(conn, flag="analysis") == {"ANALY_CLOUDA_T1": PilotStats(3, 3)}
        # rows the daemon has not refreshed for 3 h are stale: the broker then runs without pilot data
        assert sitedata.pilot_stats(conn, now=NOW + dt.timedelta(hours=2)) != {}
        assert sitedata.pilot_stats(conn, now=NOW + dt.timedelta(hours=4)) == {}


def test_the_daemon_cycle_is_registered(db):
    run_once, period = DAEMONS["sitedata"]
    assert period(Settings()) == 60.0
    assert period(Settings(sitedata_interval=5)) == 5
    with db.begin() as conn:
        sitedata.add_bins(conn, {("CLOUDA_T1", "production", BIN): (2, 1)})
    assert run_once(db, Settings(), NOW) == sitedata.Summary(rows=2, pruned_bins=0)
    assert windows(db)[("CLOUDA_T1", "production", 3)] == (2, 1)


def test_a_failed_flush_keeps_the_counts_for_the_next_try(db):
    counter = sitedata.PilotCounter()
    counter.count("CLOUDA_T1", "getJob", "production", NOW)
    unreachable = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:9/none", connect_args={"connect_timeout": 2}
    )
    assert counter.flush(unreachable, NOW) == 0
    counter.count("CLOUDA_T1", "getJob", "production", NOW)
    assert counter.pending() == {("CLOUDA_T1", "production", BIN): (2, 0)}
    assert counter.flush(db, NOW) == 1
    assert bins(db) == {("CLOUDA_T1", "production", BIN): (2, 0)}


def test_pending_counts_are_bounded():
    counter = sitedata.PilotCounter(max_keys=2)
    for name in ("A", "B", "C"):
        counter.count(name, "getJob", "test", NOW)
    counter.count("A", "getJob", "test", NOW)  # known keys still count
    assert counter.pending() == {("A", "test", BIN): (2, 0), ("B", "test", BIN): (1, 0)}
    assert counter.dropped == 1
    counter.count("x" * 1000, "getJob", "test", NOW)  # long names are cut, not kept whole
    assert all(len(site) <= sitedata.SITE_LIMIT for site, _, _ in counter.pending())
    # a restore after a failed flush drops bins older than the longest window
    restored = sitedata.PilotCounter()
    restored.restore({("A", "test", BIN - dt.timedelta(hours=4)): [1, 0], ("B", "test", BIN): [0, 2]}, NOW)
    assert restored.pending() == {("B", "test", BIN): (0, 2)}


def test_a_flush_is_due_once_per_interval():
    counter = sitedata.PilotCounter()
    assert not counter.due(0)  # nothing pending
    counter.count("A", "getJob", "production")
    assert counter.due(0)
    assert not counter.due(3600)
    counter.take()
    counter.count("A", "getJob", "production")
    assert not counter.due(3600)


def test_the_live_server_counts_pilot_requests_into_sitedata(live, engine):
    """getJob (with and without a job) and updateJob at a site reach sitedata once the server has
    flushed (after a response, at most every sitedata_flush_seconds) and the daemon refreshed."""
    probe = f"PROBE_{uuid.uuid4().hex[:8].upper()}"
    [panda_id] = activated(engine, [simple_job(probe)])
    with live.session(live.pki.pilot_proxy) as pilot:  # one keep-alive connection: one server process
        got = [reply(legacy(pilot, live.https_url, "getJob", siteName=probe, node="wn1")) for _ in range(3)]
        assert [str(g["StatusCode"]) for g in got] == ["0", "20", "20"]
        assert got[0]["PandaID"] == str(panda_id)
        updated = reply(legacy(pilot, live.https_url, "updateJob", jobId=panda_id, state="running"))
        assert str(updated["StatusCode"]) == "0"
        time.sleep(Settings().sitedata_flush_seconds + 0.5)
        assert legacy(pilot, live.https_url, "isAlive").text == "alive=yes"  # the flush follows this reply
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        counted = {k: v for k, v in bins(engine).items() if k[0] == probe}
        if sum(g for g, _ in counted.values()) >= 3 and sum(u for _, u in counted.values()) >= 1:
            break
        time.sleep(0.2)
    assert {k[1] for k in counted} == {"production"}
    assert (sum(g for g, _ in counted.values()), sum(u for _, u in counted.values())) == (3, 1)
    run_once, _ = DAEMONS["sitedata"]
    run_once(engine, Settings(), dt.datetime.now(dt.UTC).replace(tzinfo=None))
    assert windows(engine)[(probe, "production", 1)] == (3, 1)
    assert windows(engine)[(probe, "production", 3)] == (3, 1)
    with engine.connect() as conn:
        assert sitedata.pilot_stats(conn)[probe] == PilotStats(getJob=3, updateJob=1)


def test_a_stopping_server_flushes_its_counts(workdir, db_url, pki, engine, schedconfig_loaded):
    """With flushes after responses pushed out to an hour, the counts reach the DB at exit."""
    probe = f"PROBE_{uuid.uuid4().hex[:8].upper()}"
    with running_server(workdir / "server-sitedata-exit", db_url=db_url, pki=pki,
                        extra_env={"PANDA_SITEDATA_FLUSH_SECONDS": "3600"}) as server:  # fmt: skip
        with server.session(pki.pilot_proxy) as pilot:
            for _ in range(2):
                assert (
                    str(reply(legacy(pilot, server.https_url, "getJob", siteName=probe))["StatusCode"])
                    == "20"
                )
        assert not any(k[0] == probe for k in bins(engine))
    counted = {k: v for k, v in bins(engine).items() if k[0] == probe}
    assert [v for v in counted.values()] == [(2, 0)]
