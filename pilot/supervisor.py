"""The pilot's side of one job: fork the job wrapper, heartbeat, obey commands, final update.

The wrapper (pilot.wrapper) does the work; this loop only watches it, every half second:
  * the wrapper's phase decides the reported state: setup/stagein → `starting`,
    running/stageout → `running` (the first update is always `starting`, reference/pilot.md §2);
  * a `running` heartbeat every `heartbeat` seconds; each reply's `command` is obeyed:
    `tobekilled` → KILL_REQUEST 1144 (the wrapper kills the payload's process group, stages out
    the log and reports failed);
  * no successful update for `lost_heartbeat` seconds → the job is aborted (1317);
  * a wrapper that dies without a result → failed 1176, its payload's process tree killed.
Then the final update carries the result and the `xml` file report; once it is acknowledged
the job dir is removed. A `holding` result (outputs could not be stored) is reported as such
and the job dir is kept for job recovery; so is a result whose final update never got through.
The wrapper's environment has no credential variable; a concealed proxy reaches it only through
pilot.credentials.Handover, once it is non-dumpable.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pilot import credentials, workdir
from pilot.context import PilotContext
from pilot.errors import message
from pilot.job import Job
from pilot.server import ServerError
from pilot.util import processes

log = logging.getLogger("pilot.supervisor")
POLL = 0.5
STATE_OF_PHASE = {"setup": "starting", "stagein": "starting", "running": "running", "stageout": "running",
                  "done": "running"}  # fmt: skip
WRAPPER_EXIT_GRACE = 60.0  # s a wrapper may take after a kill request before it is killed itself


def run_job(ctx: PilotContext, job: Job, jobdir: Path, *, mode: str = "run") -> dict[str, Any]:
    """Run (or recover) one job whose dir exists and is locked by the caller; returns the result."""
    config_path = ctx.home / f"wrapper-{job.PandaID}.json"
    workdir.write_json(config_path, ctx.wrapper_config(jobdir, mode))  # mode 0600
    t0 = time.monotonic()
    argv = [sys.executable, "-m", "pilot.wrapper", str(config_path)]
    handover = credentials.Handover(ctx.credential) if ctx.credential.concealed else None
    try:
        if handover is not None:
            argv += ["--credential-socket", handover.name]
        proc = subprocess.Popen(argv, stdout=sys.stderr, stdin=subprocess.DEVNULL, cwd=jobdir,
                                env=credentials.without_credentials(os.environ))  # fmt: skip
        log.info("PandaID=%s job wrapper started (pid %d, %s)", job.PandaID, proc.pid, mode)
        if handover is not None:
            handover.give(proc.pid, lambda: proc.poll() is None)  # a refusal: the wrapper reports 1163
    finally:
        if handover is not None:
            handover.close()
    ctx.current_jobdir = jobdir
    try:
        if mode == "run":
            _watch(ctx, job, jobdir, proc)
        else:
            _wait(proc, jobdir, ctx)
    finally:
        ctx.current_jobdir = None
    result = workdir.read_state(jobdir).get("result")
    if proc.returncode != 0 or not result:
        result = _wrapper_died(jobdir, proc.returncode)
    result.setdefault("timing", {})["total"] = time.monotonic() - t0
    config_path.unlink(missing_ok=True)
    return result


def _watch(ctx: PilotContext, job: Job, jobdir: Path, proc: subprocess.Popen) -> None:
    cfg = ctx.cfg
    sent_state, last_sent, last_ok = "", 0.0, time.monotonic()
    started = time.monotonic()
    kill_asked: float | None = None
    while proc.poll() is None:
        phase = workdir.read_state(jobdir).get("phase", "setup")
        state = STATE_OF_PHASE.get(phase, "running")
        now = time.monotonic()
        if phase != "done" and (state != sent_state or now - last_sent >= cfg.heartbeat):
            last_sent, sent_state = now, state
            if _heartbeat(ctx, job, jobdir, state):
                last_ok = now
        if now - last_ok > cfg.lost_heartbeat:
            workdir.request_kill(jobdir, 1317, f"no update reached the server for {cfg.lost_heartbeat:.0f} s")
        if ctx.stop.is_set() and ctx.stop_reason:
            workdir.request_kill(jobdir, *ctx.stop_reason)
        if now - started > cfg.lifetime:
            workdir.request_kill(jobdir, 1213, f"the pilot's lifetime of {cfg.lifetime:.0f} s is over")
        # after a kill request the wrapper still stores the log (and, after a good payload, the
        # outputs): it is killed itself only if it hangs before stage-out, which has its own time-outs
        if workdir.kill_request(jobdir) and phase in ("setup", "stagein", "running"):
            kill_asked = kill_asked or now
            if now - kill_asked > WRAPPER_EXIT_GRACE + cfg.kill_grace:
                log.error("PandaID=%s job wrapper ignores the kill request: killing it", job.PandaID)
                _kill_wrapper(jobdir, proc)
        _pause(proc)
    if sent_state != "running" and workdir.read_state(jobdir).get("payload_start"):
        _heartbeat(ctx, job, jobdir, "running")  # a payload shorter than a poll: the server still sees it run


def _wait(proc: subprocess.Popen, jobdir: Path, ctx: PilotContext) -> None:
    deadline = time.monotonic() + ctx.cfg.lifetime
    while proc.poll() is None:
        if ctx.stop.is_set() and ctx.stop_reason:
            workdir.request_kill(jobdir, *ctx.stop_reason)
        if time.monotonic() > deadline:
            _kill_wrapper(jobdir, proc)
        _pause(proc)


def _pause(proc: subprocess.Popen) -> None:
    """Wait POLL seconds, or less when the wrapper exits (no lag after the job)."""
    try:
        proc.wait(timeout=POLL)
    except subprocess.TimeoutExpired:
        pass


def _heartbeat(ctx: PilotContext, job: Job, jobdir: Path, state: str) -> bool:
    fields = {**common_fields(ctx, job.PandaID, job.attemptNr, job.coreCount), "state": state}
    try:
        reply = ctx.server.update_job(fields)
    except ServerError as exc:
        log.warning("PandaID=%s %s update failed: %s", job.PandaID, state, exc)
        return False
    log.info("PandaID=%s sent %s, server command %s", job.PandaID, state, reply.get("command", "NULL"))
    for command in str(reply.get("command") or "NULL").split(","):
        obey(command.strip(), job, jobdir)
    return True


def obey(command: str, job: Job, jobdir: Path) -> None:
    """Back-channel commands in updateJob replies (reference/pilot.md §3.6)."""
    if command == "tobekilled":
        log.warning("PandaID=%s the server asks to kill the job", job.PandaID)
        workdir.request_kill(jobdir, 1144, message(1144))
    elif command not in ("", "NULL", "None"):
        log.info("PandaID=%s ignoring server command %r", job.PandaID, command)


def common_fields(ctx: PilotContext, panda_id: int, attempt_nr: int, core_count: int = 1) -> dict[str, Any]:
    """The fields every updateJob of a job carries."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return {"jobId": panda_id, "timestamp": now.isoformat(), "siteName": ctx.site, "node": ctx.node,
            "attemptNr": attempt_nr, "coreCount": core_count, "cpuConsumptionUnit": "s",
            **ctx.identity_fields()}  # fmt: skip


