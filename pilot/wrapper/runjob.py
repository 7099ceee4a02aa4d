"""The job wrapper: one job from setup to result, in a process of its own (classic RunJob.py).

The pilot forks it per job (`python -m pilot.wrapper <config>`), then only watches: it sends the
heartbeats and the final update, and passes kill requests through the job dir (KILL_REQUEST).
The wrapper never talks to the PanDA server. Its phases, recorded in the job state file:

    setup → stagein → running → stageout → done      (result: finished | failed | holding)

`holding` means the payload succeeded but its outputs or log could not be stored: the job dir is
kept for job recovery (`recover`), which re-runs only the stage-out of what is missing.

On a queue with `glexec` and a root pilot, the payload runs as the account its owner maps to
(pilot.glexec); the account is settled first, so that a job that cannot be switched fails (1391)
before anything is staged in or started.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pilot import credentials, glexec, infosys, probes, watchdog, workdir
from pilot.errors import PilotFailure
from pilot.job import Job, OutFile
from pilot.util import processes
from pilot.wrapper import payload, transfers, trf

log = logging.getLogger("pilot.wrapper")
STAGEOUT_CODES = frozenset({1137, 1152, 1172, 1333})  # failures a later pilot may recover from


class Outcome:
    """What the wrapper reports: the first error wins (pilot3 keeps an ordered list)."""

    def __init__(self) -> None:
        self.code, self.diag, self.trans_exit, self.exe_diag = 0, "", 0, ""
        self.timing: dict[str, float] = {}
        self.cpu, self.max_rss_kb = 0.0, 0
        self.account: glexec.Account | None = None  # the payload's account under identity switching

    def fail(self, code: int, diag: str) -> None:
        if self.code == 0:
            self.code, self.diag = code, diag
            log.warning("error %d: %s", code, diag)


def payload_env(
    job: Job, jobdir: Path, cfg: Mapping[str, Any], account: glexec.Account | None = None
) -> dict[str, str]:
    """Only what the payload needs, never a credential variable; from the queue's (unsigned) environ
    nothing of credentials.DENIED_QUEUE_ENV (PATH, BASH_ENV, LD_*, PYTHON*, …), which is dropped with a warning."""
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
    queue_env, refused = credentials.queue_environ(cfg["payload_environ"])
    if refused:
        log.warning("the queue's environ may not set %s: dropped from the payload's environment",
                    ", ".join(refused))  # fmt: skip
    env.update(queue_env)
    env.update(HOME=str(jobdir), TMPDIR=str(jobdir), PANDAID=str(job.PandaID), PanDA_TaskID=job.taskID,
               PILOT_HOME=cfg["pilot_home"], PILOT_WORK_DIR=str(jobdir), PANDA_SITE=cfg["queuedata"].get("siteid", ""),
               PANDA_QUEUE=cfg["queuedata"]["nickname"], ATHENA_CORE_NUMBER=str(job.coreCount))  # fmt: skip
    if account is not None:
        env.update(USER=account.name, LOGNAME=account.name)
    return credentials.without_credentials(env)


def run(job: Job, jobdir: Path, cfg: Mapping[str, Any]) -> dict[str, Any]:
    out = Outcome()
    should_abort = lambda: (jobdir / workdir.KILL_FILE).exists()  # noqa: E731
    try:
        _setup_stagein_payload(job, jobdir, cfg, out, should_abort)
    except PilotFailure as exc:
        # a transfer aborted by a kill request reports the kill's reason (1144, 1201, …)
        out.fail(*(workdir.kill_request(jobdir) or (exc.code, exc.diag)))
    if out.code == 0:
        _check_outputs(job, jobdir, out, out.account)
    # the log is stored even for a killed job (classic pilot): stage-out ignores kill requests
    return _stage_out_all(job, jobdir, cfg, out, _never, payload_ok=out.code == 0, done={})


def recover(job: Job, jobdir: Path, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Finish a job a gone pilot left: stage out what is missing, keep the earlier payload result."""
    state = workdir.read_state(jobdir)
    # the payload's outcome, recorded when stage-out began; unknown means it cannot be trusted
    earlier = state.get("payload_outcome")
    out = Outcome()
    if not isinstance(earlier, dict):
        earlier = {
            "ok": False,
            "code": 1156,
            "diag": "the payload's outcome was not recorded before the pilot died",
        }
    payload_ok = bool(earlier.get("ok"))
    if not payload_ok:
        out.fail(int(earlier.get("code") or 1156), str(earlier.get("diag", "")))
    out.trans_exit = int(earlier.get("trans_exit") or 0)
    out.timing = dict(earlier.get("timing") or {})
    files = state.get("files")
    return _stage_out_all(job, jobdir, cfg, out, _never, payload_ok=payload_ok,
                          done=dict(files) if isinstance(files, dict) else {})  # fmt: skip


