"""A real XRootD storage element for tests, and a TCP listener that never answers (a hanging SE).

xrootd runs in the foreground as our child (start_new_session, not -b), so it is ended by its PID;
it drops privileges to user `xrootd` (-R), so its data, admin and log dirs belong to that user.
Facts behind the config: reference/feasibility.md §4.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from panda_server.db.localpg import free_port

XROOTD = "/usr/bin/xrootd"
XRDFS = "/usr/bin/xrdfs"
USER = "xrootd"
READY_LIMIT = 20.0  # s to wait for `xrdfs ls /` to answer


@dataclasses.dataclass
class XrdServer:
    port: int
    url: str  # root://127.0.0.1:<port>
    data_dir: Path  # oss.localroot: root://…//a/b is data_dir/a/b
    pid: int
    log: Path

    def path(self, remote: str) -> Path:
        """The file on disk behind a server path ("/a/b")."""
        return self.data_dir / remote.lstrip("/")

    def xrdfs(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run `xrdfs <url> args…` (one connection try, bounded)."""
        env = {**os.environ, "XRD_CONNECTIONRETRY": "1", "XRD_REQUESTTIMEOUT": "10"}
        return subprocess.run(
            [XRDFS, self.url, *args], capture_output=True, text=True, timeout=timeout, env=env
        )


def ensure_user() -> pwd.struct_passwd:
    """The `xrootd` system user (created when missing: we are root in the test environment)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-r", "-s", "/usr/sbin/nologin", USER], check=True, timeout=30)
        return pwd.getpwnam(USER)


def _config(data: Path, admin: Path, port: int) -> str:
    return (
        f"all.export /\noss.localroot {data}\nall.adminpath {admin}\nall.pidpath {admin}\n"
        f"xrd.port {port}\nxrd.allow host localhost\nxrootd.chksum adler32\n"
    )


@contextlib.contextmanager
def running_xrootd(base: Path, port: int | None = None) -> Iterator[XrdServer]:
    """Start xrootd on `port` (default: a free one) with its files under base; stop it (by PID) on exit.

    Starting it again with the same base and port brings the same storage element back.
    """
    user = ensure_user()
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    dirs = {name: base / name for name in ("data", "admin", "logs")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
        os.chown(d, user.pw_uid, user.pw_gid)
        d.chmod(0o755)
    port = port or free_port()
    cfg = base / "xrootd.cfg"
    cfg.write_text(_config(dirs["data"], dirs["admin"], port))
    log = dirs["logs"] / "xrootd.log"
    argv = [XROOTD, "-c", str(cfg), "-l", str(log), "-R", USER]
    with open(base / "xrootd.out", "wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = XrdServer(port, f"root://127.0.0.1:{port}", dirs["data"], proc.pid, log)
    try:
        _wait_ready(server, proc, base)
        yield server
    finally:
        _stop(proc)


def _wait_ready(server: XrdServer, proc: subprocess.Popen[bytes], base: Path) -> None:
    deadline = time.monotonic() + READY_LIMIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if server.xrdfs("ls", "/", timeout=5).returncode == 0:
                return
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.2)
    output = (base / "xrootd.out").read_text(errors="replace")[-2000:]
    logtail = server.log.read_text(errors="replace")[-2000:] if server.log.exists() else ""
    raise RuntimeError(
        f"xrootd did not come up on port {server.port} (rc {proc.poll()}): {output}\n{logtail}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM our xrootd by PID, wait, SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclasses.dataclass
class HangingServer:
    port: int
    url: str  # root://127.0.0.1:<port>
    accepted: list[socket.socket]


@contextlib.contextmanager
def hanging_server() -> Iterator[HangingServer]:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers; closes them on exit."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    server = HangingServer(port, f"root://127.0.0.1:{port}", [])
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                time.sleep(0.1)
                continue
            server.accepted.append(conn)

    thread = threading.Thread(target=accept_loop, name=f"hanging-{port}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in server.accepted:
            conn.close()
