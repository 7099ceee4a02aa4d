"""The datasetCompleted callback and its polling fallback.

The grid's callback URL is a closed port: every callback the DDM agent makes is lost (abandoned
after settings.ddm_callback_attempts = 1), so the activator's and finisher's polls must settle the
jobs. The handler itself (ddmhandler.dataset_completed) is called directly: it acts only on what
DDM confirms, so an early, forged or misdirected call changes nothing."""

from __future__ import annotations

import uuid

from panda_server.dataservice import ddmhandler
from tests.dataservice.conftest import (
    corrupt,
    ddm_subscriptions,
    files_of,
    inputs_of,
    job_row,
    jobs_by_id,
    panda_dataset,
    seeded_jobs,
    site_rse,
    transferring_jobs,
)


def callback(grid, name: str, site: str) -> str:
    """datasetCompleted?vuid=<the vuid of PanDA's dataset `name`>&site=<site>, as the server handles it."""
    return called(grid, panda_dataset(grid.engine, name)["vuid"], site)


def called(grid, vuid: str, site: str) -> str:
    with grid.engine.begin() as conn:
        return ddmhandler.dataset_completed(conn, grid.svc, vuid, site, grid.now)


def test_a_lost_callback_is_caught_by_the_activator_poll(grid):
    [pid] = seeded_jobs(grid, uuid.uuid4().hex[:8])
    assert grid.setupper().assigned == 1
    summary = grid.agent()
    assert (summary.done, summary.callbacks_made, summary.callbacks_failed) == (1, 0, 1)
    [sub] = ddm_subscriptions(grid.engine)
    assert sub["state"] == "done" and not sub["callback_pending"]
    assert sub["callback_error"].startswith("abandoned after 1 attempts")
    assert job_row(grid.engine, pid)["jobStatus"] == "assigned"  # nobody told PanDA

    assert grid.activator().activated == 1
    assert job_row(grid.engine, pid)["jobStatus"] == "activated"
    assert [f["status"] for f in inputs_of(grid.engine, pid)] == ["ready"]


def test_a_dispatch_callback_activates_only_what_ddm_confirms(grid):
    [pid] = seeded_jobs(grid, uuid.uuid4().hex[:8])
    assert grid.setupper().assigned == 1
    row = job_row(grid.engine, pid)
    dis, rse = row["dispatchDBlock"], site_rse(row)

    outcome = callback(grid, dis, rse)  # early (or forged): the subscription is only queued
    assert outcome.endswith("ignored")
    assert job_row(grid.engine, pid)["jobStatus"] == "assigned"
    assert [f["status"] for f in inputs_of(grid.engine, pid)] == ["pending"]

    grid.agent()  # the copy is done; the real callback went nowhere
    assert called(grid, str(uuid.uuid4()), rse) == "unknown vuid: ignored"
    assert callback(grid, dis, "CLOUDA_T1_DATADISK").endswith("not subscribed in DDM: ignored")  # wrong site
    assert job_row(grid.engine, pid)["jobStatus"] == "assigned"

    assert callback(grid, dis, rse) == "1 jobs activated"
    assert job_row(grid.engine, pid)["jobStatus"] == "activated"
    assert [f["status"] for f in inputs_of(grid.engine, pid)] == ["ready"]
    assert panda_dataset(grid.engine, dis)["status"] == "completed"
    assert callback(grid, dis, rse) == "0 jobs activated"  # a repeated callback is harmless


def test_an_output_callback_finishes_the_jobs_whose_outputs_reached_the_t1(grid):
    tag = uuid.uuid4().hex[:8]
    first, second = transferring_jobs(grid, tag, n=2)
    rows = jobs_by_id(grid.engine, [first, second])
    assert rows[first]["computingSite"] == rows[second]["computingSite"]  # one bunch: shared _sub datasets
    outs = {pid: {f["type"]: f for f in files_of(grid.engine, pid) if f["type"] != "input"} for pid in rows}
    hits_sub, log_sub = outs[first]["output"]["destinationDBlock"], outs[first]["log"]["destinationDBlock"]
    assert outs[second]["output"]["destinationDBlock"] == hits_sub

    assert callback(grid, hits_sub, "CLOUDA_T1_DATADISK") == "0 jobs finished"  # nothing at the T1 yet
    corrupt(grid.se_file(site_rse(rows[second]), "mc", outs[second]["output"]["lfn"]))
    grid.agent()  # the first job's outputs and both logs arrive; the second's HITS fails attempt 1

    assert callback(grid, log_sub, "CLOUDA_T1_DATADISK") == "0 jobs finished"  # HITS still transferring
    assert callback(grid, hits_sub, "CLOUDA_T1_DATADISK") == "1 jobs finished"
    rows = jobs_by_id(grid.engine, [first, second])
    assert rows[first]["jobStatus"] == "finished" and rows[second]["jobStatus"] == "transferring"
    statuses = {f["type"]: f["status"] for f in files_of(grid.engine, second) if f["type"] != "input"}
    assert statuses == {"output": "transferring", "log": "ready"}

    hits = outs[first]["output"]  # finished outputs are added to their top-level dataset at the T1
    top = hits["dataset"]
    assert hits["lfn"] in {f.lfn for f in grid.svc.ddm.list_files(top)}
    assert "CLOUDA_T1_DATADISK" in grid.svc.ddm.list_replicas([hits["GUID"]])[hits["GUID"]]
