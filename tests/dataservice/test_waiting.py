"""Jobs whose input DDM does not have yet: the setupper parks them `waiting`, the waker brings them
back when the file appears (and the setupper then places them as usual), or fails them after
settings.waiting_timeout with taskBufferErrorCode 104."""

from __future__ import annotations

import uuid

from tests.dataservice.conftest import inputs_of, job_row, load_tier1, payload, production_job
from tests.wire.helpers import store_jobs


def waiting_job(grid, tag: str) -> int:
    """One production job reading mc.<tag>.EVNT.0 from mc.<tag>.evgen, set up once."""
    load_tier1(grid.engine)
    [pid] = store_jobs(grid.engine, [production_job(tag, 0, [f"mc.{tag}.EVNT.0"])])
    assert grid.setupper().waiting == 1
    return pid


def test_a_job_waits_for_its_dataset_and_is_placed_once_the_file_appears(grid):
    tag = uuid.uuid4().hex[:8]
    pid = waiting_job(grid, tag)  # mc.<tag>.evgen does not exist in DDM
    row = job_row(grid.engine, pid)
    assert row["jobStatus"] == "waiting" and row["computingSite"] in (None, "", "NULL")
    [f] = inputs_of(grid.engine, pid)
    assert f["status"] == "missing" and f["GUID"] is None

    grid.tick(600)
    summary = grid.waker()
    assert (summary.still_waiting, summary.woken, summary.timed_out) == (1, 0, 0)
    assert job_row(grid.engine, pid)["jobStatus"] == "waiting"

    infos = grid.seed(f"mc.{tag}.evgen", "CLOUDA_T1_DATADISK", {f"mc.{tag}.EVNT.0": payload()})
    assert grid.waker().woken == 1
    assert job_row(grid.engine, pid)["jobStatus"] == "defined"
    [f] = inputs_of(grid.engine, pid)
    assert f["status"] == "unknown"  # the setupper resolves it afresh

    assert grid.setupper().assigned == 1
    row = job_row(grid.engine, pid)
    assert row["jobStatus"] == "assigned" and row["computingSite"] in ("CLOUDA_T2_1", "CLOUDA_T2_2")
    [f] = inputs_of(grid.engine, pid)
    info = infos[f"mc.{tag}.EVNT.0"]
    assert (f["GUID"], f["fsize"], f["checksum"], f["status"]) == (
        info.guid,
        info.fsize,
        info.checksum,
        "pending",
    )
    assert f["dispatchDBlock"] == row["dispatchDBlock"] and row["dispatchDBlock"].startswith("panda.")


def test_an_lfn_missing_from_an_existing_dataset_makes_the_job_wait(grid):
    tag = uuid.uuid4().hex[:8]
    grid.seed(f"mc.{tag}.evgen", "CLOUDA_T1_DATADISK", {f"mc.{tag}.EVNT.other": payload()})
    pid = waiting_job(grid, tag)
    assert job_row(grid.engine, pid)["jobStatus"] == "waiting"
    assert [f["status"] for f in inputs_of(grid.engine, pid)] == ["missing"]
    assert grid.waker().still_waiting == 1  # the dataset exists, the file still is not in it


def test_a_job_waiting_longer_than_the_timeout_fails_naming_the_missing_file(grid):
    tag = uuid.uuid4().hex[:8]
    pid = waiting_job(grid, tag)
    lfn = f"mc.{tag}.EVNT.0"

    grid.tick(grid.settings.waiting_timeout - 60)
    assert grid.waker().still_waiting == 1
    assert job_row(grid.engine, pid)["jobStatus"] == "waiting"

    grid.tick(120)  # now past the timeout, counted from when the job went waiting
    assert grid.waker().timed_out == 1
    row = job_row(grid.engine, pid)
    assert row["jobStatus"] == "failed" and row["taskBufferErrorCode"] == 104
    assert row["taskBufferErrorDiag"].startswith("waiting timeout") and lfn in row["taskBufferErrorDiag"]
