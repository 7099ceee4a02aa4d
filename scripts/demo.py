"""A small demo workload for the local grid: submit, activate, run with our pilots, show statuses.

Jobs go to the default queues as the local user (var/pki/user.proxy) with the classic Client API;
one pilot per queue (var/pki/pilot.proxy, home under var/pilots, output in var/log/pilot-<queue>.log)
runs that queue's jobs, then the Adder finishes them. Until the pilot factory lands, these
hand-started pilots are what runs jobs in `make run`.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from client import api
from client.config import ClientConfig
from panda_server.protocol.jobspec import FileSpec, JobSpec

SITES = ("ANALY_CLOUDA_T1", "ANALY_CLOUDA_T2_1", "ANALY_CLOUDB_T1")
ROOT = Path(__file__).resolve().parent.parent
PILOT_TIMEOUT = 300  # s for all demo pilots together


def demo_jobs() -> list[JobSpec]:
    jobs = []
    for i, site in enumerate(SITES * 2):
        job = JobSpec(jobName=f"demo.{uuid.uuid4().hex[:8]}.{i}", transformation="/bin/echo",
                      jobParameters=f"hello from demo job {i}", prodSourceLabel="user", computingSite=site,
                      destinationSE=site, AtlasRelease="NULL")  # fmt: skip
        job.add_file(FileSpec(lfn="user.demo.$PANDAID.log.tgz", type="log", dataset="user.demo.log",
                              scope="user.demo", destinationDBlock="user.demo.log", GUID=str(uuid.uuid4())))  # fmt: skip
        jobs.append(job)
    return jobs


def main(env: Mapping[str, str]) -> int:
    pki = env["PANDA_PKI_DIR"]
    config = ClientConfig(url="http://localhost:25080/server/panda", url_ssl="https://localhost:25443/server/panda",
                          proxy=f"{pki}/user.proxy", ca_dir=f"{pki}/ca")  # fmt: skip
    status, submitted = api.submitJobs(demo_jobs(), config)
    if status != 0:
        print("demo: submission failed; see var/log/server-https.log")
        return 1
    ids = [pid for pid, _, _ in submitted]
    print(f"==> submitted {len(ids)} demo jobs: PandaIDs {ids[0]}..{ids[-1]}")
    for _ in range(30):  # the setupper runs every 5 s
        status, jobs = api.getJobStatus(ids, config)
        if status == 0 and all(j is not None and j.jobStatus != "defined" for j in jobs):
            break
        time.sleep(1)
    run_pilots(env, sorted({j.computingSite for j in jobs if j is not None and j.jobStatus == "activated"}))
    for _ in range(60):  # the adder runs every 5 s
        status, jobs = api.getJobStatus(ids, config)
        if status == 0 and all(j is not None and j.jobStatus in ("finished", "failed") for j in jobs):
            break
        time.sleep(1)
    for job in jobs or []:
        print(f"    PandaID={job.PandaID} {job.jobStatus:10} site={job.computingSite} {job.jobName}")
    done = sum(1 for j in jobs or [] if j is not None and j.jobStatus == "finished")
    print(f"==> {done} of {len(ids)} demo jobs finished")
    return 0 if done == len(ids) else 1


def run_pilots(env: Mapping[str, str], queues: list[str]) -> None:
    """One of our pilots per queue, each running every job its queue has, in parallel."""
    pki, var = env["PANDA_PKI_DIR"], ROOT / "var"
    (var / "pilots").mkdir(parents=True, exist_ok=True)
    procs = []
    for queue in queues:
        argv = [sys.executable, "-m", "pilot", "-q", queue, "--url", "https://localhost:25443",
                "--proxy", f"{pki}/pilot.proxy", "--ca-dir", f"{pki}/ca", "-a", str(var / "pilots"),
                "--max-jobs", "20", "-v", "1", "--min-free-mb", "500"]  # fmt: skip
        with open(var / "log" / f"pilot-{queue}.log", "ab") as out:
            procs.append((queue, subprocess.Popen(argv, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, start_new_session=True)))  # fmt: skip
        print(f"==> pilot for {queue} started (log var/log/pilot-{queue}.log)", flush=True)
    deadline = time.monotonic() + PILOT_TIMEOUT
    for queue, proc in procs:
        try:
            proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=60)
        print(f"    pilot for {queue} exited with {proc.returncode}")
