"""Production jobs through the data service on the default topology, cycle by cycle, with the
real local DDM moving files between directory SEs: brokerage over CLOUDA's T2s, dispatch
T1 → T2, activation by the poll, outputs registered and aggregated T2 → T1, finishing."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from panda_server.db import tables as t
from tests.dataservice.conftest import (
    adler32,
    files_of,
    jobs_by_id,
    load_tier1,
    payload,
    pilot_ran,
    production_job,
)
from tests.wire.helpers import store_jobs


def test_production_jobs_are_brokered_to_t2s_dispatched_run_and_aggregated_at_the_t1(grid):
    tag = uuid.uuid4().hex[:8]
    inputs = grid.seed(
        f"mc.{tag}.evgen", "CLOUDA_T1_DATADISK", {f"mc.{tag}.EVNT.{i}": payload() for i in range(8)}
    )
    load_tier1(grid.engine)
    lfns = sorted(inputs)
    jobs = [production_job(tag, i, lfns[2 * i : 2 * i + 2]) for i in range(4)]
    ids = store_jobs(grid.engine, jobs)

    summary = grid.setupper()
    assert summary.assigned == 4, summary
    rows = jobs_by_id(grid.engine, ids)
    assert {r["jobStatus"] for r in rows.values()} == {"assigned"}
    assert {r["computingSite"] for r in rows.values()} <= {"CLOUDA_T2_1", "CLOUDA_T2_2"}
    assert {r["destinationSE"] for r in rows.values()} == {"CLOUDA_T1"}
    for r in rows.values():
        assert r["dispatchDBlock"].startswith("panda.") and "_dis" in r["dispatchDBlock"]
        ins = [f for f in files_of(grid.engine, r["PandaID"]) if f["type"] == "input"]
        assert {f["status"] for f in ins} == {"pending"}
        assert all(f["GUID"] == inputs[f["lfn"]].guid for f in ins)  # resolved through DDM

    grid.agent(cycles=2)  # T1 → T2 copies; the callback goes nowhere
    assert grid.activator().activated == 4
    rows = jobs_by_id(grid.engine, ids)
    assert {r["jobStatus"] for r in rows.values()} == {"activated"}
    for r in rows.values():
        rse = f"{r['computingSite']}_DATADISK"
        for f in files_of(grid.engine, r["PandaID"]):
            if f["type"] == "input":
                copy = grid.se_file(rse, "mc", f["lfn"])
                assert (
                    f["status"] == "ready"
                    and copy.read_bytes() == grid.se_file("CLOUDA_T1_DATADISK", "mc", f["lfn"]).read_bytes()
                )

    with grid.engine.begin() as conn:
        a = t.jobsactive4
        conn.execute(sa.update(a).where(a.c.PandaID.in_(ids)).values(jobStatus="running"))
    for r in rows.values():
        pilot_ran(grid, r["PandaID"], f"{r['computingSite']}_DATADISK")
    assert grid.adder().transferring == 4
    assert {r["jobStatus"] for r in jobs_by_id(grid.engine, ids).values()} == {"transferring"}

    grid.agent(cycles=2)  # T2 → T1
    grid.finisher()
    rows = jobs_by_id(grid.engine, ids)
    assert {r["jobStatus"] for r in rows.values()} == {"finished"}
    for pid in ids:
        for f in files_of(grid.engine, pid):
            if f["type"] != "input":
                at_t1 = grid.se_file("CLOUDA_T1_DATADISK", "mc", f["lfn"])
                assert at_t1.stat().st_size == f["fsize"]
                assert f"ad:{adler32(at_t1.read_bytes())}" == f["checksum"]
