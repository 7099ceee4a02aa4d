"""Run the job's payload and say how it ended (reference/pilot.md §2 step 6, §5, §14 items 15–18).

The payload runs as `/bin/bash -c <command>` in its own session and process group, in the job
dir, with exactly the environment the pilot built, its output in payload.stdout/payload.stderr.
While it runs the pilot watches it: a kill request (server `tobekilled`, kill file), the wall-time
limit and the job monitor (memory, looping, disk) can each end it, and then the whole payload
tree is killed (pilot.util.processes: only the payload's own processes). When the payload's main
process exits, whatever it left running is killed as well: a payload must not leave processes
behind on the node.

The job wrapper is a child subreaper (pilot.util.processes.become_subreaper): a process the payload
double-forks into a new session is re-parented to the wrapper, not to init, so with
`adopt_orphans` every descendant of the wrapper counts as the payload's (monitor, kills, leftovers)
and none survives the job; their zombies are collected.

The main process is waited for with waitid(WNOWAIT) first and reaped only after the leftovers are
dealt with: while it is an unreaped zombie, neither its pid nor its process-group id can be reused,
so the group id still names this payload when the leftovers are killed.

Under identity switching (pilot.glexec) the payload runs as another account: bash is started with
that uid, gid and groups (umask 022), and the monitor and the kills also count that uid's
processes as the payload's (the pilot is root then, so it may signal them).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pilot.errors import CODES, PilotFailure, signal_error
from pilot.glexec import PAYLOAD_UMASK, Account
from pilot.util import processes

log = logging.getLogger(__name__)

Verdict = tuple[int, str]
HARD_WALLTIME = (
    324000.0  # without a wall-time limit: the real pilot's default lifetime (-l), so the wait ends
)
_EXIT_WAIT = 30.0  # how long to wait for the main process to exit after kill_tree
_DIAG_LINE = 250  # characters of stderr quoted in a diag (the server keeps ~500)


@dataclass(frozen=True)
class PayloadSample:
    """What the job monitor sees of the running payload at one poll."""

    pid: int
    pgid: int
    pids: frozenset[int]  # every live payload process known (tree, group, orphans seen before)
    rss_kb: int
    cpu_seconds: float
    wall_seconds: float


@dataclass
class PayloadResult:
    """How the payload ended: exit code or signal, resources used, and who killed it (code, diag)."""

    exit_code: int | None
    signal: int | None
    wall_seconds: float
    cpu_seconds: float
    max_rss_kb: int
    killed: tuple[int, str] | None
    leftovers: tuple[int, ...] = ()  # processes still running after the main process exited (killed)


def _never() -> Verdict | None:
    return None


def _no_links(path: str, flags: int) -> int:
    """open() that never follows a link planted in the job dir."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o666)


def _spawn(command: str, cwd: Path, env: Mapping[str, str], stdout: Path, stderr: Path,
           account: Account | None = None) -> subprocess.Popen:  # fmt: skip
    """Start bash in a new session (as `account` if given); the parent's copies of the output files are closed at once."""
    identity = {} if account is None else {"user": account.uid, "group": account.gid,
                                           "extra_groups": list(account.groups), "umask": PAYLOAD_UMASK}  # fmt: skip
    try:
        with open(stdout, "wb", opener=_no_links) as out, open(stderr, "wb", opener=_no_links) as err:
            return subprocess.Popen(
                ["/bin/bash", "-c", command],
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
                **identity,
            )
    except OSError as exc:
        if account is not None:
            raise PilotFailure(
                CODES["IDENTITYSWITCH"], f"could not start the payload as {account.name}: {exc}"
            ) from exc
        raise PilotFailure(CODES["PAYLOADEXECUTIONEXCEPTION"], f"could not start the payload: {exc}") from exc


