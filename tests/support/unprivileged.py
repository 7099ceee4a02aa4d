"""Our pilot run as an unprivileged user, and local accounts for identity switching.

A test of what a payload can or cannot read is meaningless with a root pilot (root reads
everything), so the credential tests run the pilot as `pandapilot`. The venv under /root is
out of that user's reach (/root is 0700): the pilot runs with /usr/bin/python3 (requests is
installed there) and PYTHONPATH at this checkout, which is world-readable. Every directory the
user needs is checked with `check_user_access` before the pilot starts.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from tests.interop.realpilot import check_user_access, ensure_pilot_user

ROOT = Path(__file__).resolve().parent.parent.parent
PILOT_USER = "pandapilot"
PYTHON = "/usr/bin/python3"


def require_root() -> None:
    import pytest

    # CI runs as root with /usr/bin/python3: there a missing requirement is a failure, not a skip
    refuse = pytest.fail if os.environ.get("CI") else pytest.skip
    if os.geteuid() != 0:
        refuse("needs root (to run the pilot as another user and to create accounts)")
    if not os.access(PYTHON, os.X_OK):
        refuse(f"{PYTHON} is needed for the unprivileged pilot")


def ensure_user(name: str) -> pwd.struct_passwd:
    """The local account `name` (useradd -m if missing)."""
    ensure_pilot_user(name)
    return pwd.getpwnam(name)


def hand_over(path: Path, user: str) -> None:
    """chown -R user:user path."""
    pw = pwd.getpwnam(user)
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for name in files:
            os.lchown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)


def private_copy(source: Path, directory: Path, user: str) -> Path:
    """A copy of `source` in `directory` (mode 0700), both owned by `user`, the file 0600."""
    directory.mkdir(mode=0o700, exist_ok=True)
    target = directory / source.name
    shutil.copyfile(source, target)
    target.chmod(0o600)
    hand_over(directory, user)
    return target


def pilot_argv(server, queue: str, workdir: Path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "pilot", "-q", queue, "--url", server.https_url, "--ca-dir", str(server.ca_dir),
            "-a", str(workdir), "--getjob-sleep", "0.2", "-v", "1", "--update-interval", "1",
            "--update-attempts", "3", "--transfer-backoff", "0.2", "--min-free-mb", "100", *extra]  # fmt: skip


def run_pilot_as(user: str, server, queue: str, workdir: Path, *extra: str, proxy: Path | None,
                 timeout: float = 180, parent_shell: bool = False) -> subprocess.CompletedProcess:  # fmt: skip
    """Run our pilot as `user`; the proxy goes in X509_USER_PROXY (a command line is public).

    `parent_shell`: start it as a batch job would, from a shell of the same user (which stays its
    parent, dumpable, with X509_USER_PROXY in its environment), not straight from this root process.
    """
    pw = pwd.getpwnam(user)
    workdir.mkdir(parents=True, exist_ok=True)
    hand_over(workdir, user)
    check_user_access(workdir, "-w", user)
    check_user_access(server.ca_dir, "-r", user)
    check_user_access(ROOT / "pilot" / "cli.py", "-r", user)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8",
           "XRD_CONNECTIONRETRY": "1", "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    if proxy is not None:
        env["X509_USER_PROXY"] = str(proxy)
    argv = pilot_argv(server, queue, workdir, *extra)
    if parent_shell:  # not `exec`: the shell waits for the pilot, as a batch job's script does
        argv = ["/bin/sh", "-c", '"$@"; exit $?', "batch-job", *argv]
    return subprocess.run(argv, env=env, cwd=workdir, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def session_members(uid: int, sid: int, *, settle: float = 2.0) -> list[int]:
    """Live (non-zombie) processes of real uid `uid` in session `sid`, after up to `settle` s for them to go."""
    deadline = time.monotonic() + settle
    while True:  # bounded by `settle`
        pids = []
        for name in os.listdir("/proc"):
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                owner = os.stat(f"/proc/{name}").st_uid
            except (OSError, IndexError):
                continue
            if owner == uid and int(fields[3]) == sid and fields[0] not in (b"Z", b"X"):
                pids.append(int(name))
        if not pids or time.monotonic() > deadline:
            return sorted(pids)
        time.sleep(0.1)
