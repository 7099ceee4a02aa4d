"""The pilot's life: queue data, job recovery, then getJob → run → report while allowed.

Classic pilot behaviour (reference/pilot.md §2): the pilot exits at once when the dispatcher has
no job (after `--getjobrequests` answers of StatusCode=20 in a row); it runs one job, or
several while the queue's `timefloor` (minutes) lasts or up to `--max-jobs`; before each getJob
it checks the local free space. One summary line per job goes to stdout.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from typing import Any

from pilot import errors, infosys, recovery, supervisor, workdir
from pilot import job as jobmod
from pilot.context import PilotContext
from pilot.errors import PilotFailure
from pilot.server import ServerError, cpu_mhz, memory_mb

log = logging.getLogger("pilot")
LABEL_OF_TYPE = {"analysis": "user", "production": "managed", "unified": "unified"}


def install_signal_handlers(ctx: PilotContext) -> None:
    """A batch system's signal ends the pilot gracefully: the job is killed and reported."""

    def handler(signum: int, _frame: Any) -> None:
        ctx.stop_signal = signum
        ctx.stop_reason = (errors.signal_error(signum), f"pilot got signal {signal.Signals(signum).name}")
        ctx.stop.set()

    for signum in errors.CAUGHT_SIGNALS:
        signal.signal(signum, handler)


def run(ctx: PilotContext) -> int:
    """Returns the pilot's exit code."""
    if ctx.cfg.recovery:
        recovered = recovery.run(ctx)
        if recovered:
            log.info("recovered %d job(s) left by earlier pilots", recovered)
    results: list[dict[str, Any]] = []
    while not ctx.stop.is_set():
        free_mb = _free_mb(ctx)
        if free_mb < ctx.cfg.min_free_mb:
            log.error(
                "only %.0f MB free in %s, need %.0f MB: not asking for a job",
                free_mb,
                ctx.home,
                ctx.cfg.min_free_mb,
            )
            return errors.exit_code(1098)
        try:
            job_dict = get_job(ctx, free_mb)
        except ServerError as exc:
            log.error("cannot get a job from %s: %s", ctx.cfg.url, exc)
            return errors.EXIT_COMMUNICATION
        if job_dict is None:
            break
        results.append(run_one(ctx, job_dict))
        if not _another_job(ctx, len(results)):
            break
    if not results:
        print(f"pilot: no job for queue {ctx.cfg.queue} (no jobs in PanDA after {ctx.cfg.getjob_requests} requests)",
              flush=True)  # fmt: skip
        return errors.EXIT_NO_JOBS
    if ctx.stop_signal:
        return 128 + ctx.stop_signal  # the shell convention for "ended by signal n"
    failed = [r for r in results if r["state"] != "finished"]
    return errors.exit_code(failed[-1]["pilotErrorCode"] or 1008) if failed else errors.EXIT_OK


def get_job(ctx: PilotContext, free_mb: float) -> dict[str, Any] | None:
    """getJob until a job comes, at most --getjobrequests times; None when there is none."""
    qd, cfg = ctx.queuedata, ctx.cfg
    label = cfg.prod_source_label or LABEL_OF_TYPE.get(str(qd.get("type")), "managed")
    maxwdir = infosys.number(qd.get("maxwdir")) or free_mb
    fields = {"siteName": ctx.site, "computingElement": cfg.queue, "prodSourceLabel": label,
              "diskSpace": int(min(free_mb, maxwdir)), "workingGroup": cfg.working_group, "cpu": f"{cpu_mhz():.3f}",
              "mem": f"{memory_mb():.1f}", "node": ctx.node, "allowOtherCountry": False}  # fmt: skip
    if cfg.scheduler_id:
        fields["schedulerID"] = cfg.scheduler_id
    if cfg.resource_type:
        fields["resourceType"] = cfg.resource_type
    for attempt in range(1, cfg.getjob_requests + 1):
        reply = ctx.server.get_job(fields)
        code = str(reply.get("StatusCode"))
        if code == "0":
            return reply
        if code != "20":
            raise ServerError(f"getJob refused: StatusCode={code} {reply.get('errorDialog', '')}".strip())
        log.info("no job for %s (label %s), attempt %d/%d", cfg.queue, label, attempt, cfg.getjob_requests)
        if attempt < cfg.getjob_requests and ctx.stop.wait(cfg.getjob_sleep * random.uniform(1.0, 1.5)):
            return None
    return None


