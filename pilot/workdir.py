"""Directories and files of a job on the worker node, shared by the pilot and its job wrapper.

    <workdir>/PanDA_Pilot_<pid>_<epoch>/        the pilot's home (pilotlog.txt, wrapper configs)
        PanDA_Pilot-<PandaID>/                  one job: the payload runs here
            job.json                            the getJob dict
            jobState-<PandaID>.json             the wrapper's state: phase, payload pid, files, result
            LOCKFILE                            flock'ed by the pilot that owns the job
            KILL_REQUEST                        {"code", "diag"}: the pilot asks the wrapper to kill

The state file is what classic job recovery reads (reference/pilot.md §7): a later pilot finds
job dirs whose owner is gone (the lock is free), reads the phase and the files already
transferred, and finishes the job. Every write is atomic (temp file + rename).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pilot.errors import ERRORS

JOB_DIR_PREFIX = "PanDA_Pilot-"
PILOT_HOME_PREFIX = "PanDA_Pilot_"
KILL_FILE = "KILL_REQUEST"
LOCK_FILE = "LOCKFILE"
JOB_FILE = "job.json"
BOOKKEEPING = (KILL_FILE, LOCK_FILE, JOB_FILE, "recovery.json")
# names the pilot itself uses in a job dir: no job file may take them
RESERVED = frozenset({*BOOKKEEPING, "payload.stdout", "payload.stderr", "wrapper.log"})


def job_dir(home: Path, panda_id: int) -> Path:
    return home / f"{JOB_DIR_PREFIX}{panda_id}"


def state_path(jobdir: Path) -> Path:
    return jobdir / f"jobState-{jobdir.name.removeprefix(JOB_DIR_PREFIX)}.json"


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def read_state(jobdir: Path) -> dict[str, Any]:
    """The state file's content; {} when missing or not an object (the payload shares the dir)."""
    state = read_json(state_path(jobdir))
    return state if isinstance(state, dict) else {}


def update_state(jobdir: Path, **changes: Any) -> dict[str, Any]:
    """Merge `changes` into the job's state file (only the job wrapper writes it)."""
    state = read_state(jobdir)
    state.update(changes)
    state["updated"] = time.time()
    write_json(state_path(jobdir), state)
    return state


def request_kill(jobdir: Path, code: int, diag: str) -> None:
    """Ask the job wrapper to kill the payload; the first request wins."""
    if not (jobdir / KILL_FILE).exists():
        write_json(jobdir / KILL_FILE, {"code": code, "diag": diag})


def kill_request(jobdir: Path) -> tuple[int, str] | None:
    if not (jobdir / KILL_FILE).exists():
        return None
    data = read_json(jobdir / KILL_FILE)
    code = data.get("code") if isinstance(data, dict) else None
    if not isinstance(code, int) or code not in ERRORS:
        return (
            1363,
            "kill requested through an unreadable KILL_REQUEST file",
        )  # still a kill: never ignore it
    return code, str(data.get("diag", ""))


@contextlib.contextmanager
def locked(jobdir: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the job dir's lock (released by the kernel if this process dies); yields False if busy."""
    try:
        fd = os.open(jobdir / LOCK_FILE, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
    except OSError:  # removed meanwhile by another pilot, or not ours
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:  # the dir may have been removed (and the lock file re-created) while we waited
            same = os.fstat(fd).st_ino == os.stat(jobdir / LOCK_FILE, follow_symlinks=False).st_ino
        except OSError:
            same = False
        if not same:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


def make_log_tarball(jobdir: Path, log_lfn: str, queue: str, panda_id: int, exclude: set[str]) -> Path:
    """Tar the job dir as tarball_PandaJob_<id>_<queue>/… into <jobdir>/<log_lfn>.

    Inputs (`exclude`), symlinks, the tarball itself and the bookkeeping files stay out: the
    log is for people reading what the payload did, not a copy of the data.
    """
    target = jobdir / log_lfn
    top = f"tarball_PandaJob_{panda_id}_{queue}"
    skip = {log_lfn, *exclude, *BOOKKEEPING}
    tmp = jobdir / f".{log_lfn}.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(jobdir.rglob("*")):
            rel = path.relative_to(jobdir)
            if rel.parts[0] in skip or path.name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            tar.add(path, arcname=f"{top}/{rel}", recursive=False)
    os.replace(tmp, target)
    return target


def remove(path: Path) -> None:
    """Rename out of every pilot's sight first, then delete (no one can lock a half-deleted dir)."""
    doomed = path.with_name(f".removing-{path.name}-{os.getpid()}")
    try:
        os.rename(path, doomed)
    except OSError:
        doomed = path
    shutil.rmtree(doomed, ignore_errors=True)
