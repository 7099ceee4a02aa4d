"""Production jobs through the data service on the default topology, cycle by cycle, with the
real local DDM moving files between directory SEs: brokerage over CLOUDA's T2s, dispatch
T1 → T2, activation by the poll, outputs registered and aggregated T2 → T1, finishing."""

from __future__ import annotations

import json
import uuid

import sqlalchemy as sa

from panda_server.db import tables as t
from panda_server.protocol.jobspec import FileSpec, JobSpec
from panda_server.taskbuffer import reports
from tests.dataservice.conftest import adler32, payload
from tests.support.dbjobs import insert_job
from tests.wire.helpers import store_jobs


def production_job(tag: str, i: int, inputs: list[str], **attrs) -> JobSpec:
    job = JobSpec(jobName=f"mc.{tag}.{i}", transformation="/bin/true", prodSourceLabel="managed", cloud="CLOUDA",
                  AtlasRelease="NULL", prodDBlock=f"mc.{tag}.evgen", assignedPriority=100, currentPriority=100,
                  jobParameters="x", **attrs)  # fmt: skip
    for lfn in inputs:
        job.add_file(FileSpec(lfn=lfn, type="input", dataset=f"mc.{tag}.evgen", prodDBlock=f"mc.{tag}.evgen",
                              scope="mc"))  # fmt: skip
    job.add_file(FileSpec(lfn=f"mc.{tag}.HITS.{i}.root", type="output", scope="mc", dataset=f"mc.{tag}.HITS",
                          destinationDBlock=f"mc.{tag}.HITS"))  # fmt: skip
    job.add_file(FileSpec(lfn=f"mc.{tag}.log.{i}.tgz", type="log", scope="mc", dataset=f"mc.{tag}.log",
                          destinationDBlock=f"mc.{tag}.log", GUID=str(uuid.uuid4())))  # fmt: skip
    return job


def load_tier1(engine, n: int = 3) -> None:
    """Activated jobs at CLOUDA_T1: its weight (activated+assigned) sends new work to the T2s."""
    with engine.begin() as conn:
        for _ in range(n):
            insert_job(conn, "activated", site="CLOUDA_T1")


def jobs_by_id(engine, ids):
    out = {}
    with engine.connect() as conn:
        for table in t.JOB_TABLE.values():
            for row in conn.execute(sa.select(table).where(table.c.PandaID.in_(ids))).mappings():
                out[row["PandaID"]] = dict(row)
    return out


def files_of(engine, panda_id):
    f = t.filestable4
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(f).where(f.c.PandaID == panda_id).order_by(f.c.rowID)).mappings()]


def pilot_ran(grid, panda_id: int, site_rse: str) -> None:
    """What a pilot leaves behind: outputs on the site's SE and a `finished` report (job holding)."""
    report = {}
    with grid.engine.begin() as conn:
        for f in files_of(grid.engine, panda_id):
            if f["type"] == "input":
                continue
            data = payload(1000)
            path = grid.se_file(site_rse, f["scope"], f["lfn"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            report[f["lfn"]] = {"guid": f["GUID"] or str(uuid.uuid4()), "fsize": len(data), "adler32": adler32(data)}
        a = t.jobsactive4
        conn.execute(sa.update(a).where(a.c.PandaID == panda_id).values(jobStatus="holding"))
        reports.save(conn, panda_id, pilot_status="finished", data=json.dumps(report), attempt_nr=1,
                     label="managed", now=grid.now)  # fmt: skip


def test_production_jobs_are_brokered_to_t2s_dispatched_run_and_aggregated_at_the_t1(grid):
    tag = uuid.uuid4().hex[:8]
    inputs = grid.seed(f"mc.{tag}.evgen", "CLOUDA_T1_DATADISK", {f"mc.{tag}.EVNT.{i}": payload() for i in range(8)})
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
        assert r["dispatchDBlock"].startswith("panda.") and f"_dis" in r["dispatchDBlock"]
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
                assert f["status"] == "ready" and copy.read_bytes() == grid.se_file("CLOUDA_T1_DATADISK", "mc", f["lfn"]).read_bytes()

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
