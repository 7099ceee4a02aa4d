"""Transfers that go wrong, with the real local DDM agent: a bad source replica (bytes changed on
disk, size kept) fails the agent's adler32 check; the agent retries after its back-off
(settings.ddm_backoff = 10 s here, doubled per attempt) and gives up after ddm_max_attempts (3).
The data service fails the jobs of a subscription DDM gave up on (ddmErrorCode 201), and the
finisher fails jobs transferring longer than their cloud allows (taskBufferErrorCode 101)."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from panda_server.db import tables as t
from tests.dataservice.conftest import (
    corrupt,
    files_of,
    inputs_of,
    job_row,
    jobs_by_id,
    seeded_jobs,
    site_rse,
    transferring_jobs,
    transfers_of,
)


def assigned_job(grid, tag: str) -> tuple[int, str, str, str]:
    """One job assigned at a T2: (PandaID, its dispatch dataset, its RSE, the input's T1 file path)."""
    [pid] = seeded_jobs(grid, tag)
    assert grid.setupper().assigned == 1
    row = job_row(grid.engine, pid)
    [f] = inputs_of(grid.engine, pid)
    return pid, row["dispatchDBlock"], site_rse(row), grid.se_file("CLOUDA_T1_DATADISK", "mc", f["lfn"])


def test_a_dispatch_transfer_retried_after_back_off_activates_the_job_when_it_succeeds(grid):
    pid, dis, rse, source = assigned_job(grid, uuid.uuid4().hex[:8])
    good = corrupt(source)
    backoff = grid.settings.ddm_backoff

    assert grid.agent().attempts_failed == 1  # attempt 1: copied, but the adler32 does not match
    grid.tick(backoff - 1)
    assert grid.agent().attempts_failed == 0  # still backing off: nothing tried
    grid.tick(1)
    assert grid.agent().attempts_failed == 1  # attempt 2, after 10 s
    grid.tick(2 * backoff - 1)
    assert grid.agent().attempts_failed == 0
    [tr] = transfers_of(grid.engine, dis)
    assert (tr["state"], tr["attempts"]) == ("waiting", 2) and "checksum" in tr["last_error"]
    assert not grid.se_file(rse, "mc", tr["lfn"]).exists()  # a bad copy is removed

    source.write_bytes(good)  # the T1 replica repaired
    assert grid.activator().activated == 0  # nothing there yet
    grid.tick(1)
    summary = grid.agent()
    assert (summary.copied, summary.done) == (1, 1)
    [tr] = transfers_of(grid.engine, dis)
    assert (tr["state"], tr["attempts"]) == ("done", 3)
    sub = grid.svc.ddm.subscription(dis, rse)
    assert sub.state == "done" and "attempt 2/3" in sub.error  # the last error is kept for operators

    assert grid.activator().activated == 1
    assert job_row(grid.engine, pid)["jobStatus"] == "activated"
    assert grid.se_file(rse, "mc", tr["lfn"]).read_bytes() == good


def test_a_dispatch_transfer_that_keeps_failing_fails_the_job(grid):
    pid, dis, rse, source = assigned_job(grid, uuid.uuid4().hex[:8])
    corrupt(source)
    for delay in (0, 10, 20):  # the back-off before attempts 1, 2 and 3
        grid.tick(delay)
        grid.agent()
    [tr] = transfers_of(grid.engine, dis)
    assert (tr["state"], tr["attempts"]) == ("failed", 3)
    sub = grid.svc.ddm.subscription(dis, rse)
    assert sub.state == "failed" and sub.error.startswith(f"gave up on mc:{tr['lfn']}")

    summary = grid.activator()
    assert (summary.failed, summary.activated) == (1, 0)
    row = job_row(grid.engine, pid)
    assert row["jobStatus"] == "failed" and row["ddmErrorCode"] == 201
    assert row["ddmErrorDiag"].startswith(f"dispatch subscription {dis} failed: gave up on mc:{tr['lfn']}")
    assert "after 3 attempt(s): cp checksum: destination adler32" in row["ddmErrorDiag"]
    with grid.engine.connect() as conn:
        d = t.datasets
        assert conn.execute(sa.select(d.c.status).where(d.c.name == dis)).scalar_one() == "failed"
    grid.tick(60)
    assert grid.activator().failed == 0  # settled once


def test_an_output_transfer_that_keeps_failing_fails_the_job(grid):
    [pid] = transferring_jobs(grid, uuid.uuid4().hex[:8])
    row = job_row(grid.engine, pid)
    [hits] = [f for f in files_of(grid.engine, pid) if f["type"] == "output"]
    assert hits["status"] == "transferring" and hits["destinationDBlock"].startswith(hits["dataset"] + "_sub")
    corrupt(grid.se_file(site_rse(row), "mc", hits["lfn"]))  # the T2 copy went bad after registration

    for delay in (0, 10, 20):
        grid.tick(delay)
        grid.agent()
    [tr] = transfers_of(grid.engine, hits["destinationDBlock"])
    assert (tr["state"], tr["attempts"], tr["rse"]) == ("failed", 3, "CLOUDA_T1_DATADISK")

    assert grid.finisher().failed == 1
    row = job_row(grid.engine, pid)
    assert row["jobStatus"] == "failed" and row["ddmErrorCode"] == 201
    assert row["ddmErrorDiag"].startswith(
        f"output subscription {hits['destinationDBlock']} failed: gave up on"
    )
    assert f"{site_rse(row)} → CLOUDA_T1_DATADISK after 3 attempt(s): cp checksum" in row["ddmErrorDiag"]
    assert not grid.se_file("CLOUDA_T1_DATADISK", "mc", hits["lfn"]).exists()


def test_a_job_transferring_longer_than_its_cloud_allows_times_out(grid):
    ids = transferring_jobs(grid, uuid.uuid4().hex[:8], n=2)  # the agent is never run: nothing moves
    urgent, normal = ids
    with grid.engine.begin() as conn:
        a = t.jobsactive4
        conn.execute(sa.update(a).where(a.c.PandaID == urgent).values(currentPriority=1000))
    start = grid.now

    grid.now = start + dt.timedelta(days=1, hours=-1)
    assert grid.finisher().timed_out == 0
    assert {r["jobStatus"] for r in jobs_by_id(grid.engine, ids).values()} == {"transferring"}

    grid.now = start + dt.timedelta(days=1, hours=1)  # past CLOUDA's transtimehi (1 day): priority >= 900
    assert grid.finisher().timed_out == 1
    rows = jobs_by_id(grid.engine, ids)
    assert rows[urgent]["jobStatus"] == "failed" and rows[normal]["jobStatus"] == "transferring"

    grid.now = start + dt.timedelta(days=2, hours=-1)
    assert grid.finisher().timed_out == 0
    grid.now = start + dt.timedelta(days=2, hours=1)  # past transtimelo (2 days)
    assert grid.finisher().timed_out == 1
    rows = jobs_by_id(grid.engine, ids)
    for pid in ids:
        row = rows[pid]
        [hits] = [f for f in files_of(grid.engine, pid) if f["type"] == "output"]
        assert row["jobStatus"] == "failed" and row["taskBufferErrorCode"] == 101
        assert row["taskBufferErrorDiag"].startswith(f"transfer timeout for {hits['lfn']}")
        assert {f["status"] for f in files_of(grid.engine, pid) if f["type"] != "input"} == {"failed"}
