"""The dispatcher's claim: atomic activated → sent, ordering and filters, no double dispatch."""

from __future__ import annotations

import datetime as dt
import threading

import sqlalchemy as sa

from panda_server.db import tables as t
from panda_server.protocol.states import JobStatus
from panda_server.taskbuffer import jobs
from tests.support.dbjobs import insert_job

NOW = dt.datetime(2026, 11, 24, 12, 0, 0)
LABELS = ("managed", "test")


def claim(conn, **kw):
    args = dict(site="CLOUDA_T1", labels=LABELS, mem=0, disk=0, prod_user_id=None, node="wn", now=NOW)
    args.update(kw)
    return jobs.claim_for_pilot(conn, **args)


def test_eight_threads_racing_never_share_a_job(clean_db):
    engine = clean_db
    with engine.begin() as conn:
        ids = {insert_job(conn, JobStatus.activated) for _ in range(200)}
    barrier = threading.Barrier(8, timeout=30)
    taken: list[list[int]] = [[] for _ in range(8)]

    def pilot(n: int) -> None:
        barrier.wait()
        for _ in range(400):  # bounded: more attempts than jobs
            with engine.begin() as conn:
                row = claim(conn, node=f"node{n}")
            if row is None:
                return
            taken[n].append(row["PandaID"])

    threads = [threading.Thread(target=pilot, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    all_taken = [i for lst in taken for i in lst]
    assert len(all_taken) == len(set(all_taken)), "a job was dispatched twice"
    assert set(all_taken) == ids
    assert sum(1 for lst in taken if lst) > 1, "only one pilot got work: no real race happened"
    with engine.connect() as conn:
        a = t.jobsactive4
        hosts = dict(
            conn.execute(sa.select(a.c.PandaID, a.c.modificationHost).where(a.c.jobStatus == "sent")).all()
        )
    assert len(hosts) == 200
    for n, lst in enumerate(taken):
        assert all(hosts[i] == f"node{n}" for i in lst)


def test_priority_then_lowest_pandaid(clean_db):
    with clean_db.begin() as conn:
        low = insert_job(conn, JobStatus.activated, priority=10)
        high_a = insert_job(conn, JobStatus.activated, priority=500)
        high_b = insert_job(conn, JobStatus.activated, priority=500)
        order = [claim(conn)["PandaID"] for _ in range(3)]
        assert claim(conn) is None
    assert order == [high_a, high_b, low]


def test_filters_memory_disk_label_site_command(clean_db):
    with clean_db.begin() as conn:
        big = insert_job(conn, JobStatus.activated, minRamCount=4000)
        nolimit = insert_job(conn, JobStatus.activated, minRamCount=0, maxDiskCount=0)
        disky = insert_job(conn, JobStatus.activated, maxDiskCount=50000)
        user = insert_job(conn, JobStatus.activated, label="user")
        other_site = insert_job(conn, JobStatus.activated, site="CLOUDB_T1")
        flagged = insert_job(conn, JobStatus.activated)
        conn.execute(sa.update(t.jobsactive4).where(t.jobsactive4.c.PandaID == flagged)
                     .values(commandToPilot="tobekilled"))  # fmt: skip
        got = set()
        while (row := claim(conn, mem=2000, disk=20000)) is not None and len(got) < 10:
            got.add(row["PandaID"])
        assert got == {nolimit}
        assert claim(conn, mem=8000, disk=100000)["PandaID"] in {big, disky}
        assert claim(conn, labels=("user", "panda"))["PandaID"] == user
        assert claim(conn, site="CLOUDB_T1")["PandaID"] == other_site


def test_restricted_to_own_jobs(clean_db):
    with clean_db.begin() as conn:
        insert_job(conn, JobStatus.activated, prodUserID="/DC=org/CN=Other")
        mine = insert_job(conn, JobStatus.activated, prodUserID="/DC=org/CN=Me")
        assert claim(conn, prod_user_id="/DC=org/CN=Me")["PandaID"] == mine
        assert claim(conn, prod_user_id="/DC=org/CN=Me") is None
