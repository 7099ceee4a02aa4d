"""Small parts of the factory: the proxy check, queue environ, the pilot tarball, the log server."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import tarfile

import pytest
import requests

from autopilot import logserver, pilotcode
from autopilot.proxy import proxy_problem
from autopilot.submitters.base import queue_environ
from panda_server.db.localpg import free_port
from schedconfig.model import QueueSpec


@pytest.fixture(scope="module")
def proxy_file(tmp_path_factory):
    from panda_server import ca

    return ca.create_pki(tmp_path_factory.mktemp("pki")).pilot_proxy


def not_after(path) -> dt.datetime:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.replace(tzinfo=None)


def test_proxy_problems(proxy_file, tmp_path):
    end = not_after(proxy_file)
    assert proxy_problem(proxy_file, end - dt.timedelta(days=2)) is None
    warn = proxy_problem(proxy_file, end - dt.timedelta(hours=5))
    assert not warn.fatal and "expires in 5.0 h" in warn.text
    soon = proxy_problem(proxy_file, end - dt.timedelta(minutes=30))
    assert soon.fatal and "expires in 30 min" in soon.text and "no pilots submitted" in soon.text
    assert proxy_problem(proxy_file, end + dt.timedelta(seconds=1)).text.endswith(
        "has expired: no pilots submitted; renew it"
    )
    missing = proxy_problem(tmp_path / "nope", end)
    assert missing.fatal and "unreadable" in missing.text
    (tmp_path / "junk").write_text("not a certificate")
    assert proxy_problem(tmp_path / "junk", end).fatal


def test_queue_environ():
    q = QueueSpec(nickname="Q", cloud="C", environ="A=1  B=x=y C=")  # split on whitespace, as the pilot does
    assert queue_environ(q) == {"A": "1", "B": "x=y", "C": ""}
    for bad in ("NOEQUALS", "1A=x", "A-B=x", "A='two words'"):
        with pytest.raises(ValueError):
            queue_environ(QueueSpec(nickname="Q", cloud="C", environ=bad))


def test_pilot_tarball_is_reproducible_and_runnable_contents(tmp_path):
    path, sha = pilotcode.build(tmp_path / "a")
    again, sha2 = pilotcode.build(tmp_path / "b")
    assert sha == sha2 == hashlib.sha256(path.read_bytes()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(path.read_bytes())) as tar:
        names = tar.getnames()
        assert all(m.uid == 0 and m.mtime == 0 and m.mode == 0o644 for m in tar.getmembers())
    assert "pilot/__main__.py" in names and "panda_server/protocol/signing.py" in names
    assert "panda_server/__init__.py" in names
    assert not any("__pycache__" in n or n.startswith(("panda_server/web", "panda_server/db")) for n in names)


def test_log_server_serves_logs_as_text_and_nothing_else(tmp_path):
    logs = tmp_path / "logs"
    (logs / "2026-11-25" / "Q").mkdir(parents=True)
    (logs / "2026-11-25" / "Q" / "tp_x.0.out").write_text("pilot log\n")
    (tmp_path / "secret.txt").write_text("outside")
    port = free_port()
    server = logserver.serve(logs, "127.0.0.1", port)
    try:
        base = f"http://127.0.0.1:{port}"
        r = requests.get(f"{base}/2026-11-25/Q/tp_x.0.out", timeout=10)
        assert (r.status_code, r.text, r.headers["Content-Type"]) == (
            200,
            "pilot log\n",
            "text/plain; charset=utf-8",
        )
        assert requests.get(f"{base}/../secret.txt", timeout=10).status_code == 404
        assert requests.get(f"{base}/%2e%2e/secret.txt", timeout=10).status_code == 404
        assert requests.post(f"{base}/2026-11-25/Q/tp_x.0.out", data="x", timeout=10).status_code == 501
        assert requests.put(f"{base}/2026-11-25/Q/new.out", data="x", timeout=10).status_code == 501
        assert not (logs / "2026-11-25" / "Q" / "new.out").exists()
        (logs / "2026-11-25" / "Q" / "tp_x.0.sh").write_text("export SECRET=1")  # job scripts are not served
        assert requests.get(f"{base}/2026-11-25/Q/tp_x.0.sh", timeout=10).status_code == 404
        (logs / "escape.out").symlink_to(tmp_path / "secret.txt")  # a link out of the directory leads nowhere
        assert requests.get(f"{base}/escape.out", timeout=10).status_code == 404
        assert requests.get(f"{base}/2026-11-25/Q/", timeout=10).status_code == 200  # listings stay
    finally:
        server.shutdown()
