"""A small demo workload for the local grid: submit, let the setupper activate, show statuses.

Jobs go to the default queues as the local user (var/pki/user.proxy) with the classic Client API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

from client import api
from client.config import ClientConfig
from panda_server.protocol.jobspec import FileSpec, JobSpec

SITES = ("ANALY_CLOUDA_T1", "ANALY_CLOUDA_T2_1", "ANALY_CLOUDB_T1")


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
    for job in jobs or []:
        print(f"    PandaID={job.PandaID} {job.jobStatus:10} site={job.computingSite} {job.jobName}")
    return 0
