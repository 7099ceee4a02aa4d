"""Stage-in and stage-out of one job through the copy tools, as the queue's policy says.

Stage-in: each input's source is its replica on the job's DDM endpoint (read_lan protocol +
Rucio path); with direct access allowed by the queue (direct_access_lan) and asked by the job
(transferType=direct or --accessmode=direct), root:// inputs are not copied: the payload gets
their TURLs instead (reference/pilot.md §9). Stage-out: outputs to write_lan of ddmEndPointOut
(the queue's DDM endpoint when the job names none) at the deterministic path. Files already
transferred (recorded in the job state) are skipped, which is what makes recovery re-runnable.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pilot import copytools, infosys
from pilot.copytools.base import FileTransfer, TransferContext, TransferPolicy
from pilot.errors import PilotFailure
from pilot.job import Job, OutFile

log = logging.getLogger("pilot.transfers")
NO_DIRECT_READ = (".tar.gz", ".lib.tgz", ".tgz")


def policy(cfg: Mapping[str, Any]) -> TransferPolicy:
    return TransferPolicy(attempts=cfg["transfer_attempts"], backoff=cfg["transfer_backoff"],
                          timeout_fixed=cfg.get("transfer_timeout"))  # fmt: skip


def context(cfg: Mapping[str, Any], should_abort: Callable[[], bool]) -> TransferContext:
    return TransferContext(proxy=cfg.get("proxy"), ca_dir=cfg.get("ca_dir"), should_abort=should_abort)


def _ddm(name: str, qd: Mapping[str, Any]) -> str:
    return name or qd.get("ddm") or infosys.first((qd.get("astorages") or {}).get("default", []))


def stage_in(
    job: Job, jobdir: Path, cfg: Mapping[str, Any], should_abort: Callable[[], bool]
) -> dict[str, str]:
    """Copy the inputs into the job dir; returns {lfn: TURL} of the inputs read directly."""
    qd, ddmconf = cfg["queuedata"], cfg["ddmconf"]
    direct = infosys.direct_access(qd) and job.access_mode == "direct"
    turls: dict[str, str] = {}
    todo = []
    for f in job.inputs:
        source = infosys.surl(ddmconf, _ddm(f.ddmendpoint, qd), f.scope, f.lfn, "in")
        if direct and source.startswith("root://") and not f.lfn.endswith(NO_DIRECT_READ):
            turls[f.lfn] = source
            continue
        todo.append(FileTransfer(f.lfn, source, str(jobdir / f.lfn), f.fsize, f.checksum))
    limit_mb = int(qd.get("maxinputsize") or 0)
    total = sum(t.fsize or 0 for t in todo)
    if limit_mb and total > limit_mb * 1024 * 1024:
        raise PilotFailure(
            1168, f"inputs to copy total {total / 1e6:.1f} MB, above the queue's maxinputsize {limit_mb} MB"
        )
    if todo:
        results = copytools.stage_in(infosys.copytools(qd, "in"), todo, policy=policy(cfg),
                                     context=context(cfg, should_abort))  # fmt: skip
        for r in results:
            log.info("stage-in %s from %s with %s: %d bytes adler32 %s (%d attempts)",
                     r.lfn, r.source, r.tool, r.fsize, r.adler32, r.attempts)  # fmt: skip
    for lfn, turl in turls.items():
        log.info("direct read of %s: the payload gets %s", lfn, turl)
    return turls


def stage_out(job: Job, jobdir: Path, cfg: Mapping[str, Any], files: list[OutFile], done: dict[str, Any],
              should_abort: Callable[[], bool], on_file: Callable[[str, dict[str, Any]], None]) -> None:  # fmt: skip
    """Copy `files` from the job dir to their SE, skipping those in `done`; on_file records each."""
    qd, ddmconf = cfg["queuedata"], cfg["ddmconf"]
    for f in files:
        if f.lfn in done:
            continue
        if (jobdir / f.lfn).is_symlink():
            # a link would ship whatever it points at (/proc/self/fd/N: the wrapper's own proxy)
            raise PilotFailure(
                1165, f"stage-out of {f.lfn}: it is a symbolic link, not a file the payload wrote"
            )
        ddm = _ddm(f.ddmendpoint, qd)
        destination = infosys.surl(ddmconf, ddm, f.scope, f.lfn, "log" if f.is_log else "out")
        tools = infosys.copytools(qd, "log" if f.is_log else "out")
        transfer = FileTransfer(f.lfn, str(jobdir / f.lfn), destination)
        (r,) = copytools.stage_out(tools, [transfer], policy=policy(cfg), context=context(cfg, should_abort))
        log.info("stage-out %s to %s with %s: %d bytes adler32 %s (%d attempts)",
                 f.lfn, r.destination, r.tool, r.fsize, r.adler32, r.attempts)  # fmt: skip
        on_file(f.lfn, {"guid": f.guid, "fsize": r.fsize, "adler32": r.adler32, "surl": r.destination,
                        "endpoint": ddm})  # fmt: skip


def replace_lfns(job_pars: str, turls: Mapping[str, str]) -> str:
    """Hand direct-read inputs to the payload: each LFN in the arguments becomes its TURL.

    An LFN is replaced where it stands as a whole file name (not inside a longer name or path).
    """
    for lfn, turl in turls.items():
        job_pars = re.sub(rf"(?<![\w.\-/]){re.escape(lfn)}(?![\w.\-])", lambda _m, t=turl: t, job_pars)
    return job_pars
