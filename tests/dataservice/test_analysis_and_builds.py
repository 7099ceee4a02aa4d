"""Analysis jobs never move data: they are brokered to an analysis site holding their input and
activated at once; their outputs stay at the site. A build job's run jobs wait at the build
job's site for the library it produces and are activated (or failed) when it is done."""

from __future__ import annotations

import uuid

from panda_server.protocol.jobspec import FileSpec, JobSpec
from tests.dataservice.conftest import (
    ddm_subscriptions,
    files_of,
    inputs_of,
    job_row,
    jobs_by_id,
    panda_dataset,
    payload,
    pilot_ran,
    set_status,
    signature_verdict,
    stored_signature,
)
from tests.wire.helpers import store_jobs


def analysis_job(tag: str, i: int, inputs: dict[str, str], *, label: str = "user", **attrs) -> JobSpec:
    """A user job reading {lfn: dataset} (no GUIDs: the setupper looks them up), one output and a log."""
    job = JobSpec(jobName=f"user.{tag}.{i}", transformation="/bin/true", prodSourceLabel=label,
                  AtlasRelease="NULL", assignedPriority=1000, currentPriority=1000, jobParameters="x", **attrs)  # fmt: skip
    for lfn, dataset in inputs.items():
        job.add_file(FileSpec(lfn=lfn, type="input", dataset=dataset, prodDBlock=dataset, scope="user"))
    job.add_file(FileSpec(lfn=f"user.{tag}.out.{i}.root", type="output", scope="user", dataset=f"user.{tag}.out",
                          destinationDBlock=f"user.{tag}.out"))  # fmt: skip
    job.add_file(FileSpec(lfn=f"user.{tag}.log.{i}.tgz", type="log", scope="user", dataset=f"user.{tag}.out",
                          destinationDBlock=f"user.{tag}.out", GUID=str(uuid.uuid4())))  # fmt: skip
    return job


def seed_user_input(grid, tag: str, rse: str) -> str:
    grid.seed(f"user.{tag}.in", rse, {f"user.{tag}.in.0": payload()}, scope="user")
    return f"user.{tag}.in.0"


def test_an_analysis_job_runs_where_its_input_is_without_any_transfer(grid):
    tag = uuid.uuid4().hex[:8]
    lfn = seed_user_input(grid, tag, "CLOUDA_T2_1_DATADISK")
    [pid] = store_jobs(grid.engine, [analysis_job(tag, 0, {lfn: f"user.{tag}.in"})])

    assert grid.setupper().activated == 1
    row = job_row(grid.engine, pid)
    assert (row["jobStatus"], row["computingSite"]) == ("activated", "ANALY_CLOUDA_T2_1")
    assert row["destinationSE"] == "ANALY_CLOUDA_T2_1" and row["dispatchDBlock"] is None
    [f] = inputs_of(grid.engine, pid)
    assert f["status"] == "ready" and f["dispatchDBlock"] is None and f["GUID"]
    assert ddm_subscriptions(grid.engine) == []

    set_status(grid.engine, [pid], "running")
    pilot_ran(grid, pid, "CLOUDA_T2_1_DATADISK", label="user")
    summary = grid.adder()
    assert (summary.finished, summary.transferring) == (1, 0)
    assert job_row(grid.engine, pid)["jobStatus"] == "finished"
    assert ddm_subscriptions(grid.engine) == []
    out = next(f for f in files_of(grid.engine, pid) if f["type"] == "output")
    assert out["status"] == "ready"
    assert out["lfn"] in {i.lfn for i in grid.svc.ddm.list_files(f"user.{tag}.out")}  # the user's dataset
    assert grid.svc.ddm.list_replicas([out["GUID"]])[out["GUID"]] == {"CLOUDA_T2_1_DATADISK"}


def test_an_analysis_job_whose_input_is_at_no_analysis_site_fails_brokerage(grid):
    tag = uuid.uuid4().hex[:8]
    lfn = seed_user_input(grid, tag, "CLOUDA_T2_2_DATADISK")  # a production-only site
    [pid] = store_jobs(grid.engine, [analysis_job(tag, 0, {lfn: f"user.{tag}.in"})])

    assert grid.setupper().failed == 1
    row = job_row(grid.engine, pid)
    assert row["jobStatus"] == "failed" and row["brokerageErrorCode"] == 100
    for site in ("ANALY_CLOUDA_T1", "ANALY_CLOUDA_T2_1", "ANALY_CLOUDB_T1"):
        assert f"{site} does not hold the input" in row["brokerageErrorDiag"]
    assert ddm_subscriptions(grid.engine) == []