class _Run:
    """One running payload: its identity, what was seen of it, and how it ended."""

    def __init__(self, proc: subprocess.Popen, grace: float, uid: int | None, adopt: bool) -> None:
        self.proc, self.pid, self.pgid = proc, proc.pid, proc.pid  # own session: pgid == pid
        self.grace, self.uid = grace, uid  # uid: the switched-to account's, else None
        self.adopt = adopt  # we are a subreaper running only the payload: all our descendants are its
        self.t0 = time.monotonic()
        self.ended: float | None = None
        try:
            self.pidfd: int | None = os.pidfd_open(self.pid)
        except OSError:
            self.pidfd = None
        self.tracked: dict[int, int] = {}  # every payload process seen: pid → start time
        self.max_rss_kb, self.cpu_seconds = 0, 0.0
        self.killed: Verdict | None = None
        self.leftovers: tuple[int, ...] = ()
        self.returncode: int | None = None

    def exited(self) -> bool:
        """Has the main process exited? It is left a zombie (WNOWAIT) until reap()."""
        try:
            done = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:  # reaped by somebody else
            done = True
        if done and self.ended is None:
            self.ended = time.monotonic()
        return done

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the main process to exit; wakes at once when it does."""
        end = time.monotonic() + timeout
        while not self.exited():  # bounded by `end`
            remaining = end - time.monotonic()
            if remaining <= 0:
                return False
            if self.pidfd is not None:  # poll, not select: the pilot may hold fds above 1024
                poller = select.poll()
                poller.register(self.pidfd, select.POLLIN)
                poller.poll(remaining * 1000)
            else:
                time.sleep(min(0.05, remaining))
        return True

    def sample(self) -> PayloadSample:
        """Measure the payload now; remember its processes so orphans can still be killed later."""
        self.tracked = processes.still_running(self.tracked)
        self.tracked.update(self._found())
        pids = frozenset(self.tracked)
        rss, cpu = processes.tree_rss_kb(pids), processes.tree_cpu_seconds(pids)
        self.max_rss_kb, self.cpu_seconds = max(self.max_rss_kb, rss), max(self.cpu_seconds, cpu)
        return PayloadSample(self.pid, self.pgid, pids, rss, cpu, time.monotonic() - self.t0)

    def _found(self) -> dict[int, int]:
        """The payload's processes now: its tree and group, and (subreaper) every descendant of ours."""
        found = processes.payload_tree_ids(self.pid, self.pgid, uid=self.uid)
        if self.adopt:
            found.update(processes.own_descendants(uid=self.uid))
        return found

    def _kill_tree(self) -> processes.KillReport:
        return processes.kill_tree(self.pid, self.pgid, grace=self.grace, known=self.tracked, reap=False,
                                   uid=self.uid, adopted=self.adopt)  # fmt: skip

    def kill(self, verdict: Verdict | None) -> None:
        """Kill the payload tree (the main process is reaped later, by reap())."""
        self.killed = verdict
        log.warning("killing payload pid %d: %s", self.pid, verdict[1] if verdict else "pilot exception")
        report = self._kill_tree()
        log.info(
            "payload kill: SIGTERM %s, SIGKILL %s, left %s",
            report.signalled,
            report.survivors_killed,
            report.left,
        )
        if not self.wait_exit(_EXIT_WAIT):
            log.error("payload pid %d did not exit %.0f s after SIGKILL", self.pid, _EXIT_WAIT)

    def kill_leftovers(self) -> None:
        """Kill what the payload left running after its main process exited."""
        left = processes.still_running(self.tracked) | self._found()
        if left:
            report = self._kill_tree()
            self.leftovers = tuple(sorted(set(left) | set(report.signalled) | set(report.survivors_killed)))
            log.warning(
                "the payload left processes %s running after it exited: killed them", list(self.leftovers)
            )
        if self.adopt:  # orphans re-parented to us, killed or ended by themselves, are our zombies
            processes.reap_children(keep=self.pid)

    def reap(self) -> None:
        """Collect the main process's exit status and its own resource usage (with waited-for children)."""
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if not self.exited():
            log.error("payload pid %d is still running; its exit status is unknown", self.pid)
            return
        try:
            _pid, status, usage = os.wait4(self.pid, 0)
        except ChildProcessError:
            return
        self.returncode = self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_seconds = max(self.cpu_seconds, usage.ru_utime + usage.ru_stime)
        self.max_rss_kb = max(self.max_rss_kb, usage.ru_maxrss)  # kB on Linux

    def result(self) -> PayloadResult:
        rc = self.returncode
        end = self.ended if self.ended is not None else time.monotonic()
        return PayloadResult(
            exit_code=rc if rc is not None and rc >= 0 else None,
            signal=-rc if rc is not None and rc < 0 else None,
            wall_seconds=end - self.t0,
            cpu_seconds=self.cpu_seconds,
            max_rss_kb=self.max_rss_kb,
            killed=self.killed,
            leftovers=self.leftovers,
        )


