"""The slurm submitter's pure parts: squeue JSON to batch states, the batch script, the checks that
run before any command (a recording runner stands in for sbatch/squeue/scancel).

slurm/squeue_22.05.json was recorded here from the real Slurm (Debian slurm-wlm 22.05.8, openapi
v0.0.38) on a `python -m scripts.localslurm up --cpus 4` node: jobs named after what they did
(exit 0, exit 3, `kill -9 $$`, an --output in a missing directory, --begin=now+3600 then scancel,
--begin=now+3600, `sleep 300` while recording, --time=1 with `sleep 300`, `sleep 300` scancelled
while running), then `squeue --json --states=all`, re-indented with json.dumps(indent=2); one
duplicate cancelled-while-pending job was dropped. 22.05 lists every job whatever --jobs says.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autopilot.submitters.base import BatchCommandError, BatchState, BatchStatus, PilotBatch, SubmitError
from autopilot.submitters.commands import Completed
from autopilot.submitters.slurm import SlurmSubmitter, exit_code, job_script, parse_squeue_json
from schedconfig.model import QueueSpec

SAMPLES = Path(__file__).parent / "slurm"
RECORDED = (SAMPLES / "squeue_22.05.json").read_text()

# NOT recorded: hand-written, modelled on the newer documented format (Slurm 23.11+, openapi
# v0.0.40+: job_state a list of the base state and its flags, exit_code an object whose
# return_code and signal id are {set, infinite, number} structs; 23.02/v0.0.39's exit_code has a
# plain return_code and a string status). Only the fields the submitter reads.
NEWER = {
    "meta": {"plugin": {"type": "openapi/slurmctld", "name": "Slurm OpenAPI slurmctld"}},
    "errors": [],
    "warnings": [],
    "jobs": [
        {"job_id": 101, "job_state": ["PENDING"], "batch_host": "", "nodes": "", "state_reason": "Priority",
         "exit_code": {"status": ["PENDING"], "return_code": {"set": False, "infinite": False, "number": 0}}},
        {"job_id": 102, "job_state": ["RUNNING"], "batch_host": "wn07", "nodes": "wn07", "state_reason": "None",
         "exit_code": {"status": ["PENDING"], "return_code": {"set": False, "infinite": False, "number": 0}}},
        {"job_id": 103, "job_state": ["COMPLETED", "COMPLETING"], "batch_host": "wn07", "nodes": "wn07",
         "state_reason": "None",
         "exit_code": {"status": ["SUCCESS"], "return_code": {"set": True, "infinite": False, "number": 0}}},
        {"job_id": 104, "job_state": ["COMPLETED"], "batch_host": "wn08", "nodes": "wn08", "state_reason": "None",
         "exit_code": {"status": ["SUCCESS"], "return_code": {"set": True, "infinite": False, "number": 0}}},
        {"job_id": 105, "job_state": ["FAILED"], "batch_host": "wn08", "nodes": "wn08",
         "state_reason": "NonZeroExitCode",
         "exit_code": {"status": ["ERROR"], "return_code": {"set": True, "infinite": False, "number": 3}}},
        {"job_id": 106, "job_state": ["CANCELLED"], "batch_host": "wn09", "nodes": "wn09", "state_reason": "None",
         "exit_code": {"status": ["SIGNALED"], "return_code": {"set": True, "infinite": False, "number": 0},
                       "signal": {"id": {"set": True, "infinite": False, "number": 15}, "name": "TERM"}}},
        {"job_id": 107, "job_state": ["OUT_OF_MEMORY"], "batch_host": "wn09", "nodes": "wn09",
         "state_reason": "OutOfMemory",
         "exit_code": {"status": ["ERROR"], "return_code": {"set": True, "infinite": False, "number": 0}}},
        {"job_id": 108, "job_state": ["PENDING", "REQUEUED"], "batch_host": "", "nodes": "",
         "state_reason": "BeginTime", "exit_code": {"status": ["PENDING"], "return_code": {"set": False}}},
        {"job_id": 109, "job_state": ["FAILED"], "batch_host": "wn10", "nodes": "wn10", "state_reason": "None",
         "exit_code": {"status": ["SIGNALED"], "return_code": {"set": True, "infinite": False, "number": 0},
                       "signal": {"id": {"set": True, "infinite": False, "number": 9}, "name": "KILL"}}},
        {"job_id": 110, "job_state": ["RUNNING", "CONFIGURING"], "batch_host": "wn11", "nodes": "wn11",
         "state_reason": "None", "exit_code": {"status": ["PENDING"], "return_code": {"set": False}}},
        {"job_id": 111, "job_state": "FAILED", "batch_host": "wn12", "nodes": "wn12",  # 23.02 (v0.0.39)
         "state_reason": "NonZeroExitCode", "exit_code": {"status": "EXITED", "return_code": 7}},
    ],
}  # fmt: skip


def by_name() -> dict[str, str]:
    return {job["name"]: str(job["job_id"]) for job in json.loads(RECORDED)["jobs"]}


def test_recorded_22_05_output_maps_every_state():
    got = parse_squeue_json(RECORDED)
    ids = by_name()
    assert set(got) == set(ids.values())
    s = {name: got[job_id] for name, job_id in ids.items()}
    node = "localhost"
    assert s["completed"] == BatchStatus(BatchState.done, exit_code=0, info="COMPLETED", workernode=node)
    assert s["failed3"] == BatchStatus(BatchState.done, exit_code=3, info="FAILED", workernode=node)
    assert s["pending"] == BatchStatus(BatchState.queued, info="PENDING")
    assert s["running"] == BatchStatus(BatchState.running, info="RUNNING", workernode="localhost")
    assert s["timeout"] == BatchStatus(BatchState.failed, info="TIMEOUT", workernode="localhost")
    assert s["cancelled_running2"] == BatchStatus(BatchState.failed, info="CANCELLED", workernode="localhost")
    assert s["cancelled_pending"] == BatchStatus(BatchState.failed, info="CANCELLED")
    # Slurm could not start it (no such --output directory): the batch system ended it
    assert s["launchfail"] == BatchStatus(BatchState.failed, info="FAILED JobLaunchFailure, signal 53",
                                          workernode="localhost")  # fmt: skip
    # killed by a signal Slurm did not send (22.05 calls that a JobLaunchFailure too): it could not report
    assert s["signal"].state is BatchState.failed and "signal 9" in s["signal"].info


def test_recorded_22_05_exit_codes_are_wait_statuses():
    raw = {job["name"]: job["exit_code"] for job in json.loads(RECORDED)["jobs"]}
    assert raw["failed3"] == 768 and exit_code(768) == (3, 0)
    assert exit_code(raw["signal"]) == (0, 9)
    assert exit_code(raw["launchfail"]) == (15, 53)
    assert exit_code(None) == (None, 0)


def test_newer_list_shaped_output_modelled_on_the_documented_format():
    got = parse_squeue_json(json.dumps(NEWER))
    assert got["101"] == BatchStatus(BatchState.queued, info="PENDING")
    assert got["102"] == BatchStatus(BatchState.running, info="RUNNING", workernode="wn07")
    assert got["103"] == BatchStatus(BatchState.running, info="COMPLETING", workernode="wn07")
    assert got["104"] == BatchStatus(BatchState.done, exit_code=0, info="COMPLETED", workernode="wn08")
    assert got["105"] == BatchStatus(BatchState.done, exit_code=3, info="FAILED", workernode="wn08")
    assert got["106"] == BatchStatus(BatchState.failed, info="CANCELLED", workernode="wn09")
    assert got["107"] == BatchStatus(BatchState.failed, info="OUT_OF_MEMORY", workernode="wn09")
    assert got["108"] == BatchStatus(BatchState.queued, info="REQUEUED")
    assert got["109"] == BatchStatus(BatchState.failed, info="FAILED signal 9", workernode="wn10")
    assert got["110"] == BatchStatus(BatchState.queued, info="CONFIGURING", workernode="wn11")
    assert got["111"] == BatchStatus(BatchState.done, exit_code=7, info="FAILED", workernode="wn12")


@pytest.mark.parametrize("state", ["TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"])
def test_states_where_slurm_ended_the_pilot_are_failed(state):
    job = {"job_id": 5, "job_state": state, "exit_code": 15, "nodes": "wn1", "state_reason": "None"}
    assert parse_squeue_json(json.dumps({"jobs": [job]}))["5"] == BatchStatus(BatchState.failed, info=state,
                                                                              workernode="wn1")  # fmt: skip


@pytest.mark.parametrize("state", ["SUSPENDED", "RESV_DEL_HOLD", "REQUEUE_HOLD", "STOPPED"])
def test_held_or_suspended_pilots_count_as_queued(state):
    job = {"job_id": 6, "job_state": state, "exit_code": 0}
    assert parse_squeue_json(json.dumps({"jobs": [job]}))["6"].state is BatchState.queued


@pytest.mark.parametrize("text", ["", "squeue: error: something", "[]", '{"errors": []}'])
def test_what_is_not_squeue_json_is_refused(text):
    with pytest.raises(ValueError):
        parse_squeue_json(text)


# ---- the commands, with a recording runner


class Recorder:
    def __init__(self, *answers: Completed) -> None:
        self.calls: list[list[str]] = []
        self.answers = list(answers)

    def __call__(self, argv, **kwargs) -> Completed:
        self.calls.append(list(argv))
        return self.answers.pop(0) if self.answers else Completed(tuple(argv), 0, "", "")


def batch(tmp_path: Path, *, count: int = 1, environ: str = "", environment: dict | None = None,
          ) -> PilotBatch:  # fmt: skip
    queue = QueueSpec(nickname="Q_T2", cloud="CLOUDA", queue="short", memory=2000, maxtime=3601,
                      environ=environ)  # fmt: skip
    return PilotBatch(queue=queue, name="fac.Q_T2.7", count=count, log_dir=tmp_path / "logs", log_url="http://x/l",
                      executable=Path("/opt/wrapper.sh"), arguments=("-q", "Q_T2", "-w", "https://h:25443"),
                      environment=environment or {"PANDA_JSID": "fac"}, proxy=Path("/tmp/p.proxy"))  # fmt: skip


def test_the_batch_script(tmp_path):
    text = job_script(batch(tmp_path, environ="A=1 B=x%y"), 0)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --job-name=fac.Q_T2.7.0" in lines and "#SBATCH --partition=short" in lines
    assert "#SBATCH --mem=2000M" in lines and "#SBATCH --time=61" in lines  # 3601 s: 61 minutes
    assert f"#SBATCH --output={tmp_path}/logs/fac.Q_T2.7.0.out" in lines and "#SBATCH --export=NONE" in lines
    assert "export A=1" in lines and "export B=x%y" in lines and "export PANDA_TPID=fac.Q_T2.7.0" in lines
    assert lines[-1] == "exec /opt/wrapper.sh -q Q_T2 -w https://h:25443"
    assert lines.index("export A=1") < lines.index("export PANDA_JSID=fac")  # the factory's win


@pytest.mark.parametrize(("environ", "environment"), [("BAD-KEY=1", None), ("NOVALUE", None),
                                                      ("", {"PANDA_JSID": "a\nb"})])  # fmt: skip
def test_what_cannot_be_passed_to_a_pilot_is_refused_before_sbatch(tmp_path, environ, environment):
    run = Recorder()
    with pytest.raises(SubmitError) as err:
        SlurmSubmitter(run=run).submit(batch(tmp_path, environ=environ, environment=environment))
    assert run.calls == [] and err.value.submitted == []


def test_submit_stops_at_the_first_failing_sbatch(tmp_path):
    run = Recorder(Completed(("sbatch",), 0, "41\n", ""), Completed(("sbatch",), 0, "42;cluster\n", ""),
                   Completed(("sbatch",), 1, "", "sbatch: error: Batch job submission failed: Socket timed out"))  # fmt: skip
    with pytest.raises(SubmitError) as err:
        SlurmSubmitter(run=run).submit(batch(tmp_path, count=4))
    assert err.value.submitted == ["41", "42"] and "Socket timed out" in str(err.value)
    assert "'short'" in str(err.value) and "fac.Q_T2.7.2" in str(err.value)
    assert len(run.calls) == 3
    script = tmp_path / "logs" / "fac.Q_T2.7.0.sh"
    assert run.calls[0] == ["sbatch", "--parsable", "--export=NONE", str(script)] and script.exists()


def test_ids_are_checked_before_any_command():
    run = Recorder()
    sub = SlurmSubmitter(run=run, env={"SLURM_CONF": "/x"})
    for bad in (["1", "2;3"], ["-1"], ["--me"], [" 7"], ["٣"]):
        with pytest.raises(ValueError):
            sub.status(bad)
        with pytest.raises(ValueError):
            sub.cancel(bad)
    assert run.calls == []
    assert sub.status([]) == {} and run.calls == []


def test_status_keeps_only_the_asked_ids_and_survives_an_unknown_one():
    refused = Completed(("squeue",), 1, "", "slurm_load_jobs error: Invalid job id specified")
    run = Recorder(refused, Completed(("squeue",), 0, RECORDED, ""))
    ids = by_name()
    got = SlurmSubmitter(run=run).status([ids["failed3"], ids["running"], "999999"])
    assert set(got) == {ids["failed3"], ids["running"]}
    assert run.calls[0][:3] == ["squeue", "--json", "--states=all"] and run.calls[0][3].startswith("--jobs=")
    assert run.calls[1] == ["squeue", "--json", "--states=all"]


def test_status_that_cannot_be_asked_is_an_error():
    run = Recorder(Completed(("squeue",), 1, "", "squeue: error: Unable to contact slurm controller"))
    with pytest.raises(BatchCommandError, match="Unable to contact"):
        SlurmSubmitter(run=run).status(["5"])
    with pytest.raises(BatchCommandError, match="not JSON"):
        SlurmSubmitter(run=Recorder(Completed(("squeue",), 0, "garbage", ""))).status(["5"])


def test_cancel_runs_scancel_with_the_environment_given():
    run = Recorder()
    calls = []

    def recording(argv, **kwargs):
        calls.append(kwargs.get("env"))
        return run(argv)

    SlurmSubmitter(run=recording, env={"SLURM_CONF": "/x", "PATH": os.defpath}).cancel(["7", "8"])
    assert run.calls == [["scancel", "7", "8"]] and calls == [{"SLURM_CONF": "/x", "PATH": os.defpath}]
    failing = Recorder(Completed(("scancel",), 1, "", "scancel: error: Unable to contact slurm controller"))
    with pytest.raises(BatchCommandError):
        SlurmSubmitter(run=failing).cancel(["7"])
