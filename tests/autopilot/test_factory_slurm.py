"""The factory with the `slurm` submitter against a real single-node Slurm (started by the suite)
and the live test server: sbatch'd wrappers run our pilot, which runs the jobs."""

from __future__ import annotations

import subprocess

import pytest
import sqlalchemy as sa

from autopilot import logserver
from autopilot.factory import Factory
from autopilot.submitters.slurm import SlurmSubmitter
from panda_server.db import tables as t
from tests.support.factory import factory_settings, follow, pilots, sleeper, utcnow
from tests.support.pilots import add_queue, insert_activated, job_row, run_adder, shell_job

QUEUE = "APSLURM_T2"


@pytest.fixture
def grid(live, engine, slurm):
    add_queue(engine, QUEUE, siteid=QUEUE, nqueue=2, system="slurm", queue="debug", memory=1000, maxtime=1800)
    yield live
    with engine.begin() as conn:
        conn.execute(sa.delete(t.schedconfig).where(t.schedconfig.c.nickname.like("APSLURM%")))


def factory(settings, engine, slurm) -> Factory:
    return Factory(settings, engine, submitters={"slurm": SlurmSubmitter(env=slurm.env)})


def scontrol(slurm, job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], env=slurm.env, capture_output=True, text=True,
                          timeout=30).stdout  # fmt: skip


def test_sbatch_pilots_run_the_activated_jobs_to_finished(grid, engine, db_url, tmp_path, slurm):
    ids = [insert_activated(engine, shell_job(QUEUE, f"echo slurm job {i}")) for i in range(3)]
    settings = factory_settings(grid, db_url, tmp_path)
    f = factory(settings, engine, slurm)
    server = logserver.serve(f.logs, "127.0.0.1", settings.autopilot_log_port)
    try:
        [qr] = f.run_cycle(utcnow(), only=[QUEUE]).queues
        assert len(qr.submitted) == 2 and all(i.isdigit() for i in qr.submitted)  # Slurm job ids
        for job_id in qr.submitted:  # what sbatch got from the queue's schedconfig row
            shown = scontrol(slurm, job_id)
            assert (
                "Partition=debug" in shown
                and "TimeLimit=00:30:00" in shown
                and "MinMemoryNode=1000M" in shown
            )

        def all_done() -> bool:
            run_adder(engine)  # the pilots leave their jobs holding
            jobs_ended = all(job_row(engine, i)["jobStatus"] == "finished" for i in ids)
            return jobs_ended and {r.state for r in pilots(engine).values()} == {"done"}

        seen = follow(f, engine, all_done, seconds=180)
    finally:
        server.shutdown()
    rows = pilots(engine)
    assert sorted(r.jobid for r in rows.values()) == sorted(qr.submitted)
    for tpid, states in seen.items():
        assert states[0] == "submitted" and states[-1] == "done", (tpid, states)
        assert set(states) <= {"submitted", "queued", "running", "done"}
    assert any("running" in states for states in seen.values())
    urls = {r.url for r in rows.values()}
    for i in ids:
        job = job_row(engine, i)
        assert job["schedulerID"] == "test-factory" and job["pilotID"].split("|")[0] in urls
    assert any(r.pandaid in ids for r in rows.values())
    for r in rows.values():
        assert r.errcode in (0, 82) and r.workernode
        assert "wrapper: exit code" in (f.log_dir(r.tsubmit, QUEUE) / f"{r.tpid}.out").read_text()


def test_a_pilot_cancelled_with_scancel_is_failed(grid, engine, db_url, tmp_path, slurm):
    add_queue(engine, "APSLURM_CANCEL", siteid="APSLURM_CANCEL", nqueue=1, system="slurm", queue="debug")
    insert_activated(engine, shell_job("APSLURM_CANCEL", "echo never"))
    settings = factory_settings(grid, db_url, tmp_path, autopilot_wrapper=str(sleeper(tmp_path)))
    f = factory(settings, engine, slurm)
    [qr] = f.run_cycle(utcnow(), only=["APSLURM_CANCEL"]).queues
    [job_id] = qr.submitted
    follow(f, engine, lambda: {r.state for r in pilots(engine).values()} == {"running"}, seconds=60)
    subprocess.run(["scancel", job_id], env=slurm.env, check=True, timeout=30)
    follow(f, engine, lambda: {r.state for r in pilots(engine).values()} <= {"failed", "lost"}, seconds=60)
    [row] = pilots(engine).values()
    assert row.jobid == job_id and row.state == "failed" and "CANCELLED" in row.errinfo and row.tend
