"""The measurements behind the job monitor (pilot.watchdog decides; this only looks).

Kept thin and bounded: a payload can fill its work dir with millions of files, and the monitor
must not spend the node's I/O on counting them, so every walk stops after `max_files` entries
and reports what it saw (a lower bound for sizes, a best guess for the newest file).
Symbolic links are never followed: inputs linked from elsewhere are not the job's files.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

MAX_FILES = 100_000
# files the pilot (not the payload) writes or that never change: they must not keep a stuck job "alive"
LOOPING_IGNORE = ("*.py", "pilotlog*", "prmon*", "*.lib.tgz", "pandaJob*", "jobState-*", "KILL_REQUEST")


def _files(top: Path | str, max_files: int) -> Iterator[os.DirEntry]:
    """Regular files under `top` (not following links), stopping after `max_files` entries."""
    stack = [os.fspath(top)]
    seen = 0
    while stack:  # bounded: at most max_files entries are looked at
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > max_files:
                        log.warning("stopped walking %s after %d entries", top, max_files)
                        return
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            yield entry
                    except OSError:
                        continue
        except OSError:  # vanished or unreadable: the payload may delete as we look
            continue


def newest_mtime(
    dir: Path | str, ignore: Sequence[str] = LOOPING_IGNORE, *, max_files: int = MAX_FILES
) -> float:
    """The newest modification time (epoch s) of the files under `dir`, skipping `ignore` names; 0 if none."""
    newest = 0.0
    for entry in _files(dir, max_files):
        if any(fnmatch.fnmatch(entry.name, pattern) for pattern in ignore):
            continue
        try:
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
        except OSError:
            continue
    return newest


def dir_size(dir: Path | str, *, max_files: int = MAX_FILES) -> int:
    """Bytes in the regular files under `dir` (apparent size; hard links counted once)."""
    total = 0
    inodes: set[tuple[int, int]] = set()
    for entry in _files(dir, max_files):
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if st.st_nlink > 1:
            if (st.st_dev, st.st_ino) in inodes:
                continue
            inodes.add((st.st_dev, st.st_ino))
        total += st.st_size
    return total


def free_bytes(dir: Path | str) -> int | None:
    """Bytes available to the pilot's user on the file system holding `dir`; None if it cannot be read."""
    try:
        st = os.statvfs(dir)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def file_size(path: Path | str) -> int | None:
    """The size of one file in bytes; None when it does not exist (yet)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over exec from the
    parent, so a pilot started by a big process would report the parent's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