def build_and_run_jobs(grid, tag: str) -> tuple[int, list[int], str, str]:
    """A build job at ANALY_CLOUDA_T1 and two run jobs reading its library: (build, runs, lib dataset, lib lfn)."""
    lib_ds, lib = f"user.{tag}.lib._001", f"user.{tag}.lib._001.lib.tgz"
    build = JobSpec(jobName=f"user.{tag}.build", transformation="/bin/true", prodSourceLabel="panda",
                    computingSite="ANALY_CLOUDA_T1", AtlasRelease="NULL", assignedPriority=2000,
                    currentPriority=2000, jobParameters="build", destinationDBlock=lib_ds)  # fmt: skip
    build.add_file(FileSpec(lfn=lib, type="output", scope="user", dataset=lib_ds, destinationDBlock=lib_ds))
    build.add_file(FileSpec(lfn=f"{lib_ds}.log.tgz", type="log", scope="user", dataset=lib_ds,
                            destinationDBlock=lib_ds, GUID=str(uuid.uuid4())))  # fmt: skip
    data = seed_user_input(grid, tag, "CLOUDA_T1_DATADISK")
    runs = [analysis_job(tag, i, {lib: lib_ds, data: f"user.{tag}.in"}) for i in range(2)]
    build_id, *run_ids = store_jobs(grid.engine, [build, *runs])
    summary = grid.setupper()
    assert (summary.activated, summary.assigned) == (1, 2), summary
    return build_id, run_ids, lib_ds, lib


def test_run_jobs_wait_for_their_build_job_and_start_with_its_library(grid):
    build, runs, lib_ds, lib = build_and_run_jobs(grid, uuid.uuid4().hex[:8])
    rows = jobs_by_id(grid.engine, [build, *runs])
    assert (rows[build]["jobStatus"], rows[build]["computingSite"]) == ("activated", "ANALY_CLOUDA_T1")
    for pid in runs:
        assert (rows[pid]["jobStatus"], rows[pid]["computingSite"]) == ("assigned", "ANALY_CLOUDA_T1")
        assert rows[pid]["dispatchDBlock"] == lib_ds
        ins = {f["lfn"]: f for f in inputs_of(grid.engine, pid)}
        assert (ins[lib]["status"], ins[lib]["dispatchDBlock"], ins[lib]["GUID"]) == ("pending", lib_ds, None)
        assert {f["status"] for name, f in ins.items() if name != lib} == {"ready"}  # already at the T1
    assert ddm_subscriptions(grid.engine) == []
    before = {pid: stored_signature(grid.engine, pid) for pid in runs}

    set_status(grid.engine, [build], "running")
    pilot_ran(grid, build, "CLOUDA_T1_DATADISK", label="panda")
    assert grid.adder().finished == 1
    produced = next(f for f in files_of(grid.engine, build) if f["type"] == "output")
    assert panda_dataset(grid.engine, lib_ds)["status"] == "completed"
    assert grid.svc.ddm.get_dataset(lib_ds).state == "closed"

    rows = jobs_by_id(grid.engine, runs)
    for pid in runs:
        assert rows[pid]["jobStatus"] == "activated"
        [f] = [f for f in inputs_of(grid.engine, pid) if f["lfn"] == lib]
        assert (f["GUID"], f["fsize"], f["checksum"], f["status"]) == (
            produced["GUID"], produced["fsize"], produced["checksum"], "ready")  # fmt: skip
        verdict = signature_verdict(grid, pid)
        assert verdict.ok, verdict.reason  # re-signed with the library's GUID and checksum
        assert not signature_verdict(grid, pid, before[pid]).ok


def test_run_jobs_fail_when_their_build_job_fails(grid):
    build, runs, lib_ds, _ = build_and_run_jobs(grid, uuid.uuid4().hex[:8])
    set_status(grid.engine, [build], "running")
    pilot_ran(grid, build, "CLOUDA_T1_DATADISK", status="failed", label="panda")
    assert grid.adder().failed == 1

    rows = jobs_by_id(grid.engine, [build, *runs])
    assert rows[build]["jobStatus"] == "failed"
    for pid in runs:
        assert rows[pid]["jobStatus"] == "failed" and rows[pid]["taskBufferErrorCode"] == 100
        assert rows[pid]["taskBufferErrorDiag"].startswith("upstream job failed")
        assert lib_ds in rows[pid]["taskBufferErrorDiag"]


def test_a_run_job_submitted_after_its_build_job_finished_reads_the_library_from_ddm(grid):
    tag = uuid.uuid4().hex[:8]
    build, _, lib_ds, lib = build_and_run_jobs(grid, tag)
    set_status(grid.engine, [build], "running")
    pilot_ran(grid, build, "CLOUDA_T1_DATADISK", label="panda")
    assert grid.adder().finished == 1
    produced = next(f for f in files_of(grid.engine, build) if f["type"] == "output")

    [late] = store_jobs(
        grid.engine, [analysis_job(tag, 9, {lib: lib_ds, f"user.{tag}.in.0": f"user.{tag}.in"})]
    )
    assert grid.setupper().activated == 1
    row = job_row(grid.engine, late)
    assert (row["jobStatus"], row["computingSite"], row["dispatchDBlock"]) == (
        "activated",
        "ANALY_CLOUDA_T1",
        None,
    )
    [f] = [f for f in inputs_of(grid.engine, late) if f["lfn"] == lib]
    assert (f["GUID"], f["checksum"], f["status"]) == (produced["GUID"], produced["checksum"], "ready")
    assert signature_verdict(grid, late).ok
