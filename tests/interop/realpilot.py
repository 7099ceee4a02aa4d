"""Harness that runs the real PyPI ``panda-pilot`` (3.7.0.36) against a local server.

Not a test module: the interop tests import it.  The real pilot's clean-up kills every
orphan process of its own Unix user, so it is only ever run here as its own user
(``pandapilot``), inside its own PID namespace, with ``PILOT_NOKILL=1`` and under
``timeout`` (see shared/reference/pilot.md sections 12-13).  Needs root (useradd, runuser,
unshare) plus ``/usr/bin/python3``, ``curl`` and ``tar``; the pilot needs no pip packages.

Every path the pilot touches (the source tree, the work dir, ``ca_dir``, queuedata files,
the SE directory, ``HARVESTER_WORKDIR``) must be reachable by the pilot user, so its parent
directories need o+x: pytest's ``/tmp/pytest-of-root`` is 0700, so use another base
directory (or chmod it).  ``run_pilot`` checks the ones it is given and raises otherwise.
Pass ``LOCAL_AGIS_SCHEDCONF=<file with {queue: queuedata}>`` in ``extra_env`` or the pilot
spends about a minute failing to reach CRIC.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PILOT_VERSION = "3.7.0.36"
PILOT_USER = "pandapilot"
PILOT_PYTHON = "/usr/bin/python3"  # the pyenv tree under /root is 0700: not usable by another user
KILL_GRACE = 30  # `timeout -k`: SIGKILL this long after the SIGTERM


def ensure_pilot_source(cache_dir: Path) -> Path:
    """Download and unpack the panda-pilot sdist once; return the dir holding ``pilot.py``."""
    cache_dir = Path(cache_dir).resolve()
    dest = cache_dir / f"panda-pilot-{PILOT_VERSION}"
    if (dest / "pilot.py").is_file():
        return dest
    cache_dir.mkdir(parents=True, exist_ok=True)
    sdists = sorted(cache_dir.glob(f"panda*pilot-{PILOT_VERSION}.tar.gz"))
    if not sdists:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps"]
        pip += ["--no-binary", ":all:", "-d", str(cache_dir), f"panda-pilot=={PILOT_VERSION}"]
        subprocess.run(pip, check=True, capture_output=True, text=True, timeout=600)
        sdists = sorted(cache_dir.glob(f"panda*pilot-{PILOT_VERSION}.tar.gz"))
        if not sdists:
            raise RuntimeError(f"pip download left no panda-pilot sdist in {cache_dir}")
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache_dir))
    try:
        with tarfile.open(sdists[0]) as tar:
            tar.extractall(tmp, filter="data")
        top = next((p.parent for p in tmp.glob("*/pilot.py")), None)
        if top is None:
            raise RuntimeError(f"no pilot.py in {sdists[0]}")
        make_world_readable(top)
        try:
            top.rename(dest)
        except OSError:  # somebody else (another xdist worker) got there first
            if not (dest / "pilot.py").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    os.chmod(cache_dir, os.stat(cache_dir).st_mode | 0o755)
    return dest


def make_world_readable(root: Path) -> None:
    """``chmod -R a+rX root``."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o555)
        for name in files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                mode = os.stat(p).st_mode
                os.chmod(p, mode | 0o444 | (0o111 if mode & 0o111 else 0))


def ensure_pilot_user(name: str = PILOT_USER) -> str:
    """Create the pilot's own Unix user (``useradd -m -s /bin/bash``) if it is missing."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        r = subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], capture_output=True, text=True)
        try:
            pwd.getpwnam(name)  # tolerate a concurrent creation
        except KeyError:
            raise RuntimeError(f"useradd {name} failed: {r.stderr.strip()}") from None
    return name


def check_user_access(path: Path, test: str = "-r", user: str = PILOT_USER) -> None:
    """Raise unless ``test <test> path`` succeeds as ``user`` (e.g. -r, -w, -x, -d)."""
    r = subprocess.run(["runuser", "-u", user, "--", "test", test, str(path)], capture_output=True)
    if r.returncode != 0:
        raise PermissionError(
            f"user {user!r} fails 'test {test} {path}': make it and every parent directory "
            f"accessible to other users (e.g. chmod o+x on the parents, chmod -R a+rX on the tree)"
        )


@dataclass
class PilotRun:
    returncode: int
    stdout: str
    stderr: str
    workdir: Path
    elapsed: float
    stopped: bool = False  # killed by run_pilot after ``watch`` said done (see run_pilot)

    def pilotlog(self) -> str:
        """The pilot's own ``pilotlog.txt`` (same content as stdout with ``-d``), or ''."""
        p = self.workdir / "pilotlog.txt"
        return p.read_text(errors="replace") if p.exists() else ""


