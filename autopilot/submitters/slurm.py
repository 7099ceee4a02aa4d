"""The `slurm` submitter: one `sbatch` per pilot, states from `squeue --json`, `scancel`.

Each pilot gets a batch script of its own, kept as `<log_dir>/<tpid>.sh` for operators to read:
`#SBATCH` lines from the queue (partition, memory, walltime), then a clean environment (the
factory's own, its database URL say, is never passed on) with the pilot's variables, then `exec`
of the wrapper. Its batch id is the Slurm job id.

Environment, measured on Slurm 22.05: with `--export=NONE` sbatch passes on only SLURM_*
variables, but slurmd then starts the script with the job user's *login* environment (it sets
SLURM_GET_USER_ENV=1 and runs the user's profile), so the script itself also drops everything but
SLURM_* and the account's HOME/USER/LOGNAME/TMPDIR before exporting ours.

States: without slurmdbd there is no sacct; squeue shows a finished job for MinJobAge seconds
(scripts/localslurm.py keeps it 10 minutes), after which its id is unknown and left out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from autopilot.submitters import commands
from autopilot.submitters.base import (
    BASE_ENV,
    BatchCommandError,
    BatchState,
    BatchStatus,
    PilotBatch,
    SubmitError,
    queue_environ,
)
from autopilot.submitters.commands import Runner

log = logging.getLogger("panda.autopilot")

KEEP_ENV = ("SLURM_*", "SLURMD_NODENAME", "HOME", "USER", "LOGNAME", "TMPDIR")  # from the job's start
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Slurm job states (squeue's job_state; 22.05 gives one string, newer versions a list of the base
# state and its flags). Flags are looked at first, in the order 22.05's job_state_string() gives
# them precedence, so RUNNING+COMPLETING is still running and PENDING+REQUEUED still queued.
FLAG_ORDER = ("COMPLETING", "STAGE_OUT", "CONFIGURING", "RESIZING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
              "SPECIAL_EXIT", "STOPPED", "REVOKED", "RESV_DEL_HOLD", "SIGNALING")  # fmt: skip
STATES: dict[str, BatchState] = {
    "PENDING": BatchState.queued,
    "CONFIGURING": BatchState.queued,  # nodes being readied: not started yet
    "REQUEUED": BatchState.queued,
    "REQUEUE_FED": BatchState.queued,
    "REQUEUE_HOLD": BatchState.queued,
    "SPECIAL_EXIT": BatchState.queued,  # requeued and held
    "RESV_DEL_HOLD": BatchState.queued,
    "SUSPENDED": BatchState.queued,
    "STOPPED": BatchState.queued,
    "RUNNING": BatchState.running,
    "COMPLETING": BatchState.running,  # the script ended; Slurm still cleans up (epilog)
    "STAGE_OUT": BatchState.running,
    "RESIZING": BatchState.running,
    "SIGNALING": BatchState.running,
    "COMPLETED": BatchState.done,
    "FAILED": BatchState.done,  # the script exited non-zero by itself (but see job_status)
    "CANCELLED": BatchState.failed,
    "TIMEOUT": BatchState.failed,
    "NODE_FAIL": BatchState.failed,
    "OUT_OF_MEMORY": BatchState.failed,
    "PREEMPTED": BatchState.failed,
    "BOOT_FAIL": BatchState.failed,
    "DEADLINE": BatchState.failed,
    "REVOKED": BatchState.failed,  # federation: it runs on another cluster, not here
}
# The reasons of a job that ended by itself (FAILED: the script exited non-zero).
_DONE_REASONS = ("NonZeroExitCode", "None", "")


class SlurmSubmitter:
    name = "slurm"

    def __init__(self, *, run: Runner = commands.run, env: Mapping[str, str] | None = None) -> None:
        self._run = run
        self._env = dict(env) if env is not None else None  # for sbatch/squeue/scancel; None inherits

    def submit(self, batch: PilotBatch) -> list[str]:
        scripts = [job_script(batch, i) for i in range(batch.count)]  # all checked before any goes in
        ids: list[str] = []
        for i, text in enumerate(scripts):
            path = batch.log_dir.absolute() / f"{batch.tpid(i)}.sh"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            except OSError as exc:
                raise SubmitError(f"batch script of pilot {batch.tpid(i)}: {exc}", ids) from exc
            # --export=NONE on the command line too: it beats an SBATCH_EXPORT in our environment
            try:
                result = self._run(["sbatch", "--parsable", "--export=NONE", str(path)], env=self._env)
            except BatchCommandError as exc:
                raise SubmitError(f"sbatch of pilot {batch.tpid(i)}: {exc}", ids) from exc
            job_id = result.stdout.strip().split(";")[0]  # --parsable: "id" or "id;cluster"
            if result.returncode != 0 or not job_id.isdigit():
                said = (result.stderr.strip() or result.stdout.strip())[-2000:]
                where = f"partition {batch.queue.queue!r}" if batch.queue.queue else "the default partition"
                raise SubmitError(f"sbatch of pilot {batch.tpid(i)} to {where} of queue {batch.queue.nickname} "
                                  f"failed ({result.returncode}): {said}", ids)  # fmt: skip
            ids.append(job_id)
        log.info("queue %s: %d pilot(s) %s.* submitted to Slurm: %s", batch.queue.nickname, len(ids), batch.name,
                 ",".join(ids))  # fmt: skip
        return ids

    def status(self, ids: Sequence[str]) -> dict[str, BatchStatus]:
        wanted = set(_check_ids(ids))
        if not wanted:
            return {}
        # 22.05 ignores --jobs/--states with --json (it lists every job); newer versions filter and
        # may refuse the whole list for one id they no longer know: then ask for everything.
        argv = ["squeue", "--json", "--states=all", f"--jobs={','.join(sorted(wanted))}"]
        result = self._run(argv, env=self._env)
        if result.returncode != 0 and "invalid job id" in (result.stderr + result.stdout).lower():
            result = self._run(["squeue", "--json", "--states=all"], env=self._env)
        commands.checked(result)
        try:
            known = parse_squeue_json(result.stdout)
        except ValueError as exc:
            raise BatchCommandError(f"squeue --json: {exc}") from exc
        return {job_id: st for job_id, st in known.items() if job_id in wanted}

    def cancel(self, ids: Sequence[str]) -> None:
        ids = _check_ids(ids)
        if ids:  # an id Slurm no longer knows is no error for scancel (22.05: exit 0, nothing said)
            commands.checked(self._run(["scancel", *ids], env=self._env))


def _check_ids(ids: Sequence[str]) -> list[str]:
    bad = [i for i in ids if not (isinstance(i, str) and i.isascii() and i.isdigit())]
    if bad:
        raise ValueError(f"not Slurm job ids: {', '.join(map(repr, bad[:5]))}")
    return list(ids)


# ---- the batch script


def pilot_env(batch: PilotBatch, index: int) -> dict[str, str]:
    """What pilot `index` gets: a sane base, the queue's environ, then the factory's variables."""
    try:
        queue_env = queue_environ(batch.queue)  # the factory puts it in batch.environment too
    except ValueError as exc:
        raise SubmitError(str(exc)) from exc
    proxy = {"X509_USER_PROXY": str(batch.proxy)} if str(batch.proxy) not in ("", ".") else {}
    env = {**BASE_ENV, **proxy, **queue_env, **batch.pilot_environment(index)}
    for key, value in env.items():
        if not _KEY_RE.fullmatch(key) or "\n" in value or "\r" in value or "\0" in value:
            raise SubmitError(f"queue {batch.queue.nickname}: cannot pass {key}={value!r} to a pilot "
                              "(names are identifiers, values one line)")  # fmt: skip
    return env


def _sbatch_value(batch: PilotBatch, value: str, *, filename: bool = False) -> str:
    """A value for an #SBATCH line: no whitespace or quotes (sbatch splits on them); in a file
    name a literal % is %% (sbatch expands %j, %x, ...)."""
    if any(c.isspace() or c in "\"'\\" for c in value) or not value:
        raise SubmitError(f"queue {batch.queue.nickname}: {value!r} cannot go on an #SBATCH line "
                          "(no spaces or quotes in the log directory, partition and names)")  # fmt: skip
    return value.replace("%", "%%") if filename else value


def sbatch_options(batch: PilotBatch, index: int) -> list[str]:
    q = batch.queue
    out, err = batch.stdout(index).absolute(), batch.stderr(index).absolute()  # relative: to --chdir
    opts = [
        f"--job-name={_sbatch_value(batch, batch.tpid(index))}",
        f"--output={_sbatch_value(batch, str(out), filename=True)}",
        f"--error={_sbatch_value(batch, str(err), filename=True)}",
        f"--chdir={_sbatch_value(batch, str(batch.log_dir.absolute()))}",  # as the local submitter does
        "--export=NONE",
    ]
    if q.queue:
        opts.append(f"--partition={_sbatch_value(batch, q.queue)}")
    if q.memory > 0:
        opts.append(f"--mem={q.memory}M")
    if q.maxtime > 0:
        opts.append(f"--time={math.ceil(q.maxtime / 60)}")  # minutes, rounded up
    if q.corecount > 1:
        opts.append(f"--cpus-per-task={q.corecount}")
    return opts


def job_script(batch: PilotBatch, index: int) -> str:
    """The batch script of pilot `index` (raises SubmitError for what cannot be passed on)."""
    env = pilot_env(batch, index)
    keep = "|".join(KEEP_ENV)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {opt}" for opt in sbatch_options(batch, index)),
        f"# AutoPilot pilot {batch.tpid(index)} for queue {batch.queue.nickname} (site {batch.queue.siteid}), "
        f"written {now}",
        "# A clean environment: Slurm 22.05 starts this with the user's login environment even with",
        "# --export=NONE; keep only Slurm's own variables and the account's basics, then set the pilot's.",
        f'for _v in $(compgen -e); do case $_v in {keep}) ;; *) unset "$_v" ;; esac; done',
        'for _v in $(compgen -A function); do unset -f "$_v"; done  # exported ones (module, ml, ...)',
        "unset _v",
        *(f"export {key}={shlex.quote(value)}" for key, value in env.items()),
        "exec " + " ".join(shlex.quote(a) for a in (str(batch.executable), *batch.arguments)),
        "",
    ]
    return "\n".join(lines)


# ---- squeue --json


def parse_squeue_json(text: str) -> dict[str, BatchStatus]:
    """Every job in `squeue --json` output by job id. Both shapes: 22.05 (openapi v0.0.38:
    job_state a string, exit_code the raw wait status, e.g. 768 for exit 3) and newer ones
    (job_state a list; exit_code an object with status and return_code, the latter a number or
    {set, number}). Raises ValueError when the text is not squeue's JSON."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
        raise ValueError("no 'jobs' list in the output")
    out: dict[str, BatchStatus] = {}
    for job in doc["jobs"]:
        job_id = _number(job.get("job_id"))
        if job_id is not None:
            out[str(job_id)] = job_status(job)
    return out