def _setup_stagein_payload(
    job: Job, jobdir: Path, cfg: Mapping[str, Any], out: Outcome, should_abort
) -> None:
    t0 = time.monotonic()
    account = out.account = glexec.target(job.raw.get("prodUserID", ""), cfg)
    if account is not None:
        glexec.prepare(jobdir, account)
        log.info("the payload will run as %s (uid %d, gid %d), mapped from %s", account.name, account.uid,
                 account.gid, job.raw.get("prodUserID"))  # fmt: skip
    env = payload_env(job, jobdir, cfg, account)
    workdir.update_state(jobdir, phase="stagein")
    turls = transfers.stage_in(job, jobdir, cfg, should_abort)
    out.timing["stagein"] = time.monotonic() - t0
    _abort_if_asked(jobdir)
    job_pars = transfers.replace_lfns(job.jobPars, turls)
    cmd = trf.command(job, jobdir, cfg, job_pars, env.get("PATH", ""), should_abort)
    _abort_if_asked(jobdir)
    workdir.update_state(jobdir, phase="running", command=cmd)
    if account is not None:
        glexec.open_to_payload(jobdir, [f.lfn for f in job.inputs], ("payload.stdout", "payload.stderr"))
    t1 = time.monotonic()
    try:
        result = payload.run_payload(
            cmd, cwd=jobdir, env=env, stdout_path=jobdir / "payload.stdout", stderr_path=jobdir / "payload.stderr",
            walltime=_walltime(job, cfg), should_kill=lambda: workdir.kill_request(jobdir),
            on_start=lambda pid: workdir.update_state(jobdir, payload_pid=pid, payload_start=time.time(),
                                                      payload_start_ticks=_start_ticks(pid),
                                                      payload_uid=account.uid if account else None),
            poll=0.5, grace=cfg["kill_grace"], monitor=_monitor(job, jobdir, cfg), account=account,
            adopt_orphans=processes.is_subreaper(),  # the job wrapper: see pilot.wrapper.__main__
        )  # fmt: skip
    finally:
        if account is not None:
            glexec.close_to_payload(jobdir)
    out.timing["payload"] = time.monotonic() - t1
    out.cpu, out.max_rss_kb = result.cpu_seconds, result.max_rss_kb
    code, out.trans_exit, diag = payload.interpret(result, _tail(jobdir / "payload.stderr"))
    if code:
        out.fail(code, diag)
        out.exe_diag = diag if code == 1305 else ""


def _never() -> bool:
    return False


def _start_ticks(pid: int) -> int | None:
    info = processes.proc_info(pid)
    return info.start if info else None


def _abort_if_asked(jobdir: Path) -> None:
    request = workdir.kill_request(jobdir)
    if request:
        raise PilotFailure(*request)


def _walltime(job: Job, cfg: Mapping[str, Any]) -> float | None:
    limits = [
        x
        for x in (job.maxWalltime, infosys.number(cfg["queuedata"].get("maxtime")), cfg.get("lifetime_left"))
        if x
    ]
    return float(min(limits)) if limits else None


def _monitor(job: Job, jobdir: Path, cfg: Mapping[str, Any]):
    """The job monitor run beside the payload: memory every poll, the rest every check_interval."""
    limits = watchdog.limits_for(job.minRamCount, cfg["queuedata"], looping_limit=cfg.get("looping_limit"),
                                 max_cpu_count=job.maxCpuCount, analysis=job.is_analysis)  # fmt: skip
    last = {"check": time.monotonic()}

    def check(sample: payload.PayloadSample) -> tuple[int, str] | None:
        verdict = watchdog.memory(sample.rss_kb, limits)
        if verdict or time.monotonic() - last["check"] < cfg["check_interval"]:
            return verdict
        last["check"] = time.monotonic()
        now = time.time()
        watch = watchdog.WatchSample(
            newest_mtime=probes.newest_mtime(jobdir), payload_start=now - sample.wall_seconds,
            workdir_bytes=probes.dir_size(jobdir), free_bytes=probes.free_bytes(jobdir), rss_kb=sample.rss_kb,
            stdout_bytes=probes.file_size(jobdir / "payload.stdout"),
        )  # fmt: skip
        return watchdog.check_all(watch, limits, now)

    return check