def run_one(ctx: PilotContext, job_dict: dict[str, Any]) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        job = jobmod.parse(job_dict)
    except PilotFailure as exc:
        log.error("unusable job from getJob: %s", exc)
        return _refuse(ctx, job_dict, exc)
    jobdir = workdir.job_dir(ctx.home, job.PandaID)
    try:
        jobdir.mkdir(mode=0o755)
        workdir.write_json(jobdir / workdir.JOB_FILE, job_dict)
    except OSError as exc:  # disk full, or the same job twice
        return _refuse(ctx, job_dict, PilotFailure(1199, f"cannot create the job dir {jobdir}: {exc}"))
    log.info("PandaID=%s got job: %s %s", job.PandaID, job.transformation, job.jobPars[:200])
    with workdir.locked(jobdir):
        result = supervisor.run_job(ctx, job, jobdir)
        result["timing"]["getjob"] = 0
        delivered = supervisor.send_final(ctx, job, result)
        keep = result["state"] == "holding" or not delivered
        if keep:
            supervisor.keep_for_recovery(ctx, jobdir)
        elif ctx.cfg.cleanup:
            workdir.remove(jobdir)
    _summary(job, result, time.monotonic() - t0, kept=keep)
    return result


def _refuse(ctx: PilotContext, job_dict: dict[str, Any], exc: PilotFailure) -> dict[str, Any]:
    """Report a job the pilot cannot even read as failed, so that it does not wait for the watcher."""
    result = {"state": "failed", "pilotErrorCode": exc.code, "pilotErrorDiag": exc.diag, "xml": {}}
    panda_id, attempt = str(job_dict.get("PandaID", "")), str(job_dict.get("attemptNr", "1"))
    if panda_id.isdigit():
        fields = {**supervisor.common_fields(ctx, int(panda_id), int(attempt) if attempt.isdigit() else 1),
                  "state": "failed", "pilotErrorCode": exc.code, "pilotErrorDiag": exc.diag[:500]}  # fmt: skip
        ctx.server.update_job_retrying(fields, attempts=ctx.cfg.update_attempts, interval=ctx.cfg.update_interval,
                                       should_stop=ctx.stop.is_set)  # fmt: skip
    print(f"pilot: PandaID={panda_id or '?'} failed pilotErrorCode={exc.code} diag={exc.diag!r}", flush=True)
    return result


def _summary(job: jobmod.Job, result: dict[str, Any], seconds: float, *, kept: bool) -> None:
    t = result.get("timing", {})
    text = (f"pilot: PandaID={job.PandaID} {result['state']} pilotErrorCode={result['pilotErrorCode']}"
            f" transExitCode={result.get('transExitCode', 0)} stagein={t.get('stagein', 0):.1f}s"
            f" payload={t.get('payload', 0):.1f}s stageout={t.get('stageout', 0):.1f}s total={seconds:.1f}s")  # fmt: skip
    if result["pilotErrorCode"]:
        text += f" diag={result.get('pilotErrorDiag', '')!r}"
    if kept:
        text += " (job dir kept for job recovery)"
    print(text, flush=True)


def _another_job(ctx: PilotContext, n_jobs: int) -> bool:
    if ctx.cfg.max_jobs:
        return n_jobs < ctx.cfg.max_jobs
    timefloor = infosys.number(ctx.queuedata.get("timefloor")) * 60
    return time.time() - ctx.started < timefloor


def _free_mb(ctx: PilotContext) -> float:
    st = os.statvfs(ctx.home)
    return st.f_bavail * st.f_frsize / 1024 / 1024