def _verdict(
    sample: PayloadSample,
    walltime: float | None,
    should_kill: Callable[[], Verdict | None],
    monitor: Callable[[PayloadSample], Verdict | None] | None,
) -> Verdict | None:
    """Kill request first (someone asked), then the wall-time limit, then the job monitor."""
    verdict = should_kill()
    if verdict:
        return verdict
    limit = HARD_WALLTIME if walltime is None else walltime
    if sample.wall_seconds > limit:
        return CODES["REACHEDMAXTIME"], f"payload exceeded the wall-time limit of {limit:g} s"
    return monitor(sample) if monitor is not None else None


def run_payload(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    stderr_path: Path,
    walltime: float | None = None,
    should_kill: Callable[[], Verdict | None] = _never,
    on_start: Callable[[int], None] | None = None,
    poll: float = 0.5,
    grace: float = 10.0,
    monitor: Callable[[PayloadSample], Verdict | None] | None = None,
    account: Account | None = None,
    adopt_orphans: bool = False,
) -> PayloadResult:
    """Run the payload to its end, killing it (and everything it started) on a verdict.

    Every `poll` s: `should_kill()`, the wall-time limit, then `monitor(sample)`; the first
    (code, diag) wins and becomes `killed`. An exception in a callback kills the payload too,
    then propagates. Raises PilotFailure(1310) when bash cannot even be started. `account`: run
    as that local account (identity switching; the caller must be root). `adopt_orphans`: the
    caller is a child subreaper that runs nothing else meanwhile (the job wrapper), so every
    descendant of it is the payload's and is killed when the payload ends.
    """
    run = _Run(_spawn(command, cwd, env, stdout_path, stderr_path, account), grace,
               None if account is None else account.uid, adopt_orphans)  # fmt: skip
    try:
        if on_start is not None:
            on_start(run.pid)
        while not run.wait_exit(poll):  # bounded: the wall-time limit (or HARD_WALLTIME) ends it
            verdict = _verdict(run.sample(), walltime, should_kill, monitor)
            if verdict:
                run.kill(verdict)
                break
    finally:
        if not run.exited():
            run.kill(run.killed)
        run.kill_leftovers()
        run.reap()
    return run.result()


def read_tail(path: Path, max_bytes: int = 4096) -> str:
    """The last `max_bytes` of a (possibly huge) file as text; "" when it is missing."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - max_bytes))
            return f.read(max_bytes).decode("utf-8", "replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:_DIAG_LINE] if lines else ""


def interpret(result: PayloadResult, stderr_tail: str) -> tuple[int, int, str]:
    """(pilotErrorCode, transExitCode, diag) for the final job update.

    A kill by the pilot keeps its own code and diag; exit 0 is success; another exit code is
    1305 PAYLOADEXECUTIONFAILURE with the payload's code as transExitCode and its last stderr line;
    death by signal n gives the pilot's signal code (1200–1208) and transExitCode 128+n, as a shell would.
    """
    trans = 128 + result.signal if result.signal else (result.exit_code or 0)
    if result.killed:
        return result.killed[0], trans, result.killed[1]
    last = _last_line(stderr_tail)
    suffix = f": {last}" if last else ""
    if result.exit_code == 0:
        return 0, 0, ""
    if result.exit_code is not None:
        rc = result.exit_code
        return CODES["PAYLOADEXECUTIONFAILURE"], rc, f"payload exited with code {rc}{suffix}"
    if result.signal is not None:
        try:
            name = signal.Signals(result.signal).name
        except ValueError:
            name = f"signal {result.signal}"
        code = signal_error(result.signal)
        return code, trans, f"payload killed by {name} ({result.signal}){suffix}"
    return CODES["UNKNOWNPAYLOADFAILURE"], 0, "the payload's exit status could not be collected"