def _check_outputs(job: Job, jobdir: Path, out: Outcome, account: glexec.Account | None = None) -> None:
    """Each output a regular file in the job dir (a link could make stage-out ship any file the pilot
    can read, its proxy included); under identity switching, one the payload's account wrote."""
    sizes = {}
    for f in job.outputs:
        if f.is_log:
            continue
        path = jobdir / f.lfn
        st = workdir.regular_file(path)
        if st is None:
            what = (
                "is not a regular file (a link?)"
                if path.is_symlink() or path.exists()
                else "was not produced"
            )
            out.fail(1165, f"the payload's output {f.lfn} {what} in {jobdir}")
            return
        if account is not None and st.st_uid != account.uid:
            out.fail(
                1165,
                f"the output {f.lfn} belongs to uid {st.st_uid}, not to the payload's account {account.name}",
            )
            return
        sizes[f.lfn] = st.st_size
    verdict = watchdog.output_sizes(sizes, watchdog.Limits())
    if verdict:
        out.fail(*verdict)


def _stage_out_all(job: Job, jobdir: Path, cfg: Mapping[str, Any], out: Outcome, should_abort,
                   *, payload_ok: bool, done: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Store outputs (after a good payload) and the log; `done` = files already stored."""
    t0 = time.monotonic()
    outcome = {"ok": payload_ok, "code": out.code, "diag": out.diag[:500], "trans_exit": out.trans_exit,
               "timing": out.timing}  # fmt: skip
    workdir.update_state(jobdir, phase="stageout", payload_outcome=outcome, payload_pid=None, files=done)

    def record(lfn: str, entry: dict[str, Any]) -> None:
        done[lfn] = entry
        workdir.update_state(jobdir, files=done)

    outputs = [f for f in job.outputs if not f.is_log] if payload_ok else []
    stageout_error = _try_stage_out(job, jobdir, cfg, outputs, done, should_abort, record)
    if job.log is not None:
        uid = out.account.uid if out.account else workdir.read_state(jobdir).get("payload_uid")
        log_error = _stage_out_log(job, jobdir, cfg, job.log, done, should_abort, record,
                                   payload_uid=uid if isinstance(uid, int) else None)  # fmt: skip
        stageout_error = stageout_error or log_error
    if stageout_error:
        out.fail(*stageout_error)
    out.timing["stageout"] = out.timing.get("stageout", 0) + time.monotonic() - t0
    keep = payload_ok and out.code in STAGEOUT_CODES and infosys.truthy(cfg["queuedata"].get("retry", True))
    state = "holding" if keep else ("finished" if out.code == 0 else "failed")
    report = {lfn: done[lfn] for lfn in done}
    return {"state": state, "pilotErrorCode": out.code, "pilotErrorDiag": out.diag[:500],
            "transExitCode": out.trans_exit, "exeErrorCode": out.trans_exit, "exeErrorDiag": out.exe_diag[:500],
            "timing": out.timing, "cpuConsumptionTime": int(out.cpu), "maxRSS": out.max_rss_kb,
            "xml": report}  # fmt: skip


def _try_stage_out(
    job, jobdir, cfg, files: list[OutFile], done, should_abort, record
) -> tuple[int, str] | None:
    try:
        transfers.stage_out(job, jobdir, cfg, files, done, should_abort, record)
    except PilotFailure as exc:
        return exc.code, exc.diag
    return None


def _stage_out_log(job, jobdir, cfg, log_file: OutFile, done, should_abort, record, *,
                   payload_uid: int | None) -> tuple[int, str] | None:  # fmt: skip
    """`payload_uid`: the account a switched payload ran as (a recovery reads it from the state file)."""
    if log_file.lfn not in done:
        try:
            workdir.make_log_tarball(jobdir, log_file.lfn, cfg["queuedata"]["nickname"], job.PandaID,
                                     exclude={f.lfn for f in (*job.inputs, *job.outputs)}, payload_uid=payload_uid,
                                     pilot_files={trf.fetched_name(job.transformation)} - {""})  # fmt: skip
        except OSError as exc:
            return 1320, f"cannot create the log tarball {log_file.lfn}: {exc}"
    return _try_stage_out(job, jobdir, cfg, [log_file], done, should_abort, record)


def _tail(path: Path, limit: int = 2048) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