def run_pilot(
    *,
    source: Path,
    workdir: Path,
    queue: str,
    server_url: str,
    port: int,
    proxy_file: Path,
    ca_dir: Path,
    queuedata_url: str,
    storagedata_url: str,
    label: str = "test",
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 600,
    getjob_requests: int = 1,
    user: str = PILOT_USER,
    watch: Callable[[], bool] | None = None,
    stop_grace: float = 20,
) -> PilotRun:
    """Run pilot.py once, isolated, in ``workdir`` (its PILOT_HOME); wait for it to exit.

    Use a fresh ``workdir`` per run: the pilot caches ``queuedata.json`` there and a stale
    copy wins over ``queuedata_url``.  The exit code alone proves little (3.7 exits 0 after a
    failed or empty getJob): assert on what the server recorded.

    ``ca_dir`` is the hashed CA directory (``openssl rehash``) curl verifies the server with;
    with 3.7 curl also trusts the CA certificates in ``proxy_file`` (``--cacert``).

    ``watch``, if given, is called about once a second while the pilot runs (from this
    thread; an exception from it kills the pilot and propagates).  Once it returns True (say,
    the server holds the final state), the pilot gets ``stop_grace`` more seconds to exit by
    itself, then its namespace is killed and ``PilotRun.stopped`` is True.  3.7 sometimes
    idles ~2 min after a final update its job monitor sent (a race with its queue monitor).
    """
    ensure_pilot_user(user)
    pw = pwd.getpwnam(user)
    source, workdir, ca_dir = Path(source).resolve(), Path(workdir).resolve(), Path(ca_dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    proxy = workdir / "x509up"
    shutil.copyfile(proxy_file, proxy)
    os.chown(proxy, pw.pw_uid, pw.pw_gid)
    os.chmod(proxy, 0o600)
    link = workdir / "pilot3"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(source, target_is_directory=True)
    os.lchown(link, pw.pw_uid, pw.pw_gid)
    os.chown(workdir, pw.pw_uid, pw.pw_gid)
    os.chmod(workdir, 0o755)
    check_user_access(workdir, "-w", user)
    check_user_access(proxy, "-r", user)
    check_user_access(source / "pilot.py", "-r", user)
    check_user_access(ca_dir, "-x", user)
    check_user_access(ca_dir, "-r", user)

    env = {"HOME": pw.pw_dir, "PATH": "/usr/bin:/bin", "PILOT_NOKILL": "1"}
    env |= {"X509_USER_PROXY": str(proxy), "X509_CERT_DIR": str(ca_dir), **(extra_env or {})}
    if env["PILOT_NOKILL"] != "1":
        raise ValueError("PILOT_NOKILL must stay 1")
    cmd = [*"setsid unshare --pid --fork --mount-proc --kill-child runuser -u".split(), user, "--"]
    cmd += ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
    cmd += ["timeout", "-k", str(KILL_GRACE), str(timeout), PILOT_PYTHON, "pilot3/pilot.py", "-q", queue]
    cmd += [*"--pilot-user generic -w generic -d -j".split(), label, "--url", server_url, "-p", str(port)]
    cmd += ["--queuedata-url", queuedata_url, "--storagedata-url", storagedata_url]
    cmd += ["--use-rucio-traces", "false", "-v", str(getjob_requests), *extra_args]
    out_path, err_path = workdir / "pilot.stdout", workdir / "pilot.stderr"
    (workdir / "pilot.cmd").write_text(" ".join(cmd) + "\n")
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # setsid does not fork here (the child is not a group leader), so proc.pid leads
        # the group that holds unshare and the namespace's init (runuser).
        proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            rc, stopped = _wait(proc, t0 + timeout + KILL_GRACE + 60, watch, stop_grace)
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
    elapsed = time.monotonic() - t0
    stdout, stderr = (f.read_text(errors="replace") for f in (out_path, err_path))
    return PilotRun(rc, stdout, stderr, workdir, elapsed, stopped)


def _wait(
    proc: subprocess.Popen, deadline: float, watch: Callable[[], bool] | None, stop_grace: float
) -> tuple[int, bool]:
    """(exit code, whether we killed it) once the pilot has exited or been killed."""
    stop_at = None
    while True:
        try:
            return proc.wait(timeout=1), False
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if stop_at is None and watch is not None and watch():
            stop_at = now + stop_grace
        if now > deadline or (stop_at is not None and now > stop_at):
            _kill_group(proc)  # killing the namespace's init ends everything inside it
            return proc.wait(), stop_at is not None and now > stop_at


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group we started (setsid), nothing else
    except ProcessLookupError:
        pass


def find_outputs(se_root: Path) -> list[Path]:
    """All regular files under a storage (SE) directory, sorted."""
    se_root = Path(se_root)
    return sorted(p for p in se_root.rglob("*") if p.is_file()) if se_root.exists() else []


def last_lines(text: str, n: int = 40) -> str:
    """The last ``n`` lines of ``text``, for assertion messages."""
    return "\n".join(text.splitlines()[-n:])
