"""The slurm submitter against a real Slurm (the session's private one, tests/autopilot/conftest.py).

The pilots are a small stand-in script, not the real wrapper: it writes its environment to
<log_dir>/<tpid>.env, sleeps $1 seconds and exits with $2.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from autopilot.submitters.base import BatchState, BatchStatus, PilotBatch, SubmitError
from autopilot.submitters.slurm import SlurmSubmitter
from schedconfig.model import QueueSpec

WAIT = 60.0  # seconds any one wait may take
ENDED = (BatchState.done, BatchState.failed)
STAND_IN = """#!/bin/bash
env > "$PWD/$PANDA_TPID.env"
echo "stand-in pilot $PANDA_TPID: sleep $1, exit $2"
sleep "$1" & wait $!
exit "$2"
"""
SECRET = "postgresql://factory:s3cret@db.example/panda"


def make_batch(tmp_path: Path, name: str, *, sleep: int = 0, code: int = 0, count: int = 1,
               partition: str = "debug", memory: int = 100, maxtime: int = 150,
               environ: str = "ATLAS_LOCAL_AREA=/opt/atlas SITE_FLAVOUR=test") -> PilotBatch:  # fmt: skip
    pilot = tmp_path / "stand-in.sh"
    pilot.write_text(STAND_IN)
    pilot.chmod(0o755)
    queue = QueueSpec(nickname="SLURMTEST_T2", cloud="CLOUDA", system="slurm", queue=partition, memory=memory,
                      maxtime=maxtime, environ=environ)  # fmt: skip
    return PilotBatch(queue=queue, name=name, count=count, log_dir=tmp_path / "logs",
                      log_url="http://127.0.0.1:1/pilotlogs", executable=pilot, arguments=(str(sleep), str(code)),
                      environment={"PANDA_JSID": "test-factory", "FACTORYQUEUE": "SLURMTEST_T2",
                                   "ODD_VALUE": "two words, a 'quote' and $HOME"},
                      proxy=tmp_path / "pilot.proxy")  # fmt: skip


Seen = dict[str, list[str]]


def wait_until_ended(sub: SlurmSubmitter, ids: list[str]) -> tuple[dict[str, BatchStatus], Seen]:
    """Poll until every id has ended; the last statuses and the states seen on the way, per id."""
    seen: Seen = {i: [] for i in ids}
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        now = sub.status(ids)
        for i, st in now.items():
            if not seen[i] or seen[i][-1] != st.state.value:
                seen[i].append(st.state.value)
        if set(now) == set(ids) and all(st.state in ENDED for st in now.values()):
            return now, seen
        time.sleep(0.3)
    raise AssertionError(f"pilots {ids} did not end within {WAIT:.0f} s; seen {seen}")


def wait_for_state(sub: SlurmSubmitter, job_id: str, state: BatchState) -> BatchStatus:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        st = sub.status([job_id]).get(job_id)
        if st is not None and st.state is state:
            return st
        time.sleep(0.3)
    raise AssertionError(f"pilot {job_id} not {state.value} within {WAIT:.0f} s (last: {st})")


def scontrol(slurm, job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], env=slurm.env, capture_output=True, text=True,
                          check=True, timeout=30).stdout  # fmt: skip


def job_env(batch: PilotBatch, index: int) -> dict[str, str]:
    lines = (batch.log_dir / f"{batch.tpid(index)}.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_submit_keeps_a_script_per_pilot_and_slurm_gets_the_queue_limits(slurm, tmp_path):
    batch = make_batch(tmp_path, "f1.SLURMTEST_T2.1", count=2, sleep=3, memory=150, maxtime=150)
    sub = SlurmSubmitter(env=slurm.env)
    ids = sub.submit(batch)
    assert len(ids) == 2 and all(i.isdigit() for i in ids) and ids[0] != ids[1]
    for index, job_id in enumerate(ids):
        script = (batch.log_dir / f"{batch.tpid(index)}.sh").read_text()
        assert script.startswith("#!/bin/bash\n") and "#SBATCH --partition=debug" in script
        assert "#SBATCH --export=NONE" in script and f"exec {batch.executable} 3 0" in script
        shown = scontrol(slurm, job_id)
        assert f"JobName={batch.tpid(index)}" in shown
        assert "Partition=debug" in shown
        assert "MinMemoryNode=150M" in shown
        assert "TimeLimit=00:03:00" in shown  # 150 s rounded up to whole minutes
        assert f"StdOut={batch.stdout(index)}" in shown and f"StdErr={batch.stderr(index)}" in shown
        assert f"Command={batch.log_dir / batch.tpid(index)}.sh" in shown
    final, _ = wait_until_ended(sub, ids)
    assert all(st.state is BatchState.done and st.exit_code == 0 for st in final.values())
    assert "stand-in pilot f1.SLURMTEST_T2.1.1: sleep 3, exit 0" in batch.stdout(1).read_text()


def test_the_pilot_gets_its_variables_and_the_queues_but_not_the_factorys(slurm, tmp_path, monkeypatch):
    monkeypatch.setenv("PANDA_DATABASE_URL", SECRET)  # only in the submitting process (and so in sbatch's)
    monkeypatch.setenv("FACTORY_ONLY_SECRET", SECRET)
    batch = make_batch(tmp_path, "f1.SLURMTEST_T2.2")
    sub = SlurmSubmitter(env=slurm.env)
    assert slurm.env["FACTORY_ONLY_SECRET"] == SECRET  # sbatch does see it
    [job_id] = sub.submit(batch)
    final, _ = wait_until_ended(sub, [job_id])
    assert final[job_id].state is BatchState.done and final[job_id].exit_code == 0
    env = job_env(batch, 0)
    tpid = batch.tpid(0)
    assert env["PANDA_TPID"] == tpid and env["APFCID"] == tpid
    assert env["GTAG"] == f"http://127.0.0.1:1/pilotlogs/{tpid}.out"
    assert env["PILOT_EXIT_FILE"] == str(batch.exit_file(0))
    assert env["PANDA_JSID"] == "test-factory" and env["FACTORYQUEUE"] == "SLURMTEST_T2"
    assert env["ODD_VALUE"] == "two words, a 'quote' and $HOME"
    assert env["X509_USER_PROXY"] == str(batch.proxy)
    assert env["ATLAS_LOCAL_AREA"] == "/opt/atlas" and env["SITE_FLAVOUR"] == "test"  # the queue's environ
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["SLURM_JOB_ID"] == job_id and env["PWD"] == str(batch.log_dir)
    assert SECRET not in "\n".join(f"{k}={v}" for k, v in env.items())
    assert "PANDA_DATABASE_URL" not in env and "FACTORY_ONLY_SECRET" not in env
    # nothing else: not the factory's, nor the login environment Slurm 22.05 loads with --export=NONE
    queue_env = {"ATLAS_LOCAL_AREA", "SITE_FLAVOUR"}
    ours = {*batch.pilot_environment(0), *queue_env, "PATH", "LANG", "X509_USER_PROXY"}
    basics = {"HOME", "USER", "LOGNAME", "TMPDIR", "SLURMD_NODENAME", "PWD", "SHLVL", "_"}
    assert {k for k in env if not k.startswith("SLURM_")} - ours - basics == set()


def test_status_follows_a_pilot_to_done_with_its_exit_code(slurm, tmp_path):
    sub = SlurmSubmitter(env=slurm.env)
    ok = make_batch(tmp_path, "f1.SLURMTEST_T2.3", sleep=2)
    three = make_batch(tmp_path, "f1.SLURMTEST_T2.4", code=3)
    ids = sub.submit(ok) + sub.submit(three)
    final, seen = wait_until_ended(sub, ids)
    assert seen[ids[0]][0] in ("queued", "running") and seen[ids[0]][-1] == "done"
    assert "running" in seen[ids[0]]  # it sleeps 2 s: polled every 0.3 s, it is seen running
    node = "localhost"
    assert final[ids[0]] == BatchStatus(BatchState.done, exit_code=0, info="COMPLETED", workernode=node)
    assert final[ids[1]] == BatchStatus(BatchState.done, exit_code=3, info="FAILED", workernode=node)


def test_a_cancelled_pilot_has_failed_and_unknown_ids_are_left_out(slurm, tmp_path):
    sub = SlurmSubmitter(env=slurm.env)
    batch = make_batch(tmp_path, "f1.SLURMTEST_T2.5", sleep=300)
    [job_id] = sub.submit(batch)
    running = wait_for_state(sub, job_id, BatchState.running)
    assert running.info == "RUNNING" and running.workernode == "localhost"
    sub.cancel([job_id])
    final, _ = wait_until_ended(sub, [job_id])
    assert final[job_id].state is BatchState.failed and final[job_id].info == "CANCELLED"
    assert final[job_id].exit_code is None
    unknown = str(int(job_id) + 100000)
    assert set(sub.status([job_id, unknown])) == {job_id}
    assert sub.status([unknown]) == {}
    sub.cancel([job_id, unknown])  # ended or unknown: nothing to do, no error


def test_sbatch_refusing_a_pilot_is_a_submit_error_naming_the_partition(slurm, tmp_path):
    sub = SlurmSubmitter(env=slurm.env)
    batch = make_batch(tmp_path, "f1.SLURMTEST_T2.6", count=2, partition="nosuchpartition")
    with pytest.raises(SubmitError) as err:
        sub.submit(batch)
    assert "nosuchpartition" in str(err.value) and "partition" in str(err.value).lower()
    assert err.value.submitted == []
    out = subprocess.run(["squeue", "--json", "--states=all"], env=slurm.env, capture_output=True, text=True,
                         check=True, timeout=30).stdout  # fmt: skip
    assert not [j for j in json.loads(out)["jobs"] if j["name"].startswith(batch.name)]


def test_ids_that_are_not_slurm_job_ids_are_refused(slurm):
    sub = SlurmSubmitter(env={**os.environ, "SLURM_CONF": "/nonexistent"})  # would fail if it ran
    with pytest.raises(ValueError):
        sub.status(["12", "12; rm -rf /"])
    with pytest.raises(ValueError):
        sub.cancel(["--user=root"])
