"""The pilot's bookkeeping in the job dir: what a payload could tamper with, and stale pids."""

from __future__ import annotations

import subprocess
import time

import pytest

from pilot import job, supervisor, workdir
from pilot.errors import PilotFailure
from pilot.util import processes


@pytest.mark.parametrize("lfn", ["KILL_REQUEST", "LOCKFILE", "payload.stdout", "jobState-1.json", "job.json"])
def test_job_files_may_not_take_the_pilots_names(lfn):
    with pytest.raises(PilotFailure) as exc:
        job.parse({"PandaID": "1", "inFiles": lfn})
    assert exc.value.code == 1371


@pytest.mark.parametrize("content", ["{}", "[1]", '{"code": "x"}', '{"code": 4242}', "not json"])
def test_a_garbled_kill_request_is_still_a_kill(tmp_path, content):
    (tmp_path / workdir.KILL_FILE).write_text(content)
    assert workdir.kill_request(tmp_path)[0] == 1363


def test_a_garbled_state_file_reads_as_empty(tmp_path):
    jobdir = tmp_path / "PanDA_Pilot-7"
    jobdir.mkdir()
    workdir.state_path(jobdir).write_text("[1, 2]")
    assert workdir.read_state(jobdir) == {}


def test_lock_is_exclusive_and_refused_for_a_vanished_dir(tmp_path):
    jobdir = tmp_path / "PanDA_Pilot-8"
    jobdir.mkdir()
    with workdir.locked(jobdir) as mine:
        assert mine
        probe = subprocess.run(["python3", "-c", f"""
import fcntl, os, sys
fd = os.open({str(jobdir / workdir.LOCK_FILE)!r}, os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(3)
"""], timeout=30)  # fmt: skip
        assert probe.returncode == 3, "another process cannot take the lock"
    workdir.remove(jobdir)
    assert not jobdir.exists()
    with workdir.locked(jobdir, wait=False) as mine:
        assert mine is False


def test_a_left_payload_pid_is_killed_only_if_it_is_still_the_same_process(tmp_path):
    jobdir = tmp_path / "PanDA_Pilot-9"
    jobdir.mkdir()
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        ticks = processes.proc_info(proc.pid).start
        workdir.update_state(jobdir, payload_pid=proc.pid, payload_start_ticks=ticks + 1)  # pid reused
        supervisor._kill_payload_left(jobdir)
        time.sleep(0.2)
        assert proc.poll() is None, "a process with the recorded pid but another start time survives"
        workdir.update_state(jobdir, payload_pid=proc.pid, payload_start_ticks=ticks)
        supervisor._kill_payload_left(jobdir)
        assert proc.wait(timeout=15) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
