"""The `local` submitter: pilots as processes on this machine (`make run`'s default).

Each pilot is the wrapper started in its own session (process group), with a clean environment:
the factory's own (its database URL, say) is not passed on. Its batch id is its PID. A pilot this
process started is reaped here, which gives its exit code; one started by an earlier factory
process is recognised by the PANDA_TPID in its environment, and once it has ended the factory
reads its exit code from the file the wrapper writes (PILOT_EXIT_FILE).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Sequence

from autopilot.submitters.base import BASE_ENV, BatchState, BatchStatus, PilotBatch, SubmitError

log = logging.getLogger("panda.autopilot")


class LocalSubmitter:
    name = "local"

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}

    def submit(self, batch: PilotBatch) -> list[str]:
        batch.log_dir.mkdir(parents=True, exist_ok=True)
        ids: list[str] = []
        for i in range(batch.count):
            env = {**BASE_ENV, "HOME": os.environ.get("HOME", "/tmp"), **batch.pilot_environment(i)}
            try:
                with open(batch.stdout(i), "ab") as out, open(batch.stderr(i), "ab") as err:
                    proc = subprocess.Popen([str(batch.executable), *batch.arguments], env=env, cwd=batch.log_dir,
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                            start_new_session=True)  # fmt: skip
            except OSError as exc:
                raise SubmitError(f"cannot start {batch.executable}: {exc}", ids) from exc
            self._children[proc.pid] = proc
            ids.append(str(proc.pid))
        return ids

    def status(self, ids: Sequence[str]) -> dict[str, BatchStatus]:
        out: dict[str, BatchStatus] = {}
        for batch_id in ids:
            pid = _pid(batch_id)
            proc = self._children.get(pid)
            if proc is not None:
                code = proc.poll()
                if code is None:
                    out[batch_id] = BatchStatus(BatchState.running, info="process alive")
                elif code < 0:  # the wrapper itself was killed: it could not report
                    out[batch_id] = BatchStatus(BatchState.failed, info=f"killed by signal {-code}")
                else:
                    out[batch_id] = BatchStatus(BatchState.done, exit_code=code, info="exited")
                if code is not None:
                    del self._children[pid]
            elif _is_pilot(pid):
                out[batch_id] = BatchStatus(BatchState.running, info="process alive")
        return out

    def cancel(self, ids: Sequence[str]) -> None:
        for batch_id in ids:
            pid = _pid(batch_id)
            if pid in self._children or _is_pilot(pid):
                try:
                    os.killpg(pid, signal.SIGTERM)  # the wrapper passes it on to the pilot
                except ProcessLookupError:
                    pass


def _pid(batch_id: str) -> int:
    if not batch_id.isdigit():
        raise ValueError(f"{batch_id!r} is not a local batch id (a PID)")
    return int(batch_id)


def _is_pilot(pid: int) -> bool:
    """Whether this PID is a live pilot wrapper of an AutoPilot factory (not a reused PID)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z" and (environ.startswith(b"PANDA_TPID=") or b"\0PANDA_TPID=" in environ)
