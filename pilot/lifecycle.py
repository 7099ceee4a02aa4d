"""The pilot's life: queue data, job recovery, then getJob → run → report while allowed.

Classic pilot behaviour (reference/pilot.md §2): the pilot exits at once when the dispatcher has
no job (after `--getjobrequests` answers of StatusCode=20 in a row); it runs one job, or
several while the queue's `timefloor` (minutes) lasts or up to `--max-jobs`; before each getJob
it checks the local free space. One summary line per job goes to stdout.

Not classic: before anything of a job happens (job dir, wrapper), its specification is verified
against the signature the server made at submission (panda_server/protocol/signing.py) with
the server's public key, pinned by --job-key or fetched once at start-up; a job that does not
verify, or an unsigned one unless --unsigned-jobs allow, is reported failed at once with 1390.
Under identity switching (a queue with `glexec`, or a root pilot with --user-map) an unsigned job
is always refused: the payload's account is chosen by prodUserID, trusted only when signed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

from panda_server.protocol import signing
from pilot import errors, glexec, infosys, recovery, supervisor, workdir
from pilot import job as jobmod
from pilot.context import PilotContext
from pilot.errors import PilotFailure
from pilot.server import ServerError, cpu_mhz, memory_mb

log = logging.getLogger("pilot")
LABEL_OF_TYPE = {"analysis": "user", "production": "managed", "unified": "unified"}
BADJOBSIGNATURE = errors.CODES["BADJOBSIGNATURE"]


@dataclasses.dataclass(frozen=True)
class JobKey:
    """The server's public key that jobs are verified with, or why there is none."""

    key: signing.PublicKey | None
    source: str  # the --job-key file or the URL it came from
    problem: str = ""


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
    job_key = load_job_key(ctx)
    if job_key.key is None and (ctx.cfg.job_key or unsigned_policy(ctx) == "refuse"):
        print(f"pilot: cannot verify jobs: {job_key.problem}", file=sys.stderr, flush=True)
        return errors.exit_code(BADJOBSIGNATURE)
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
        results.append(run_one(ctx, job_dict, job_key))
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


def load_job_key(ctx: PilotContext) -> JobKey:
    """The pinned --job-key file, else the key the server publishes (fetched once per pilot)."""
    if ctx.cfg.job_key:
        source = ctx.cfg.job_key
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            return JobKey(None, source, f"cannot read --job-key {source}: {exc.strerror}")
    else:
        source = f"{ctx.server.url}/cache/jobsign-pub.pem"
        try:
            data = ctx.server.job_signing_key()
        except ServerError as exc:
            problem = f"{exc} (pin the key with --job-key FILE)"
            if unsigned_policy(ctx) == "allow":
                log.warning("no job-signing key: %s; only unsigned jobs can run", problem)
            return JobKey(None, source, problem)
    try:
        key = signing.load_public_key(data, source)
    except signing.SigningKeyError as exc:
        return JobKey(None, source, str(exc))
    log.info("jobs are verified with key %s from %s", signing.key_id(key), source)
    return JobKey(key, source)


def switches_identity(ctx: PilotContext) -> bool:
    """Would payloads run under their owner's account (the one decision is pilot.glexec.wanted)?"""
    return glexec.wanted(ctx.queuedata, ctx.cfg.user_map)


def unsigned_policy(ctx: PilotContext) -> str:
    """--unsigned-jobs, except under identity switching, which never runs unsigned jobs."""
    return "refuse" if switches_identity(ctx) else ctx.cfg.unsigned_jobs


def signature_refusal(
    verdict: signing.Verdict, *, unsigned_jobs: str, identity_switching: bool
) -> str | None:
    """None if a job with this verdict may run; else the diag of its 1390 refusal.

    A signature that does not verify is always refused; a missing one with --unsigned-jobs
    refuse, and under identity switching whatever --unsigned-jobs says: there prodUserID picks
    the payload's account, and an unsigned prodUserID could be anybody's.
    """
    if verdict.ok:
        return None
    if not verdict.unsigned:
        return verdict.reason
    if identity_switching:
        return (f"{verdict.reason} (payloads run here under their owner's account (identity switching), "
                "which only a signed prodUserID may choose: unsigned jobs are refused whatever "
                "--unsigned-jobs says)")  # fmt: skip
    if unsigned_jobs == "allow":
        return None
    return f"{verdict.reason} (the pilot runs unsigned jobs only with --unsigned-jobs allow)"


def check_signature(ctx: PilotContext, job_dict: dict[str, Any], job_key: JobKey) -> PilotFailure | None:
    """None if the job may run; else the 1390 failure that refuses it."""
    panda_id = job_dict.get("PandaID", "?")
    if job_key.key is None:
        unsigned = str(job_dict.get(signing.FIELD) or "NULL") == "NULL"
        verdict = signing.Verdict(False, f"cannot verify the signature: {job_key.problem}", unsigned=unsigned)
    else:
        verdict = signing.verify_reply(job_dict, job_key.key)
    switching = switches_identity(ctx)
    diag = signature_refusal(verdict, unsigned_jobs=ctx.cfg.unsigned_jobs, identity_switching=switching)
    if verdict.ok:
        log.info("PandaID=%s specification verified (key %s)", panda_id, signing.key_id(job_key.key))
        return None
    if diag is None:
        log.warning("PandaID=%s has no signature; running it because of --unsigned-jobs allow", panda_id)
        return None
    log.error("PandaID=%s refused: %s; signed fields as received: %s", panda_id, verdict.reason,
              signing.digests(signing.fields_of_reply(job_dict)))  # fmt: skip
    return PilotFailure(BADJOBSIGNATURE, diag)


def run_one(ctx: PilotContext, job_dict: dict[str, Any], job_key: JobKey) -> dict[str, Any]:
    t0 = time.monotonic()
    refusal = check_signature(ctx, job_dict, job_key)  # before the job dir, before the wrapper
    if refusal is not None:
        return _refuse(ctx, job_dict, refusal)
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