def job_status(job: Mapping[str, Any]) -> BatchStatus:
    raw = job.get("job_state")
    names = [str(s) for s in raw] if isinstance(raw, list) else [str(raw or "")]
    name = next((f for f in FLAG_ORDER if f in names), names[0] if names else "")
    state = STATES.get(name, BatchState.queued)  # unknown (a newer Slurm's new state): not yet ended
    node = str(job.get("batch_host") or job.get("nodes") or "")
    if state is BatchState.queued or state is BatchState.running:
        return BatchStatus(state, info=name if name in STATES else f"{name} (unknown state)", workernode=node)
    if state is BatchState.failed:  # the wrapper was stopped: its exit code says nothing
        return BatchStatus(state, info=name, workernode=node)
    code, signal = exit_code(job.get("exit_code"))
    reason = str(job.get("state_reason") or "")
    # FAILED is also Slurm's word for "could not start it" (22.05 says JobLaunchFailure, exit
    # signal 53) and for a script killed by a signal Slurm did not send: then it could not report
    if signal or reason not in _DONE_REASONS:
        said = [reason] if reason not in _DONE_REASONS else []
        if signal:
            said.append(f"signal {signal}" if signal > 0 else "signal")
        return BatchStatus(BatchState.failed, info=f"{name} {', '.join(said)}", workernode=node)
    return BatchStatus(state, exit_code=code, info=name, workernode=node)


def exit_code(value: Any) -> tuple[int | None, int]:
    """(exit code, signal) from squeue's exit_code in any shape; (None, 0) when unknown."""
    # 23.02+: {"status": ..., "return_code": n | {"set", "number"}, "signal": ...}
    if isinstance(value, dict):
        code = _number(value.get("return_code"))
        sig = value.get("signal") or {}
        signal = _number(sig.get("id", sig.get("signal_id"))) if isinstance(sig, dict) else None
        status = value.get("status")
        statuses = status if isinstance(status, list) else [status]
        if "SIGNALED" in statuses and not signal:
            signal = -1  # signalled, number unknown
        return code, signal or 0
    raw = _number(value)
    if raw is None:
        return None, 0
    return (raw >> 8) & 0xFF, raw & 0x7F  # 22.05: the wait(2) status


def _number(value: Any) -> int | None:
    """An integer from a plain number or a newer Slurm's {"set": bool, "number": n} struct."""
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
