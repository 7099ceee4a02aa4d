"""Start the real server for tests and benchmarks: two gunicorn processes (https, http)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from panda_server.db.localpg import free_port
from panda_server.tokens import LOCAL_ISSUER

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclasses.dataclass
class RunningServer:
    https_url: str
    http_url: str
    https_port: int
    http_port: int
    ca_dir: Path
    pki: object
    storage_root: Path
    logs: Path

    def session(self, proxy: Path | None) -> requests.Session:
        """A keep-alive HTTPS session presenting `proxy` (None: no client certificate)."""
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override s.verify
        s.verify = str(self.ca_dir)
        if proxy is not None:
            s.cert = str(proxy)
        return s


def server_env(
    *,
    db_url: str,
    pki,
    https_port: int,
    http_port: int,
    storage_root: Path,
    cache_dir: Path,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PANDA_DATABASE_URL=db_url, PANDA_PKI_DIR=str(pki.root), PANDA_HTTPS_PORT=str(https_port),
        PANDA_HTTP_PORT=str(http_port), PANDA_HOST="127.0.0.1", PANDA_SERVER_NAME="127.0.0.1",
        PANDA_STORAGE_ROOT=str(storage_root), PANDA_CACHE_DIR=str(cache_dir), PANDA_WORKERS="2",
        PANDA_THREADS="8", PANDA_USER_STATUS_TTL="0",  # a disabled user is refused at once
    )  # fmt: skip
    # trust the test PKI's local token issuer (panda-ca token / tokens.mint) for Bearer tokens
    env["PANDA_TOKEN_ISSUERS"] = f"{LOCAL_ISSUER}={pki.token_issuer_pub}"
    env["PANDA_TOKEN_ISSUER_VOS"] = f"{LOCAL_ISSUER}=atlas"
    env.update(extra or {})
    return env


def _start(kind: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "panda_server" / "gunicorn_conf.py"),
           "panda_server.wsgi:application"]  # fmt: skip
    out = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, env={**env, "PANDA_LISTEN": kind}, stdout=out, stderr=subprocess.STDOUT,
                            cwd=ROOT, start_new_session=True)  # fmt: skip


def _wait_alive(url: str, proc: subprocess.Popen, log: Path, session: requests.Session) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if session.get(f"{url}/server/panda/isAlive", timeout=5).text == "alive=yes":
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} not alive after 60 s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Stop a gunicorn we started: SIGTERM to its process group, SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def running_server(
    base: Path,
    *,
    db_url: str,
    pki,
    extra_env: dict[str, str] | None = None,
) -> Iterator[RunningServer]:
    base.mkdir(parents=True, exist_ok=True)
    storage, cache = base / "storage", base / "cache"
    storage.mkdir(exist_ok=True)
    cache.mkdir(exist_ok=True)
    https_port, http_port = free_port(), free_port()
    env = server_env(db_url=db_url, pki=pki, https_port=https_port, http_port=http_port,
                     storage_root=storage, cache_dir=cache, extra=extra_env)  # fmt: skip
    s = RunningServer(f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", https_port,
                      http_port, pki.ca_dir, pki, storage, base)  # fmt: skip
    procs = []
    try:
        for kind, url in (("https", s.https_url), ("http", s.http_url)):
            log = base / f"gunicorn-{kind}.log"
            procs.append(_start(kind, env, log))
            _wait_alive(url, procs[-1], log, s.session(pki.user_proxy))
        yield s
    finally:
        for p in procs:
            stop(p)
