"""Run an external command with a hard time-out and an abort flag, never leaving processes behind.

Transfer tools (xrdcp, cp, …) can hang on a dead storage element or fork helpers; the pilot must
get control back in bounded time and must not leave orphans that keep the job's slot busy. So
every command runs in its own session (its own process group), is polled, and on time-out or
abort the whole group gets SIGTERM, a 2 s grace and SIGKILL. Only that group is ever signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

POLL = 0.1  # s between checks of the child, the clock and the abort flag
GRACE = 2.0  # s between SIGTERM and SIGKILL
TAIL = 4096  # bytes kept from the end of stdout and of stderr
REAP_LIMIT = 10.0  # s to wait for a SIGKILLed leader before giving up on it


@dataclass(frozen=True)
class CommandResult:
    """What a command did: returncode None when it had to be killed (then timed_out or aborted)."""

    returncode: int | None
    stdout_tail: str
    stderr_tail: str
    timed_out: bool
    aborted: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.aborted

    def last_error_line(self) -> str:
        """The last non-empty line of stderr (else stdout): what a person needs in a diag."""
        for text in (self.stderr_tail, self.stdout_tail):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return ""


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    should_abort: Callable[[], bool] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    pass_fds: Sequence[int] = (),
) -> CommandResult:
    """Run argv (no shell) for at most `timeout` s; kill its process group on time-out or abort.

    env is the complete environment (None inherits ours). A command that cannot be started gives
    returncode 127 and the reason in stderr_tail rather than an exception, so callers map it like
    any failed command. Processes the command left in its group after exiting are ended too.
    `pass_fds`: descriptors the command inherits at the same numbers (a proxy held in memory).
    """
    if isinstance(argv, str) or not argv:
        raise TypeError("argv must be a non-empty list of arguments, not a shell string")
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd,
                start_new_session=True, close_fds=True, pass_fds=tuple(pass_fds),
            )  # fmt: skip
        except OSError as exc:
            return CommandResult(127, "", f"cannot execute {argv[0]}: {exc}", False, False, 0.0)
        timed_out = aborted = False
        try:
            timed_out, aborted = _wait(proc, start + timeout, should_abort)
        finally:
            _end_group(proc)
        returncode = None if (timed_out or aborted) else proc.returncode
        seconds = time.monotonic() - start
        return CommandResult(returncode, _tail(out), _tail(err), timed_out, aborted, seconds)


def _wait(
    proc: subprocess.Popen[bytes], deadline: float, should_abort: Callable[[], bool] | None
) -> tuple[bool, bool]:
    """Poll until the child exits, the deadline passes or the abort flag is up."""
    while proc.poll() is None:
        now = time.monotonic()
        if now >= deadline:
            return True, False
        if should_abort is not None and should_abort():
            return False, True
        time.sleep(max(0.0, min(POLL, deadline - now)))
    return False, False


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, wait up to GRACE s, SIGKILL what is left, reap the child."""
    pgid = proc.pid  # start_new_session: the child leads its own group, pgid == pid
    if proc.poll() is not None and not group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline:
        proc.poll()
        if not group_alive(pgid):
            break
        time.sleep(0.05)
    else:
        _signal_group(pgid, signal.SIGKILL)
    try:
        proc.wait(timeout=REAP_LIMIT)
    except subprocess.TimeoutExpired:  # unkillable (D state): nothing more we can do
        pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in process group pgid.

    Zombies are ignored: an orphan reparented to an init that does not reap stays a zombie but
    holds nothing. Without /proc this falls back to kill(0), which counts zombies too.
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _tail(f: IO[bytes]) -> str:
    """The last TAIL bytes of a captured stream, decoded leniently."""
    f.flush()
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - TAIL))
    return f.read().decode("utf-8", errors="replace")
