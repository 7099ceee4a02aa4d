"""The unmodified PyPI panda-pilot 3.7.0.36 runs jobs from our server over mutual TLS.

Each test submits a no-input `test` job with a log file as a user through the Client API,
activates it with the Setupper, and runs the real pilot once (realpilot.run_pilot: its own Unix
user, its own PID namespace, PILOT_NOKILL=1) with the pilot proxy, `--url https://127.0.0.1`,
the queuedata and DDM endpoints from our /cache/, and the payload script from
HARVESTER_WORKDIR. The pilot's exit code proves nothing (3.7 exits 0 after failures), so the
tests assert on what the server recorded and logged, then run the Adder.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from client import api
from tests.interop import realpilot
from tests.interop.bench import (
    ECHO_TEXT,
    PILOT_AGENT,
    PILOT_TIMEOUT,
    QUEUE,
    assert_matches_file,
    payload_stdout,
)

pytestmark = pytest.mark.interop

ECHO_SCRIPT = '#!/bin/bash\necho "payload says: $*"\nexit 0\n'
SLEEP_SCRIPT = '#!/bin/bash\necho "payload sleeps"\nsleep 200\necho "payload woke up"\n'
# The kill test's heartbeat period (default 1800 s): the pilot learns commands only from the
# replies to its updates (reference/pilot.md §5, §13 fast-heartbeat trick).
KILL_HEARTBEAT = 10


def explain(run: realpilot.PilotRun, calls: list[Any]) -> str:
    """Context for a failed assertion: the requests the server saw and the pilot's log."""
    return (f"pilot rc={run.returncode} after {run.elapsed:.0f} s (stopped={run.stopped}); "
            f"requests: {[str(c) for c in calls]}\n--- pilot log (tail) ---\n"
            f"{realpilot.last_lines(run.pilotlog() or run.stdout, 60)}\n"
            f"--- pilot stderr ---\n{realpilot.last_lines(run.stderr, 20)}")  # fmt: skip


@pytest.mark.timeout(PILOT_TIMEOUT + 150)
def test_real_pilot_runs_a_job_to_finished(bench, https_log):
    panda_id = bench.submit_and_activate("runecho.sh")
    env = bench.pilot_env("runecho.sh", ECHO_SCRIPT)
    offset = https_log.offset()

    run = bench.run_pilot(env)

    calls = https_log.requests_since(offset)
    why = explain(run, calls)
    # what the pilot called, in order: queuedata, DDM endpoints, getJob, starting, running, finished
    assert [str(c) for c in calls] == [
        f"GET /cache/schedconfig/{QUEUE}.all.json 200", "GET /cache/ddmendpoints.json 200",
        "POST /server/panda/getJob 200", *["POST /server/panda/updateJob 200"] * 3,
    ], why  # fmt: skip
    assert all(c.agent.startswith(PILOT_AGENT) for c in calls), why
    assert https_log.transitions_since(offset, panda_id) == [
        ("activated", "sent"), ("sent", "starting"), ("starting", "running"), ("running", "holding"),
    ], why  # fmt: skip
    # the final update leaves the job holding, its file report queued for the Adder
    job = bench.job(panda_id)
    assert (job["table"], job["jobStatus"]) == ("jobsactive4", "holding"), why
    assert (job["pilotErrorCode"], job["transExitCode"]) == (0, "0"), why  # transExitCode is text (S08)
    assert job["modificationHost"] == bench.node, why
    assert job["computingElement"] == QUEUE, why
    assert job["pilotID"] and realpilot.PILOT_VERSION in job["pilotID"], why
    assert job["startTime"] and job["endTime"] and job["startTime"] <= job["endTime"], why
    assert job["pilotTiming"], why
    report = bench.output_report(panda_id)
    assert report is not None and report["jobStatus"] == "finished", why

    summary = bench.run_adder()

    assert (summary.finished, summary.failed) == (1, 0), why
    job = bench.job(panda_id)
    assert (job["table"], job["jobStatus"]) == ("jobsarchived4", "finished"), why
    log_row = bench.log_file(panda_id)
    assert log_row["lfn"] == f"log.{panda_id:05d}.job.log.tgz"
    staged = bench.staged(log_row["scope"], log_row["lfn"])
    assert_matches_file(log_row, staged)
    assert json.loads(report["data"])[log_row["lfn"]]["guid"].lower() == log_row["GUID"].lower()
    assert f"payload says: {ECHO_TEXT}" in payload_stdout(staged)
    assert bench.output_report(panda_id) is None
    print(f"\nreal pilot: {run.elapsed:.1f} s; requests: {[str(c) for c in calls]}")


