"""pilot.util.processes against real processes: the payload's tree dies, nothing else does."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from pilot.util import processes

GRACE = 0.5


def _alive(pid: int, start: int | None = None) -> bool:
    info = processes.proc_info(pid)
    return info is not None and info.state not in ("Z", "X") and (start is None or info.start == start)


def _wait_for(cond: Callable[[], object], timeout: float = 10.0) -> object:
    """Poll `cond` until it returns something truthy (bounded); fail the test otherwise."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"condition not met within {timeout} s")


class Started:
    """Processes this test started, (pid, start time): the teardown SIGKILLs any survivor, by pid."""

    def __init__(self) -> None:
        self.ids: dict[int, int] = {}
        self.procs: list[subprocess.Popen] = []

    def popen(self, script: str, *, new_session: bool = True) -> subprocess.Popen:
        proc = subprocess.Popen(["/bin/bash", "-c", script], start_new_session=new_session)
        self.procs.append(proc)
        self.add(proc.pid)
        return proc

    def add(self, pid: int) -> None:
        info = processes.proc_info(pid)
        if info is not None:
            self.ids[pid] = info.start

    def cleanup(self) -> None:
        for pid, start in self.ids.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def started() -> Iterator[Started]:
    s = Started()
    try:
        yield s
    finally:
        s.cleanup()


def _tree_of(proc: subprocess.Popen, started: Started, n: int) -> dict[int, int]:
    """Wait until the payload has `n` descendants; remember them for the teardown."""
    _wait_for(lambda: len(processes.descendants(proc.pid)) >= n)
    for pid in processes.descendants(proc.pid):
        started.add(pid)
    return processes.payload_tree_ids(proc.pid, proc.pid)


def test_tree_and_group_are_found(started):
    proc = started.popen("sleep 300 & sleep 300")
    ids = _tree_of(proc, started, 2)
    kids = processes.descendants(proc.pid)
    assert len(kids) == 2 and proc.pid not in kids
    assert set(processes.group_members(proc.pid)) == {proc.pid, *kids}
    assert processes.payload_tree(proc.pid, proc.pid) == {proc.pid, *kids} == set(ids)
    assert processes.tree_rss_kb([proc.pid]) > 0
    assert processes.tree_rss_kb([os.getpid()]) > 0
    assert processes.tree_cpu_seconds([os.getpid()]) > 0
    assert processes.tree_rss_kb([2**22 + 12345]) == 0  # gone / never existed: no error


def test_grandchild_in_new_session_is_killed(started):
    proc = started.popen("setsid sleep 300 & sleep 300")
    _tree_of(proc, started, 2)
    escaped = [p for p in processes.descendants(proc.pid) if processes.proc_info(p).pgid != proc.pid]
    assert len(escaped) == 1  # left the payload's group, still in its tree
    report = processes.kill_tree(proc.pid, proc.pid, grace=GRACE)
    assert escaped[0] in report.signalled and proc.pid in report.signalled
    assert report.left == []
    assert not any(_alive(p, s) for p, s in started.ids.items())
    assert processes.proc_info(proc.pid) is None  # our child, reaped: no zombie left


def test_term_ignoring_payload_gets_sigkill(started):
    proc = started.popen("trap '' TERM; sleep 300 & sleep 300")
    _tree_of(proc, started, 2)
    t0 = time.monotonic()
    report = processes.kill_tree(proc.pid, proc.pid, grace=GRACE)
    assert set(report.survivors_killed) == set(started.ids)  # all three ignored SIGTERM
    assert report.left == []
    assert not any(_alive(p, s) for p, s in started.ids.items())
    assert GRACE <= time.monotonic() - t0 < 15  # waited the grace, then SIGKILL


def test_orphan_seen_before_is_killed_through_known(started):
    proc = started.popen("setsid sleep 300 & sleep 0.5")
    ids = _tree_of(proc, started, 2)
    proc.wait(timeout=10)  # the root exits: the orphan is re-parented, out of the tree
    orphan = [
        p for p in ids if p != proc.pid and _alive(p, ids[p]) and processes.proc_info(p).ppid != proc.pid
    ]
    assert orphan
    report = processes.kill_tree(proc.pid, proc.pid, grace=GRACE, known=ids)
    assert set(orphan) <= set(report.signalled)
    assert not any(_alive(p, ids[p]) for p in orphan)


def test_unrelated_processes_of_the_same_uid_survive(started):
    unrelated = started.popen("sleep 300", new_session=False)  # our child, in our group
    unrelated_session = started.popen("sleep 300")  # our child, in its own session
    proc = started.popen("sleep 300 & sleep 300")
    _tree_of(proc, started, 2)
    processes.kill_tree(proc.pid, proc.pid, grace=GRACE)
    assert _alive(unrelated.pid) and _alive(unrelated_session.pid)
    assert not _alive(proc.pid)


def test_never_the_pilot_its_ancestors_or_its_group(started):
    sibling = started.popen("sleep 300", new_session=False)
    _wait_for(lambda: _alive(sibling.pid))
    assert processes.payload_tree(os.getpid(), os.getpgrp()) == set()
    assert os.getppid() not in processes.payload_tree(os.getppid(), 0)
    report = processes.kill_tree(os.getpid(), os.getpgrp(), grace=0)
    assert report.signalled == [] and report.survivors_killed == []
    assert _alive(sibling.pid)  # the pilot's own children outside the payload are not touched


# CI runs as root with util-linux: there these tests must run (os.environ CI), not be skipped
NEEDS_ROOT_AND_SETPRIV = pytest.mark.skipif(
    not os.environ.get("CI") and (os.getuid() != 0 or not shutil.which("setpriv")),
    reason="needs root and setpriv",
)


@NEEDS_ROOT_AND_SETPRIV
def test_other_uid_in_the_payload_tree_is_not_signalled(started):
    proc = started.popen("setpriv --reuid=65534 --regid=65534 --clear-groups sleep 300 & sleep 300")
    kids = _wait_for(lambda: [p for p in processes.descendants(proc.pid) if processes._real_uid(p) == 65534])
    for pid in processes.descendants(proc.pid):
        started.add(pid)
    assert kids[0] not in processes.payload_tree(proc.pid, proc.pid)
    report = processes.kill_tree(proc.pid, proc.pid, grace=GRACE)
    assert kids[0] not in report.signalled + report.survivors_killed
    assert _alive(kids[0])  # the teardown (which started it) kills it, by pid
    assert not _alive(proc.pid)


@NEEDS_ROOT_AND_SETPRIV
def test_the_switched_accounts_processes_are_the_payloads_when_named(started):
    """Identity switching: a root pilot names the payload's account (uid=), whose processes alone it
    then kills: root processes in the payload's group and tree (here its root bash and a root sleep)
    are not the payload's, although the pilot is root too."""
    proc = started.popen("sleep 300 & setpriv --reuid=65534 --regid=65534 --clear-groups sleep 300 & wait")
    kids = _wait_for(lambda: [p for p in processes.descendants(proc.pid) if processes._real_uid(p) == 65534])
    root_kids = _wait_for(lambda: [p for p in processes.descendants(proc.pid) if processes._real_uid(p) == 0])
    for pid in processes.descendants(proc.pid):
        started.add(pid)
    assert processes.payload_tree(proc.pid, proc.pid, uid=65534) == set(kids)
    report = processes.kill_tree(proc.pid, proc.pid, grace=GRACE, uid=65534)
    assert set(report.signalled + report.survivors_killed) == set(kids)
    assert not _alive(kids[0])
    assert _alive(proc.pid) and _alive(root_kids[0])  # the teardown (which started them) kills them, by pid
