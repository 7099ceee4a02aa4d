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

The payload shares the job dir (and, under identity switching, writes into it as another user
while the pilot is root), so the pilot never follows a name the payload could have planted:
temp files are created exclusively (O_EXCL|O_NOFOLLOW, random names, mode 0600), files are read
without following links and only when regular, and the log tarball walks the dir by descriptor and
leaves out hard links (and, under identity switching, files that are neither the payload
account's nor the pilot's own).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from pilot.errors import ERRORS

JOB_DIR_PREFIX = "PanDA_Pilot-"
PILOT_HOME_PREFIX = "PanDA_Pilot_"
KILL_FILE = "KILL_REQUEST"
LOCK_FILE = "LOCKFILE"
JOB_FILE = "job.json"
BOOKKEEPING = (KILL_FILE, LOCK_FILE, JOB_FILE, "recovery.json")
WRITTEN_BY_PILOT = ("payload.stdout", "payload.stderr", "wrapper.log")  # made by the pilot, for the log
# names the pilot itself uses in a job dir: no job file may take them
RESERVED = frozenset({*BOOKKEEPING, *WRITTEN_BY_PILOT})
log = logging.getLogger("pilot.workdir")


def job_dir(home: Path, panda_id: int) -> Path:
    return home / f"{JOB_DIR_PREFIX}{panda_id}"


def state_path(jobdir: Path) -> Path:
    return jobdir / f"jobState-{jobdir.name.removeprefix(JOB_DIR_PREFIX)}.json"


def write_json(path: Path, data: Any) -> None:
    """Replace `path` atomically by a new file only this uid can read (mode 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    """The JSON in a regular file (never through a link, never blocking on a FIFO); None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, encoding="utf-8") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return None
            return json.load(fh)
    except (OSError, ValueError):
        return None


def regular_file(path: Path) -> os.stat_result | None:
    """lstat of `path` when it is a regular file itself (not a link to one); None otherwise."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


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


def make_log_tarball(jobdir: Path, log_lfn: str, queue: str, panda_id: int, exclude: set[str], *,
                     payload_uid: int | None = None, pilot_files: Collection[str] = ()) -> Path:  # fmt: skip
    """Tar the job dir as tarball_PandaJob_<id>_<queue>/… into <jobdir>/<log_lfn>.

    Inputs (`exclude`), symlinks, the tarball itself and the bookkeeping files stay out: the
    log is for people reading what the payload did, not a copy of the data. The walk goes by
    directory descriptor and opens with O_NOFOLLOW: a payload that swaps a directory for a link
    cannot make the pilot pack a file from elsewhere (its credentials, /proc/self/fd/…). Hard
    links stay out (with fs.protected_hardlinks=0 a payload may link in a file it cannot read);
    under identity switching (`payload_uid`) so do files that are neither that account's nor the
    pilot's own at the top (WRITTEN_BY_PILOT, the state file, `pilot_files`).
    """
    target = jobdir / log_lfn
    top = f"tarball_PandaJob_{panda_id}_{queue}"
    skip = {log_lfn, *exclude, *BOOKKEEPING}
    ours = {*WRITTEN_BY_PILOT, state_path(jobdir).name, *pilot_files}
    left_out: list[str] = []
    fd, tmp = tempfile.mkstemp(prefix=f".{log_lfn}.", suffix=".tmp", dir=jobdir)
    try:
        os.fchmod(fd, 0o644)  # as a tarball written with the usual umask: storage must read it
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for dirpath, dirnames, filenames, dirfd in os.fwalk(jobdir, follow_symlinks=False):
                rel_dir = os.path.relpath(dirpath, jobdir)
                if rel_dir == ".":
                    dirnames[:] = [d for d in dirnames if d not in skip]
                dirnames.sort()
                for name in sorted(filenames):
                    if name.startswith(".") or (rel_dir == "." and name in skip):
                        continue
                    rel = os.path.normpath(os.path.join(rel_dir, name))
                    if not _add_file(tar, dirfd, name, f"{top}/{rel}", _owners(payload_uid, rel in ours)):
                        left_out.append(rel)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if left_out:
        log.info("log tarball: left out %d links (symbolic or hard), special files or files not the "
                 "payload's: %s", len(left_out), ", ".join(left_out[:20]))  # fmt: skip
    return target


def _owners(payload_uid: int | None, pilots_own: bool) -> set[int] | None:
    """Whose file may be packed: anybody's (None) without identity switching; else the payload
    account's, and this (root) wrapper's too for the pilot's own top-level files."""
    if payload_uid is None:
        return None
    return {payload_uid, os.geteuid()} if pilots_own else {payload_uid}


def _add_file(tar: tarfile.TarFile, dirfd: int, name: str, arcname: str, owners: set[int] | None) -> bool:
    """Add one regular file opened relative to its directory; False when it is left out: a link
    (symbolic or hard), not a regular file, not one of `owners` (None: any), unreadable."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError:  # a link (ELOOP), gone, or unreadable
        return False
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())  # of what was opened: no swap between check and read
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            return False
        if owners is not None and st.st_uid not in owners:
            return False
        tar.addfile(tar.gettarinfo(arcname=arcname, fileobj=fh), fh)
    return True


def remove(path: Path) -> None:
    """Rename out of every pilot's sight first, then delete (no one can lock a half-deleted dir)."""
    doomed = path.with_name(f".removing-{path.name}-{os.getpid()}")
    try:
        os.rename(path, doomed)
    except OSError:
        doomed = path
    shutil.rmtree(doomed, ignore_errors=True)