@pytest.mark.timeout(PILOT_TIMEOUT + 150)
def test_real_pilot_obeys_kill_from_the_owner(bench, https_log):
    """killJobs reaches the pilot on its next heartbeat; it kills the payload, reports 1144."""
    panda_id = bench.submit_and_activate("runsleep.sh")
    env = bench.pilot_env("runsleep.sh", SLEEP_SCRIPT, heartbeat=KILL_HEARTBEAT)
    offset = https_log.offset()
    killed_at: list[float] = []

    def watch() -> bool:
        """Kill the job as its owner once it runs; done when the pilot's final update is in."""
        job = bench.job(panda_id)
        if not killed_at and job["jobStatus"] == "running":
            assert api.killJobs([panda_id], config=bench.client) == (0, [True])
            killed_at.append(time.monotonic())
        return bench.output_report(panda_id) is not None

    run = bench.run_pilot(env, watch=watch)

    calls = https_log.requests_since(offset)
    why = explain(run, calls)
    assert killed_at, f"the pilot never reported running; {why}"
    paths = [c.path.rsplit("/", 1)[-1] for c in calls]
    kill = paths.index("killJobs")
    assert calls[kill].agent.startswith("python-requests/"), why
    assert paths[:5] == [f"{QUEUE}.all.json", "ddmendpoints.json", "getJob", "updateJob", "updateJob"], why
    assert set(paths[5:kill]) <= {"updateJob"}, why  # heartbeats before the kill, if any
    assert set(paths[kill + 1 :]) == {"updateJob"} and len(paths) - kill - 1 >= 2, why  # heartbeat, final
    assert https_log.transitions_since(offset, panda_id) == [
        ("activated", "sent"), ("sent", "starting"), ("starting", "running"), ("running", "holding"),
    ], why  # fmt: skip
    job = bench.job(panda_id)
    assert (job["table"], job["jobStatus"]) == ("jobsactive4", "holding"), why
    assert job["commandToPilot"] == "tobekilled", why
    assert job["pilotErrorCode"] == 1144, why  # PANDAKILL "This job was killed by panda server"
    report = bench.output_report(panda_id)
    assert report["jobStatus"] == "failed", why

    summary = bench.run_adder()

    assert (summary.finished, summary.failed) == (0, 1), why
    job = bench.job(panda_id)
    assert (job["table"], job["jobStatus"]) == ("jobsarchived4", "failed"), why
    assert job["pilotErrorCode"] == 1144 and job["taskBufferErrorCode"], why
    log_row = bench.log_file(panda_id)
    staged = bench.staged(log_row["scope"], log_row["lfn"])
    out = payload_stdout(staged)
    assert "payload sleeps" in out and "payload woke up" not in out, out
    # 3.7 races two threads for the final update after a kill: when its job monitor wins, the
    # update carries no file report (and its queue monitor then idles ~2 min, hence `watch`).
    reported = json.loads(report["data"] or "{}")
    if log_row["lfn"] in reported:
        assert_matches_file(log_row, staged)
    else:
        assert log_row["status"] == "failed", log_row
    print(f"\nreal pilot (kill): {run.elapsed:.1f} s, stopped={run.stopped}, log reported="
          f"{log_row['lfn'] in reported}; requests: {[str(c) for c in calls]}")  # fmt: skip
