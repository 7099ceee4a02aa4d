"""Fixtures for the local DDM tests: empty ddm tables, directory and XRootD RSEs, files on them,
and a real mutual-TLS HTTPS server that records the callbacks it receives."""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import os
import ssl
import subprocess
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from panda_server.ddm.interface import FileInfo
from panda_server.ddm.local import LocalDDM
from panda_server.ddm.local.rses import is_xrootd, replica_url
from panda_server.settings import Settings
from pilot.copytools import xrdcp
from pilot.copytools.base import local_path
from pilot.util.checksum import adler32_file

T0 = dt.datetime(2031, 3, 1, 12, 0, 0)  # the agent's clock in these tests (naive UTC)
SCOPE = "ddmtest"
DDM_TABLES = "ddm.transfers, ddm.subscriptions, ddm.replicas, ddm.dataset_files, ddm.files, ddm.datasets"


@pytest.fixture
def ddm_db(engine):
    """The engine, with the ddm catalog emptied before the test."""
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE " + DDM_TABLES))
    return engine


@pytest.fixture
def dir_rses(tmp_path) -> dict[str, tuple[str, str]]:
    """Three directory RSEs (DIR_A, DIR_B, DIR_C) private to the test."""
    return {name: ("file://localhost", str(tmp_path / "se" / name)) for name in ("DIR_A", "DIR_B", "DIR_C")}


@pytest.fixture
def rses(dir_rses, xrootd) -> dict[str, tuple[str, str]]:
    """The directory RSEs and two XRootD RSEs (XRD_A, XRD_B) on the session's xrootd, private to the test."""
    tag = uuid.uuid4().hex[:8]
    return {**dir_rses, **{name: (xrootd.url, f"/ddmtest-{tag}/{name}") for name in ("XRD_A", "XRD_B")}}


@pytest.fixture
def ddm(ddm_db, dir_rses) -> LocalDDM:
    return LocalDDM(ddm_db, dir_rses)


@pytest.fixture
def settings(pki, tmp_path) -> Settings:
    """Defaults of the DDM settings; the PKI's production proxy and CA dir; storage under tmp_path."""
    return Settings(pki_dir=pki.root, storage_root=tmp_path / "storage")


def name(prefix: str = "ds") -> str:
    """A dataset name of its own for each test."""
    return f"{SCOPE}.{prefix}.{uuid.uuid4().hex[:12]}"


def payload(size: int = 50_000) -> bytes:
    return os.urandom(size)


def info(data: bytes, lfn: str | None = None, guid: str | None = None) -> FileInfo:
    lfn = lfn or f"f.{uuid.uuid4().hex[:10]}.root"
    checksum = f"ad:{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    return FileInfo(lfn, guid or str(uuid.uuid4()), SCOPE, len(data), checksum)


def url_of(rses: dict, rse: str, f: FileInfo) -> str:
    return replica_url(rses[rse], rse, f.scope, f.lfn)


def put(rses: dict, rse: str, f: FileInfo, data: bytes, tmp_path: Path) -> str:
    """Write data at the file's Rucio path on the RSE (xrdcp CLI for XRootD, independent of the
    code under test); returns the URL."""
    url = url_of(rses, rse, f)
    if is_xrootd(url):
        local = tmp_path / f"upload-{uuid.uuid4().hex}"
        local.write_bytes(data)
        env = {**os.environ, "XRD_CONNECTIONRETRY": "1"}
        subprocess.run(["xrdcp", "-s", "-f", "--path", str(local), url], check=True, timeout=60, env=env)
    else:
        path = Path(local_path(url))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return url


def stored(xrootd, url: str) -> tuple[int, str] | None:
    """(size, adler32) read from the storage itself (xrdfs stat/query checksum, or the file); None if absent."""
    if is_xrootd(url):
        path = xrdcp.split_url(url)[1]
        stat = xrootd.xrdfs("stat", path)
        if stat.returncode != 0:
            return None
        size = next(int(line.split()[1]) for line in stat.stdout.splitlines() if line.startswith("Size:"))
        kind, value = xrootd.xrdfs("query", "checksum", path).stdout.split()
        assert kind == "adler32"
        return size, value.zfill(8)
    path = Path(local_path(url))
    return (path.stat().st_size, adler32_file(path)) if path.exists() else None


# ---------------------------------------------------------------- an HTTPS server for callbacks


@dataclasses.dataclass
class CallbackServer:
    url: str  # https://127.0.0.1:<port>/server/panda/datasetCompleted
    calls: list[tuple[str, str]]  # (path with query, client certificate subject) per request
    statuses: list[int]  # answers to give, in order; 200 when empty


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: CallbackServer

    def do_GET(self) -> None:
        cert = self.connection.getpeercert() or {}
        subject = ",".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
        state = self.server_state
        state.calls.append((self.path, subject))
        status = state.statuses.pop(0) if state.statuses else 200
        body = b"True" if status == 200 else b"server error"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def callback_server(pki) -> Iterator[CallbackServer]:
    """HTTPS on 127.0.0.1 with the PKI's host certificate, requiring a client certificate (proxies
    allowed, as the PanDA server does)."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.hostcert, pki.hostkey)
    tls.load_verify_locations(capath=str(pki.ca_dir))
    tls.verify_mode = ssl.CERT_REQUIRED
    tls.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    state = CallbackServer("", [], [])
    handler = type("Handler", (_Handler,), {"server_state": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.url = f"https://127.0.0.1:{server.server_address[1]}/server/panda/datasetCompleted"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
