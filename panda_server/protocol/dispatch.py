"""The getJob reply: a job as the pilot receives it (S25 jobdispatcher/Protocol.py appendJob).

List-valued fields are comma-joined and aligned by position: inFiles[i] ↔ GUID[i] ↔ fsize[i];
outFiles includes the log file, with realDatasets, destinationDblock, ddmEndPointOut and
fileDestinationSE aligned to it, while scopeOut lists only the non-log outputs (the pilot takes
the log's scope from scopeLog). Every value is a string; unset ones are "NULL".

Not classic: `jobSignature`, the server's signature of the job specification made at submission
(protocol/signing.py), which our pilot verifies before running anything; other pilots ignore it.
"""

from __future__ import annotations

from collections.abc import Mapping

from panda_server.protocol.jobspec import FileSpec, JobSpec, comma_join, wire_value

# getJob prodSourceLabel → job labels a pilot may receive (S25 construct_where_clause).
LABEL_MAP: Mapping[str, tuple[str, ...]] = {
    "managed": ("managed", "test", "prod_test", "install"),
    "user": ("user", "panda", "install"),
    "test": ("test", "prod_test", "install"),
    "unified": ("managed", "test", "prod_test", "install", "user", "panda"),
}


def eligible_labels(pilot_label: str | None, queue_status: str | None = None) -> tuple[str, ...]:
    label = pilot_label if pilot_label not in (None, "", "NULL") else "managed"
    if queue_status == "test" and label in ("user", "managed", "unified"):
        label = "test"  # S25: a queue in test status only runs test jobs
    return LABEL_MAP.get(label, (label,))


def _checksum(f: FileSpec) -> str:
    if f.checksum:
        return f.checksum
    return f"md5:{f.md5sum}" if f.md5sum else "NULL"


def job_reply(
    job: JobSpec, *, ddm_endpoint: str = "", n_sent: int = 0, signature: str | None = None
) -> dict[str, str]:
    """Flat dict for one dispatched job (without StatusCode); `signature` as stored with the job."""
    inputs: list[FileSpec] = []
    seen: set[str] = set()
    for f in job.files_of_type("input"):
        if f.lfn not in seen:  # duplicate input LFNs are collapsed
            seen.add(f.lfn)
            inputs.append(f)
    outputs = job.files_of_type("output")
    logs = job.files_of_type("log")
    outs = outputs + logs
    endpoint = ddm_endpoint or "NULL"
    reply = {
        "PandaID": job.PandaID, "prodSourceLabel": job.prodSourceLabel, "swRelease": job.AtlasRelease,
        "homepackage": job.homepackage, "transformation": job.transformation, "jobName": job.jobName,
        "jobDefinitionID": job.jobDefinitionID, "cloud": job.cloud,
        "inFiles": comma_join(f.lfn for f in inputs),
        "dispatchDblock": comma_join(f.dispatchDBlock for f in inputs),
        "dispatchDBlockToken": comma_join(f.dispatchDBlockToken for f in inputs),
        "prodDBlocks": comma_join(f.prodDBlock for f in inputs),
        "prodDBlockToken": comma_join(f.prodDBlockToken for f in inputs),
        "realDatasetsIn": comma_join(f.dataset for f in inputs),
        "GUID": comma_join(f.GUID for f in inputs),
        "fsize": comma_join(f.fsize for f in inputs),
        "checksum": ",".join(_checksum(f) for f in inputs),
        "scopeIn": comma_join(f.scope for f in inputs),
        "ddmEndPointIn": ",".join(endpoint for _ in inputs),
        "outFiles": comma_join(f.lfn for f in outs),
        "destinationDblock": comma_join(f.destinationDBlock for f in outs),
        "destinationDBlockToken": comma_join(f.destinationDBlockToken for f in outs),
        "dispatchDBlockTokenForOut": comma_join(f.dispatchDBlockToken for f in outs),
        "prodDBlockTokenForOutput": comma_join(f.prodDBlockToken for f in outs),
        "realDatasets": comma_join(f.dataset for f in outs),
        "fileDestinationSE": comma_join(f.destinationSE or job.destinationSE for f in outs),
        "ddmEndPointOut": ",".join(endpoint for _ in outs),
        "scopeOut": comma_join(f.scope for f in outputs),
        "scopeLog": wire_value(logs[0].scope) if logs else "NULL",
        "logFile": wire_value(logs[0].lfn) if logs else "NULL",
        "logGUID": wire_value(logs[0].GUID) if logs else "NULL",
        "jobPars": job.jobParameters if job.jobParameters is not None else "",
        "attemptNr": job.attemptNr, "destinationSE": job.destinationSE, "prodUserID": job.prodUserID,
        "maxCpuCount": job.maxCpuCount or 0, "minRamCount": job.minRamCount or 0,
        "maxDiskCount": job.maxDiskCount or 0, "maxWalltime": job.maxWalltime,
        "cmtConfig": job.cmtConfig, "processingType": job.processingType, "transferType": job.transferType,
        "sourceSite": job.sourceSite, "currentPriority": job.currentPriority, "taskID": job.taskID,
        "jobsetID": job.jobsetID, "nucleus": job.nucleus, "coreCount": job.coreCount or 1,
        "reqID": job.reqID, "resource_type": job.resource_type, "container_name": job.container_name,
        "nSent": n_sent, "jobSignature": signature,
    }  # fmt: skip
    return {k: v if isinstance(v, str) else wire_value(v) for k, v in reply.items()}
