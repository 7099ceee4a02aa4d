"""The payload's processes, found and killed through /proc (reference/pilot.md §5, §14 item 25).

Safety first: the pilot shares the worker node with other jobs, other pilots and the site's own
daemons, and it may run as root in a container. So it only ever signals processes it can prove
are its payload's:

* the descendants of the payload's root pid (parent links in /proc/<pid>/stat), plus
* the members of the payload's process group (the payload runs in its own session), plus
* pids the caller saw earlier in the tree (`known`, pid → start time), so grandchildren that
  were orphaned (re-parented to init) or left the group with setsid are still found,

and of those only processes with the pilot's own real uid (or, when a root pilot runs the
payload as another account, only that account's uid: `uid=`), never the pilot itself or its
ancestors, never the pilot's own process group. Never by name, never "all orphans of my user".
The job wrapper is also a child subreaper (`become_subreaper`): orphans of the payload are
re-parented to it rather than to init, so `own_descendants` finds even those that left the
payload's session and group before they were ever seen.

A pid alone is not an identity (pids are reused), so every process is tracked as (pid, start time
in clock ticks since boot) and re-checked right before it is signalled; the signal goes through a
pidfd where the kernel has them, which closes the remaining check-then-kill race.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_POLL = 0.2  # how often kill_tree re-checks during the grace period
_SETTLE = 5.0  # how long kill_tree waits for SIGKILLed processes to disappear
_DEAD_STATES = ("Z", "X", "x")  # zombies are dead: they hold no resources and ignore signals
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37


@dataclass(frozen=True)
class ProcInfo:
    """The fields of /proc/<pid>/stat the pilot needs."""

    pid: int
    ppid: int
    pgid: int
    state: str
    start: int  # clock ticks after boot: with the pid, identifies a process across pid reuse
    cpu_ticks: int  # utime + stime + cutime + cstime


@dataclass
class KillReport:
    """What kill_tree did, for the pilot log and the job's diag."""

    signalled: list[int] = field(default_factory=list)  # got SIGTERM
    survivors_killed: list[int] = field(default_factory=list)  # still alive after the grace: SIGKILL
    left: list[int] = field(default_factory=list)  # still alive after SIGKILL (e.g. stuck in D state)


def proc_info(pid: int) -> ProcInfo | None:
    """Parse /proc/<pid>/stat; None when the process is gone (or unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name may hold spaces and parentheses: the fields start after the last ')'
    rest = data[data.rfind(")") + 2 :].split()
    try:
        ticks = sum(int(x) for x in rest[11:15])
        return ProcInfo(pid, int(rest[1]), int(rest[2]), rest[0], int(rest[19]), ticks)
    except (IndexError, ValueError):
        return None


def _real_uid(pid: int) -> int | None:
    """The real uid from /proc/<pid>/status (who owns the process, whatever it exec'd)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _owners(uid: int | None) -> frozenset[int]:
    """The real uid a payload process has: the switched-to account's when named, else the pilot's own.

    Never both: under identity switching the pilot is root, and root processes that joined the
    payload's group or tree (a setuid helper, a site daemon) are not the payload's to kill.
    """
    return frozenset({os.getuid() if uid is None else uid})


def _table() -> dict[int, ProcInfo]:
    """One pass over /proc: every live (non-zombie) process. Bounded by the size of /proc."""
    table: dict[int, ProcInfo] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if name.isdigit():
            info = proc_info(int(name))
            if info is not None and info.state not in _DEAD_STATES:
                table[info.pid] = info
    return table


def _descendants_in(table: Mapping[int, ProcInfo], pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    found: set[int] = set()
    todo = list(children.get(pid, ()))
    while todo:  # bounded: each pid is visited at most once
        p = todo.pop()
        if p not in found and p != pid:
            found.add(p)
            todo.extend(children.get(p, ()))
    return found


def _protected(table: Mapping[int, ProcInfo]) -> set[int]:
    """The pilot itself and its ancestors: never signalled, whatever the caller passes."""
    pids = {0, 1, os.getpid()}
    p = os.getpid()
    for _ in range(len(table) + 1):
        info = table.get(p) or proc_info(p)
        if info is None or info.ppid in pids:
            break
        pids.add(info.ppid)
        p = info.ppid
    return pids


def _prctl(option: int, arg: object = 0) -> int | None:
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0))
    except (OSError, AttributeError):  # no libc prctl: not Linux
        return None


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux ≥ 3.4): orphans among its descendants are
    re-parented to it instead of init, so a payload that double-forks into a new session between
    two samples still is a descendant of the job wrapper."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0 and is_subreaper()


