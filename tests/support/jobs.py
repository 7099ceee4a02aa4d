"""Build jobs the way submitters do, for tests and benchmarks."""

from __future__ import annotations

import uuid

from panda_server.protocol.jobspec import FileSpec, JobSpec


def simple_job(
    site: str = "CLOUDA_T1",
    *,
    label: str = "managed",
    priority: int = 100,
    transformation: str = "/bin/echo",
    params: str = "hello",
    with_log: bool = True,
    outputs: int = 0,
    **attrs,
) -> JobSpec:
    job = JobSpec(
        jobName=f"test.{uuid.uuid4().hex[:12]}", transformation=transformation, jobParameters=params,
        prodSourceLabel=label, computingSite=site, assignedPriority=priority, currentPriority=priority,
        AtlasRelease="NULL", destinationSE=site, prodDBlock="NULL", cloud="CLOUDA", **attrs,
    )  # fmt: skip
    for i in range(outputs):
        job.add_file(FileSpec(lfn=f"out{i}.$PANDAID.root", type="output", dataset="test.out", scope="test",
                              destinationDBlock="test.out", GUID=str(uuid.uuid4())))  # fmt: skip
    if with_log:
        job.add_file(FileSpec(lfn="log.$PANDAID.job.log.tgz", type="log", dataset="test.log", scope="test",
                              destinationDBlock="test.log", GUID=str(uuid.uuid4())))  # fmt: skip
    return job