def final_fields(ctx: PilotContext, job: Job, result: dict[str, Any]) -> dict[str, Any]:
    timing = result.get("timing", {})
    pilot_timing = "|".join(str(int(timing.get(k, 0))) for k in ("getjob", "stagein", "payload", "stageout",
                                                                   "initialsetup", "setup"))  # fmt: skip
    fields = {**common_fields(ctx, job.PandaID, job.attemptNr, job.coreCount), "state": result["state"], "pilotErrorCode": result["pilotErrorCode"],
              "pilotErrorDiag": result.get("pilotErrorDiag", ""), "transExitCode": result.get("transExitCode", 0),
              "exeErrorCode": result.get("exeErrorCode", 0), "exeErrorDiag": result.get("exeErrorDiag", ""),
              "pilotTiming": pilot_timing, "endTime": f"{time.time():.2f}",
              "cpuConsumptionTime": result.get("cpuConsumptionTime", 0)}  # fmt: skip
    if result.get("maxRSS"):
        fields["maxRSS"] = result["maxRSS"]
    if result["state"] in ("finished", "failed"):
        fields["xml"] = json.dumps(result.get("xml") or {})
    return fields


def send_final(ctx: PilotContext, job: Job, result: dict[str, Any]) -> bool:
    """The final (or holding) update, retried; True once the server acknowledged it."""
    fields = final_fields(ctx, job, result)
    attempts = ctx.cfg.update_attempts if not ctx.stop.is_set() else 1
    reply = ctx.server.update_job_retrying(fields, attempts=attempts, interval=ctx.cfg.update_interval,
                                           should_stop=ctx.stop.is_set)  # fmt: skip
    if reply is None:
        log.error("PandaID=%s final update not delivered after %d attempts: job dir kept for recovery",
                  job.PandaID, attempts)  # fmt: skip
        return False
    log.info(
        "PandaID=%s final update %s acknowledged (%s)",
        job.PandaID,
        result["state"],
        reply.get("command", "NULL"),
    )
    return True


def _kill_payload_left(jobdir: Path) -> None:
    """Kill the payload a dead wrapper left, only if that pid is still the very process it started."""
    state = workdir.read_state(jobdir)
    pid, start = state.get("payload_pid"), state.get("payload_start_ticks")
    if not isinstance(pid, int) or not isinstance(start, int):
        return
    info = processes.proc_info(pid)
    if info is None or info.start != start:
        return  # gone, or the pid now belongs to another process: never touch it
    uid = state.get("payload_uid")  # the account of a switched payload (root pilot only)
    processes.kill_tree(pid, pid, grace=5.0, known={pid: start}, uid=uid if isinstance(uid, int) else None)


def _wrapper_died(jobdir: Path, returncode: int | None) -> dict[str, Any]:
    state = workdir.read_state(jobdir)
    _kill_payload_left(jobdir)
    diag = f"job wrapper exited with {returncode} in phase {state.get('phase', 'setup')} without a result"
    log.error("%s: %s", jobdir.name, diag)
    return {
        "state": "failed",
        "pilotErrorCode": 1176,
        "pilotErrorDiag": diag,
        "xml": state.get("files") or {},
    }


def _kill_wrapper(jobdir: Path, proc: subprocess.Popen) -> None:
    proc.kill()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # stuck in the kernel (D state): nothing more we can do
        log.error("%s: job wrapper %d does not die", jobdir.name, proc.pid)
    _kill_payload_left(jobdir)


def keep_for_recovery(ctx: PilotContext, jobdir: Path) -> Path:
    """Leave the job dir where a later pilot looks: the queue's recoverdir, or where it is."""
    target_root = str(ctx.queuedata.get("recoverdir") or "")
    if not target_root:
        return jobdir
    target = Path(target_root) / jobdir.name
    try:
        Path(target_root).mkdir(parents=True, exist_ok=True)
        shutil.move(str(jobdir), str(target))
    except OSError as exc:
        log.error("cannot move %s to recoverdir %s: %s (left in place)", jobdir, target_root, exc)
        return jobdir
    log.info("job dir moved to %s for job recovery", target)
    return target
