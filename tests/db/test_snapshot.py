"""snapshot.load: the broker's view built from the default schedconfig, the job tables and sitedata."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa

from panda_server.brokerage import broker, snapshot
from panda_server.brokerage.model import BrokerJob, PilotStats, SiteStats
from panda_server.db import tables as t
from panda_server.protocol.states import JobStatus
from panda_server.taskbuffer import sitedata
from schedconfig.model import QueueSpec
from tests.support.dbjobs import insert_job

NOW = dt.datetime(2026, 11, 24, 12, 0, 0)


def test_sites_and_clouds_come_from_schedconfig(clean_db, schedconfig_loaded):
    with clean_db.connect() as conn:
        snap = snapshot.load(conn, NOW)
    assert set(snap.sites) == {q.siteid for q in schedconfig_loaded}
    for q in schedconfig_loaded:
        s = snap.sites[q.siteid]
        assert (s.cloud, s.tier, s.type, s.ddm, s.memory, s.maxinputsize, s.space) == (
            q.cloud, q.tier, q.type, q.ddm, q.memory, q.maxinputsize, q.space)  # fmt: skip
    assert snap.sites["ANALY_CLOUDA_T1"].type == "analysis"
    assert snap.clouds["CLOUDA"].tier1 == "CLOUDA_T1"
    assert snap.clouds["CLOUDA"].weight == 2.0
    assert snap.replicas == {}


def test_operator_status_and_cloud_weight_zero(clean_db):
    with clean_db.connect() as conn, conn.begin() as tx:
        conn.execute(
            sa.update(t.schedconfig).where(t.schedconfig.c.nickname == "CLOUDB_T1").values(status="brokeroff")
        )
        conn.execute(sa.update(t.cloudconfig).where(t.cloudconfig.c.name == "CLOUDB").values(weight=0))
        snap = snapshot.load(conn, NOW)
        tx.rollback()
    assert snap.sites["CLOUDB_T1"].status == "brokeroff"
    assert snap.clouds["CLOUDB"].weight == 2.0


def test_job_counts_per_site(clean_db):
    with clean_db.begin() as conn:
        for _ in range(2):
            insert_job(conn, JobStatus.activated, site="CLOUDA_T1")
        insert_job(conn, JobStatus.assigned, site="CLOUDA_T2_1")
        insert_job(conn, JobStatus.running, site="ANALY_CLOUDA_T1", label="user")
        insert_job(conn, JobStatus.running, site="CLOUDA_T1", label="test")
        insert_job(conn, JobStatus.defined, site="CLOUDA_T1")  # not a counted state
        insert_job(conn, JobStatus.activated, site="CLOUDA_T1", label="rc_test")  # not a counted label
        insert_job(conn, JobStatus.finished, site="CLOUDA_T1")  # archived
        insert_job(conn, JobStatus.sent, site="CLOUDB_T1")  # not a counted state
    with clean_db.connect() as conn:
        snap = snapshot.load(conn, NOW)
    assert snap.stats == {
        "CLOUDA_T1": SiteStats(activated=2, running=1),
        "CLOUDA_T2_1": SiteStats(assigned=1),
        "ANALY_CLOUDA_T1": SiteStats(running=1),
    }


def test_pilots_from_the_3h_window_whatever_their_flag(clean_db):
    with clean_db.begin() as conn:
        conn.execute(sa.delete(t.sitedata_bins))
        conn.execute(sa.delete(t.sitedata))
    with clean_db.connect() as conn:
        assert snapshot.load(conn, NOW).pilots == {}  # no rows: the broker's no-pilot rule is off
    with clean_db.begin() as conn:
        sitedata.add_bins(conn, {("CLOUDA_T1", "production", NOW - dt.timedelta(hours=2)): (4, 6),
                                 ("ANALY_CLOUDA_T1", "analysis", NOW): (1, 1)})  # fmt: skip
        sitedata.refresh(conn, NOW)
    with clean_db.connect() as conn:
        snap = snapshot.load(conn, NOW + dt.timedelta(minutes=1))
    # an analysis queue's pilots ask as analysis: they show the site is alive as well
    assert snap.pilots == {"CLOUDA_T1": PilotStats(getJob=4, updateJob=6),
                           "ANALY_CLOUDA_T1": PilotStats(getJob=1, updateJob=1)}  # fmt: skip


def test_the_snapshot_brokers_a_job(clean_db):
    with clean_db.begin() as conn:
        conn.execute(sa.delete(t.sitedata))
        for _ in range(3):
            insert_job(conn, JobStatus.activated, site="CLOUDA_T1")
    with clean_db.connect() as conn:
        snap = snapshot.load(conn, NOW)
    snap = dataclasses.replace(
        snap, replicas={"g1": frozenset({"CLOUDA_T1_DATADISK"})}
    )  # as the setupper adds them
    [a] = broker.schedule(
        [BrokerJob(PandaID=1, prodSourceLabel="managed", cloud="CLOUDA", inputs=("g1",))], snap
    )
    assert a.site != "CLOUDA_T1" and a.site in snap.sites and a.cloud == "CLOUDA"  # the T1 has 3 queued jobs
    assert "CLOUDA_T1 3.00" in a.reason  # dropped: above 2 × the minimum, its data does not count


def test_first_queue_of_a_site_wins_unless_it_is_offline():
    def q(nickname, status, memory):
        return QueueSpec(nickname=nickname, cloud="CLOUDA", siteid="SITE", status=status, memory=memory)

    assert (
        snapshot.sites_from_queues([q("SITE-a", "online", 1), q("SITE-b", "online", 2)])["SITE"].memory == 1
    )
    assert (
        snapshot.sites_from_queues([q("SITE-a", "offline", 1), q("SITE-b", "online", 2)])["SITE"].memory == 2
    )
    assert (
        snapshot.sites_from_queues([q("SITE-a", "online", 1), q("SITE-b", "offline", 2)])["SITE"].memory == 1
    )
    assert (
        snapshot.sites_from_queues([q("SITE-a", "offline", 1), q("SITE-b", "offline", 2)])["SITE"].memory == 1
    )