def is_subreaper() -> bool:
    value = ctypes.c_int(0)
    return _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value)) == 0 and value.value != 0


def own_descendants(*, uid: int | None = None) -> dict[int, int]:
    """This process's live descendants of the payload's uid (see _owners), as pid → start time.

    For a child subreaper that runs nothing but the payload meanwhile (the job wrapper), that is
    every process the payload left, wherever it moved its session or process group.
    """
    table = _table()
    owners = _owners(uid)
    return {p: table[p].start for p in sorted(_descendants_in(table, os.getpid())) if _real_uid(p) in owners}


def reap_children(keep: int) -> list[int]:
    """Collect every dead child of this process but `keep` (a subreaper inherits orphans' zombies)."""
    reaped = []
    me = os.getpid()
    for name in os.listdir("/proc"):  # bounded by the size of /proc
        info = proc_info(int(name)) if name.isdigit() else None
        if info is None or info.ppid != me or info.pid == keep or info.state not in _DEAD_STATES:
            continue
        try:
            if os.waitpid(info.pid, os.WNOHANG)[0] == info.pid:
                reaped.append(info.pid)
        except ChildProcessError:
            pass
    return reaped


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (not `pid` itself), by walking the ppid links in /proc."""
    return sorted(_descendants_in(_table(), pid))


def group_members(pgid: int) -> list[int]:
    """All live processes whose process group is `pgid`."""
    return sorted(p for p, info in _table().items() if info.pgid == pgid)


def payload_tree_ids(root_pid: int | None, pgid: int | None, *, uid: int | None = None) -> dict[int, int]:
    """The payload's live processes as pid → start time: the root, its descendants and its group.

    Filtered to the pilot's own uid (or only `uid`, the payload's account under identity switching),
    minus the pilot, its ancestors and its own process group (a caller bug that passes the
    pilot's pid or group must not turn into killing the pilot).
    """
    table = _table()
    protected = _protected(table)
    pids: set[int] = set()
    if root_pid is not None and root_pid > 1:
        if root_pid in protected:
            log.warning("refusing to treat pid %d (the pilot or its ancestor) as a payload root", root_pid)
        elif root_pid in table:
            pids |= {root_pid} | _descendants_in(table, root_pid)
    if pgid is not None and pgid > 1:
        if pgid == os.getpgrp():
            log.warning("refusing to treat the pilot's own process group %d as the payload's", pgid)
        else:
            pids |= {p for p, info in table.items() if info.pgid == pgid}
    owners = _owners(uid)
    return {p: table[p].start for p in sorted(pids - protected) if _real_uid(p) in owners}


def payload_tree(root_pid: int, pgid: int, *, uid: int | None = None) -> set[int]:
    """The payload's live pids (see payload_tree_ids for what is included and excluded)."""
    return set(payload_tree_ids(root_pid, pgid, uid=uid))


def _alive(pid: int, start: int) -> bool:
    info = proc_info(pid)
    return info is not None and info.start == start and info.state not in _DEAD_STATES


def still_running(ids: Mapping[int, int]) -> dict[int, int]:
    """The subset of pid → start time whose process is still that very process and alive."""
    return {p: s for p, s in ids.items() if _alive(p, s)}


def _send(pid: int, start: int, sig: int, owners: frozenset[int]) -> bool:
    """Signal (pid, start) if it is still that very process; True when the signal was sent."""
    try:
        fd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:  # no pidfd support: fall back to check-then-kill
        fd = None
    try:
        if not _alive(pid, start) or _real_uid(pid) not in owners:
            return False
        if fd is None:
            os.kill(pid, sig)
        else:
            signal.pidfd_send_signal(fd, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if fd is not None:
            os.close(fd)


def _signal_group(pgid: int | None, sig: int, owners: frozenset[int]) -> None:
    """killpg the payload's group, which also catches children forked since the last snapshot.

    Only when every live member is ours and none is the pilot: a group id left over from a finished
    payload must never hit somebody else's group.
    """
    if pgid is None or pgid <= 1 or pgid == os.getpgrp():
        return
    table = _table()
    members = [p for p, info in table.items() if info.pgid == pgid]
    if not members or _protected(table) & set(members) or any(_real_uid(p) not in owners for p in members):
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_each(tracked: Mapping[int, int], sig: int, owners: frozenset[int]) -> list[int]:
    return [pid for pid, start in tracked.items() if _send(pid, start, sig, owners)]


def _reap(tracked: Mapping[int, int]) -> None:
    """Collect the exit status of our own children among `tracked`, so they do not stay zombies."""
    me = os.getpid()
    for pid, start in tracked.items():
        info = proc_info(pid)
        if info is None or info.ppid != me or info.start != start:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


class _Tree:
    """The set of processes being killed: grows with newcomers, shrinks as they exit.

    The root pid and the group id are only used while they still name the payload: once the root
    has exited, or the group has no live member, their numbers may be reused by strangers.
    """

    def __init__(self, root_pid: int | None, pgid: int | None, known: Mapping[int, int], reap: bool,
                 uid: int | None = None, adopted: bool = False):  # fmt: skip
        self.uid, self.owners, self.adopted = uid, _owners(uid), adopted
        self.tracked = {p: s for p, s in known.items() if _alive(p, s)}
        self.tracked.update(payload_tree_ids(root_pid, pgid, uid=uid))
        if adopted:
            self.tracked.update(own_descendants(uid=uid))
        self.root = root_pid if root_pid in self.tracked else None
        self.pgid = pgid
        self.reap = reap
        info = proc_info(root_pid) if reap and root_pid is not None and root_pid > 1 else None
        if info is not None and info.ppid == os.getpid():
            _reap({info.pid: info.start})  # a root that already exited: collect it

    def refresh(self) -> dict[int, int]:
        """Drop the dead, add processes that joined the tree meanwhile; return the newcomers."""
        if self.reap:
            _reap(self.tracked)
        for pid, start in list(self.tracked.items()):
            if not _alive(pid, start):
                del self.tracked[pid]
        if self.root not in self.tracked:
            self.root = None
        if self.pgid is not None and not group_members(self.pgid):
            self.pgid = None  # the group is empty: its number is free for reuse from now on
        found = payload_tree_ids(self.root, self.pgid, uid=self.uid)
        if self.adopted:
            found.update(own_descendants(uid=self.uid))
        new = {p: s for p, s in found.items() if p not in self.tracked}
        self.tracked.update(new)
        return new

    def signal(self, sig: int, only: Mapping[int, int] | None = None) -> list[int]:
        """Signal each tracked process, then the group (if still ours); return the pids signalled.

        One by one first, so the report is exact; the group last, for children forked meanwhile.
        """
        sent = _signal_each(self.tracked if only is None else only, sig, self.owners)
        if only is None:
            _signal_group(self.pgid, sig, self.owners)
        return sent


def kill_tree(
    root_pid: int | None,
    pgid: int | None,
    *,
    grace: float = 10.0,
    known: Mapping[int, int] | None = None,
    reap: bool = True,
    uid: int | None = None,
    adopted: bool = False,
) -> KillReport:
    """Terminate the payload's whole tree: SIGTERM, up to `grace` s to exit, then SIGKILL.

    `known` (pid → start time, from payload_tree_ids) adds processes seen earlier that may have
    left the tree since. With `reap`, our own children among them are waited for (WNOHANG);
    pass reap=False when the caller waits for the root itself (it wants the exit status).
    A SIGCONT follows the SIGTERM so that stopped processes can act on it. `uid`: the account a
    root pilot runs the payload as (identity switching), whose processes alone are signalled then.
    `adopted`: every descendant of this process is the payload's too (a child subreaper that runs
    nothing else meanwhile: the job wrapper).
    """
    tree = _Tree(root_pid, pgid, known or {}, reap, uid, adopted)
    report = KillReport(signalled=tree.signal(signal.SIGTERM))
    tree.signal(signal.SIGCONT)
    deadline = time.monotonic() + max(grace, 0.0)
    while True:  # bounded by the deadline
        report.signalled += tree.signal(signal.SIGTERM, only=tree.refresh())
        remaining = deadline - time.monotonic()
        if not tree.tracked or remaining <= 0:
            break
        time.sleep(min(_POLL, remaining))
    if tree.tracked:
        report.survivors_killed = tree.signal(signal.SIGKILL)
        settle = time.monotonic() + _SETTLE
        while tree.tracked and time.monotonic() < settle:  # bounded by _SETTLE
            time.sleep(0.05)
            report.survivors_killed += tree.signal(signal.SIGKILL, only=tree.refresh())
    report.left = sorted(tree.tracked)
    if report.left:
        log.error("processes %s of the payload survived SIGKILL (uninterruptible?)", report.left)
    return report


def tree_rss_kb(pids: Iterable[int]) -> int:
    """Resident memory of the processes in kB (VmRSS from /proc/<pid>/status; gone → 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue
    return total


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time used by the processes, user + system, in seconds.

    Includes each process's waited-for children (cutime/cstime): a shell running its steps one after
    another would otherwise lose the CPU of every finished step.
    """
    ticks = 0
    for pid in pids:
        info = proc_info(pid)
        if info is not None:
            ticks += info.cpu_ticks
    return ticks / _CLK_TCK
