"""Job recovery (classic pilot JobRecovery.py, reference/pilot.md §7).

A job whose outputs could not be stored, or whose final update never reached the server, is
left in its job dir with its state file. A later pilot at the same site looks in the queue's
`recoverdir` and beside its own home for such dirs; it takes one only when its lock is free
(the owner is gone), its state is older than `recovery_age` (default two heartbeats), its
phase is stageout/done, and the server still shows the job `holding` at the same attemptNr.
It then re-runs the stage-out of what is missing (or just re-sends the final update), and
removes the dir. After `recovery_attempts` tries it reports the job failed with 1158.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from pilot import job as jobmod
from pilot import supervisor, workdir
from pilot.context import PilotContext
from pilot.errors import PilotFailure, message
from pilot.job import Job
from pilot.server import ServerError

log = logging.getLogger("pilot.recovery")
RECOVERABLE_PHASES = ("stageout", "done")
MAX_CANDIDATES = 500  # dirs looked at per pilot start
MAX_RECOVERIES = 20  # jobs recovered per pilot start
# server states in which a job whose final update never arrived can still be reported
STILL_OPEN = ("holding", "sent", "starting", "running")


def candidates(ctx: PilotContext) -> list[Path]:
    roots = [ctx.cfg.workdir.resolve()]
    if ctx.queuedata.get("recoverdir"):
        roots.insert(0, Path(str(ctx.queuedata["recoverdir"])))
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        patterns = (f"{workdir.JOB_DIR_PREFIX}*", f"{workdir.PILOT_HOME_PREFIX}*/{workdir.JOB_DIR_PREFIX}*")
        for pattern in patterns:
            found.extend(p for p in root.glob(pattern) if p.is_dir() and ctx.home not in p.parents)
    mine = os.getuid()
    return sorted(p for p in set(found) if _owner(p) == mine)[:MAX_CANDIDATES]


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def run(ctx: PilotContext) -> int:
    """Recover what can be recovered; returns the number of jobs finished off."""
    done = 0
    for jobdir in candidates(ctx):
        if ctx.stop.is_set() or done >= MAX_RECOVERIES:
            break
        with workdir.locked(jobdir, wait=False) as mine:
            if mine:
                done += _recover_one(ctx, jobdir)
    return done


def _recover_one(ctx: PilotContext, jobdir: Path) -> int:
    state = workdir.read_state(jobdir)
    found = _recoverable(ctx, jobdir, state)
    if found is None:
        return 0
    job, result, undelivered = found
    previous = workdir.read_json(jobdir / "recovery.json")
    tries = int(previous.get("attempts", 0) if isinstance(previous, dict) else 0) + 1
    workdir.write_json(jobdir / "recovery.json", {"attempts": tries, "by": str(ctx.home), "at": time.time()})
    log.info("PandaID=%s recovering job left in %s (attempt %d/%d)", job.PandaID, jobdir, tries,
             ctx.cfg.recovery_attempts)  # fmt: skip
    if tries > ctx.cfg.recovery_attempts:
        result = {**result, "state": "failed", "pilotErrorCode": 1158,
                  "pilotErrorDiag": f"{message(1158)} ({ctx.cfg.recovery_attempts})"}  # fmt: skip
    elif not undelivered:
        result = supervisor.run_job(ctx, job, jobdir, mode="recover")
    delivered = supervisor.send_final(ctx, job, result)
    if not delivered or result.get("state") == "holding":
        return 0  # the dir stays for the next pilot
    workdir.remove(jobdir)
    log.info(
        "PandaID=%s recovered: %s (pilotErrorCode=%s)", job.PandaID, result["state"], result["pilotErrorCode"]
    )
    return 1


def _recoverable(
    ctx: PilotContext, jobdir: Path, state: dict[str, Any]
) -> tuple[Job, dict[str, Any], bool] | None:
    """(job, earlier result, final update undelivered) for a dir to recover; None to leave it."""
    try:
        age = time.time() - float(state.get("updated", time.time()))
    except (TypeError, ValueError):
        return None
    if state.get("phase") not in RECOVERABLE_PHASES or age < ctx.cfg.recovery_min_age:
        return None
    if state.get("queue", ctx.cfg.queue) != ctx.cfg.queue:
        return None  # job recovery stays at the queue (site) where the job ran
    try:
        job = jobmod.parse(workdir.read_json(jobdir / workdir.JOB_FILE) or {})
        status, attempt = ctx.server.get_status(job.PandaID)
    except (PilotFailure, ServerError) as exc:
        log.warning("%s: cannot check the job for recovery: %s", jobdir, exc)
        return None
    result = state.get("result") if isinstance(state.get("result"), dict) else {}
    # a job whose final update never arrived may still be running at the server (the watcher
    # moves it to holding only after its heartbeat timeout): its report is still wanted
    undelivered = state["phase"] == "done" and result.get("state") in ("finished", "failed")
    if status not in (STILL_OPEN if undelivered else ("holding",)) or attempt != job.attemptNr:
        log.info("PandaID=%s is %s (attempt %s) at the server, not holding attempt %s: removing %s",
                 job.PandaID, status, attempt, job.attemptNr, jobdir)  # fmt: skip
        workdir.remove(jobdir)
        return None
    return job, result, undelivered
