"""Brokerage as operators see it (job fields, pandalog), reassignment back through the setupper,
and the re-signing of jobs whose signed file fields the setupper filled from DDM."""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa

from panda_server.db import tables as t
from panda_server.taskbuffer import control
from tests.dataservice.conftest import (
    ddm_subscriptions,
    files_of,
    inputs_of,
    job_row,
    seeded_jobs,
    signature_verdict,
    stored_signature,
)
from tests.wire.helpers import USER_DN


def reassign(grid, panda_id: int) -> None:
    with grid.engine.begin() as conn:
        assert control.reassign_jobs(conn, [panda_id], dn=USER_DN, production=True, now=grid.now) == [True]


def brokerage_log(grid) -> list[str]:
    p = t.pandalog
    with grid.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(p.c.message).where(p.c.type == "brokerage").order_by(p.c.bintime)
            ).scalars()
        )


def outputs_of(grid, panda_id: int) -> list[dict]:
    return [f for f in files_of(grid.engine, panda_id) if f["type"] != "input"]


def test_a_reassigned_job_is_brokered_and_dispatched_again(grid):
    [pid] = seeded_jobs(grid, uuid.uuid4().hex[:8])
    assert grid.setupper().assigned == 1
    first = job_row(grid.engine, pid)
    assert first["relocationFlag"] != 1
    subs = {f["destinationDBlock"] for f in outputs_of(grid, pid)}
    assert all(
        re.fullmatch(re.escape(f["dataset"]) + r"_sub\d+", f["destinationDBlock"])
        for f in outputs_of(grid, pid)
    )

    grid.tick()
    reassign(grid, pid)
    row = job_row(grid.engine, pid)
    assert row["jobStatus"] == "defined"
    assert (row["computingSite"], row["dispatchDBlock"], row["destinationSE"]) == (None, None, None)
    assert {(f["destinationDBlock"], f["status"]) for f in outputs_of(grid, pid)} == {
        (f["dataset"], "unknown") for f in outputs_of(grid, pid)}  # fmt: skip
    assert [f["dispatchDBlock"] for f in inputs_of(grid.engine, pid)] == [None]

    assert grid.setupper().assigned == 1
    again = job_row(grid.engine, pid)
    assert again["jobStatus"] == "assigned" and again["computingSite"] in ("CLOUDA_T2_1", "CLOUDA_T2_2")
    assert again["dispatchDBlock"].startswith("panda.") and again["dispatchDBlock"] != first["dispatchDBlock"]
    assert [f["dispatchDBlock"] for f in inputs_of(grid.engine, pid)] == [again["dispatchDBlock"]]
    assert all(
        re.fullmatch(re.escape(f["dataset"]) + r"_sub\d+", f["destinationDBlock"])
        for f in outputs_of(grid, pid)
    )
    assert not subs & {f["destinationDBlock"] for f in outputs_of(grid, pid)}  # new _sub datasets
    assert again["dispatchDBlock"] in {s["dataset"] for s in ddm_subscriptions(grid.engine)}

    grid.agent(cycles=2)
    assert grid.activator().activated == 1  # through the new dispatch dataset; the old one is dropped
    assert job_row(grid.engine, pid)["jobStatus"] == "activated"


def test_a_reassigned_job_with_relocation_flag_keeps_its_site(grid):
    [pid] = seeded_jobs(grid, uuid.uuid4().hex[:8], computingSite="CLOUDA_T2_2")  # chosen by the submitter
    assert grid.setupper().assigned == 1
    first = job_row(grid.engine, pid)
    assert (first["computingSite"], first["relocationFlag"]) == ("CLOUDA_T2_2", 1)

    reassign(grid, pid)
    row = job_row(grid.engine, pid)
    assert (row["jobStatus"], row["computingSite"], row["dispatchDBlock"]) == ("defined", "CLOUDA_T2_2", None)

    assert grid.setupper().assigned == 1
    again = job_row(grid.engine, pid)
    assert (again["jobStatus"], again["computingSite"]) == ("assigned", "CLOUDA_T2_2")
    assert again["dispatchDBlock"] != first["dispatchDBlock"]


def test_a_job_no_site_can_take_fails_brokerage_with_every_sites_reason(grid):
    [pid] = seeded_jobs(grid, uuid.uuid4().hex[:8], minRamCount=5000)
    assert grid.setupper().failed == 1
    row = job_row(grid.engine, pid)
    assert row["jobStatus"] == "failed" and row["brokerageErrorCode"] == 100
    reasons = ("CLOUDA_T1 memory 4000<5000", "CLOUDA_T2_1 memory 3000<5000", "CLOUDA_T2_2 memory 3000<5000")
    assert all(reason in row["brokerageErrorDiag"] for reason in reasons), row["brokerageErrorDiag"]
    assert {f["status"] for f in outputs_of(grid, pid)} == {"failed"}
    [logged] = [m for m in brokerage_log(grid) if f"PandaID={pid} " in m]
    assert all(reason in logged for reason in reasons), logged
    assert ddm_subscriptions(grid.engine) == []  # nothing was placed


def test_a_brokerage_decision_is_logged_with_the_chosen_site(grid):
    [pid] = seeded_jobs(grid, uuid.uuid4().hex[:8])
    assert grid.setupper().assigned == 1
    site = job_row(grid.engine, pid)["computingSite"]
    [logged] = [m for m in brokerage_log(grid) if f"PandaID={pid} " in m]
    assert logged.startswith(f"PandaID={pid} {site} (winv")
    assert "weights:" in logged and "CLOUDA_T1" in logged  # the other candidates and their weights


def test_the_setupper_re_signs_a_job_whose_inputs_it_filled_from_ddm(grid):
    [pid] = seeded_jobs(grid, uuid.uuid4().hex[:8])
    submitted = stored_signature(grid.engine, pid)
    assert signature_verdict(grid, pid).ok  # as submitted: no GUID, size or checksum yet

    assert grid.setupper().assigned == 1
    [f] = inputs_of(grid.engine, pid)
    assert f["GUID"] and f["checksum"].startswith("ad:")
    verdict = signature_verdict(grid, pid)
    assert verdict.ok, verdict.reason  # what our pilot checks before running it (else error 1390)
    stale = signature_verdict(grid, pid, submitted)
    assert not stale.ok and stale.reason.startswith("signature does not match")
