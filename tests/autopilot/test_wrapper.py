"""The pilot wrapper (autopilot/wrapper.sh) on its own: checks, finding or fetching the pilot, the
arguments the pilot gets, exit codes reported, a TERM passed on. The pilot here is a stand-in."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from autopilot import logserver
from autopilot.factory import WRAPPER
from panda_server.db.localpg import free_port

STAND_IN = """import json, os, signal, sys, time
def term(*_):
    open(os.environ["MARK"], "w").write("TERM")
    sys.exit(int(os.environ.get("TERM_RC", "143")))
signal.signal(signal.SIGTERM, term)
json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "jsid": os.environ.get("PANDA_JSID"),
           "https_proxy": os.environ.get("https_proxy")}, open(os.environ["MARK"] + ".json", "w"))
for _ in range(int(os.environ.get("SLEEP", "0")) * 10):
    time.sleep(0.1)
sys.exit(int(os.environ.get("RC", "0")))
"""


def cert(path: Path, *, days: float) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "proxy")])
    now = dt.datetime.now(dt.UTC)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(1).not_valid_before(now - dt.timedelta(days=2)).not_valid_after(now + dt.timedelta(days=days))
         .sign(key, hashes.SHA256()))  # fmt: skip
    path.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def worker(tmp_path):
    """A pilot home with the stand-in pilot, a valid proxy, a CA dir: the environment the factory gives."""
    home = tmp_path / "code"
    (home / "pilot").mkdir(parents=True)
    (home / "pilot" / "__main__.py").write_text(STAND_IN)
    (tmp_path / "ca").mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "PILOT_PYTHON": sys.executable,
           "PILOT_HOME": str(home), "X509_USER_PROXY": str(cert(tmp_path / "proxy", days=2)),
           "X509_CERT_DIR": str(tmp_path / "ca"), "PILOT_WORKDIR": str(tmp_path / "work"),
           "PILOT_EXIT_FILE": str(tmp_path / "pilot.rc"), "PANDA_JSID": "f1", "PANDA_TPID": "tp_1.0",
           "GTAG": "http://h:1/d/Q/tp_1.0.out", "MARK": str(tmp_path / "mark"), "https_proxy": "http://p:3128",
           "PILOT_MIN_FREE_MB": "1"}  # fmt: skip
    return tmp_path, env


def run(env, *args, timeout=60):
    return subprocess.run([str(WRAPPER), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_runs_the_pilot_with_the_tracking_ids_and_reports_its_exit(worker):
    tmp, env = worker
    out = run({**env, "RC": "82"}, "-q", "QUEUE_A", "-w", "https://server:25443", "--", "--max-jobs", "3")
    assert out.returncode == 82, out.stdout + out.stderr
    seen = json.loads((tmp / "mark.json").read_text())
    assert seen["argv"] == ["-q", "QUEUE_A", "--url", "https://server:25443", "-a", seen["argv"][5],
                            "--scheduler-id", "f1", "--pilot-id", "http://h:1/d/Q/tp_1.0.out", "--max-jobs", "3"]  # fmt: skip
    assert seen["argv"][5].startswith(str(tmp / "work" / "autopilot-"))
    assert seen["https_proxy"] is None  # unset, as the classic wrapper did
    assert not Path(seen["argv"][5]).exists()  # its temporary directory is gone
    assert (tmp / "pilot.rc").read_text() == "82\n"
    assert out.stdout.splitlines()[-1].endswith("wrapper: exit code 82")
    assert "pilot tp_1.0 of factory f1" in out.stdout


@pytest.mark.parametrize("change, code, message", [
    ({"X509_USER_PROXY": "/nonexistent/proxy"}, 91, "no readable proxy"),
    ({"X509_CERT_DIR": "/nonexistent/ca"}, 91, "no CA directory"),
    ({"PILOT_PYTHON": "/nonexistent/python3"}, 91, "no python"),
    ({"PILOT_MIN_FREE_MB": "999999999"}, 91, "MB free in"),
    ({"PILOT_HOME": "/tmp"}, 92, "no pilot in /tmp"),
    ({"PILOT_CODE_URL": "http://127.0.0.1:9/x.tar.gz"}, 92, "without PILOT_CODE_SHA256"),
])  # fmt: skip
def test_a_worker_that_fails_a_check_runs_nothing(worker, change, code, message):
    tmp, env = worker
    out = run({**env, **change}, "-q", "Q", "-w", "https://s")
    assert out.returncode == code and message in out.stdout, out.stdout + out.stderr
    assert not (tmp / "mark.json").exists()  # the pilot never started
    assert (tmp / "pilot.rc").read_text() == f"{code}\n"


def test_an_expiring_proxy_is_refused(worker):
    tmp, env = worker
    out = run({**env, "X509_USER_PROXY": str(cert(tmp / "old", days=-0.5))}, "-q", "Q", "-w", "https://s")
    assert out.returncode == 91 and "expired or expires within 10 minutes" in out.stdout
    out = run({**env, "X509_USER_PROXY": str(cert(tmp / "soon", days=0.003))}, "-q", "Q", "-w", "https://s")
    assert out.returncode == 91  # 4 minutes left


def test_bad_usage(worker):
    _, env = worker
    assert run(env).returncode == 90
    assert run(env, "-q", "Q").returncode == 90
    assert run(env, "-x").returncode == 90
    helped = run(env, "-h")
    assert helped.returncode == 0 and "usage:" in helped.stderr


def test_fetches_the_pilot_code_and_checks_its_checksum(worker):
    tmp, env = worker
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp / "code" / "pilot", arcname="pilot")
    served = tmp / "served"
    served.mkdir()
    (served / "pilotcode.tar.gz").write_bytes(buffer.getvalue())
    port = free_port()
    server = logserver.serve(served, "127.0.0.1", port)
    try:
        fetch = {
            **env,
            "PILOT_HOME": "/nonexistent",
            "PILOT_CODE_URL": f"http://127.0.0.1:{port}/pilotcode.tar.gz",
        }
        good = hashlib.sha256(buffer.getvalue()).hexdigest()
        out = run({**fetch, "PILOT_CODE_SHA256": good}, "-q", "Q", "-w", "https://s")
        assert out.returncode == 0 and f"pilot code fetched from {fetch['PILOT_CODE_URL']}" in out.stdout
        (tmp / "mark.json").unlink()
        out = run({**fetch, "PILOT_CODE_SHA256": "0" * 64}, "-q", "Q", "-w", "https://s")
        assert out.returncode == 92 and "is not the expected" in out.stdout
        assert not (tmp / "mark.json").exists()
        out = run({**fetch, "PILOT_CODE_SHA256": good, "PILOT_CODE_URL": fetch["PILOT_CODE_URL"] + ".missing"},
                  "-q", "Q", "-w", "https://s")  # fmt: skip
        assert out.returncode == 92 and "cannot fetch" in out.stdout
    finally:
        server.shutdown()


def test_a_term_from_the_batch_system_reaches_the_pilot(worker):
    tmp, env = worker
    proc = subprocess.Popen([str(WRAPPER), "-q", "Q", "-w", "https://s"], env={**env, "SLEEP": "60", "TERM_RC": "7"},
                            stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (tmp / "mark.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (tmp / "mark.json").exists()
        os.kill(proc.pid, signal.SIGTERM)  # the wrapper only, as a batch system's first signal may be
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (tmp / "mark").read_text() == "TERM"
    assert proc.returncode == 7 and "passing TERM to the pilot" in out  # the pilot's own exit code
    assert (tmp / "pilot.rc").read_text() == "7\n"


def test_a_term_before_the_pilot_starts_ends_the_wrapper(worker):
    tmp, env = worker
    slow = tmp / "slowpython"  # the python check is where the wrapper is when the TERM comes (bash
    # runs the trap once that check returns)
    slow.write_text(f'#!/bin/bash\nsleep 3\nexec {sys.executable} "$@"\n')
    slow.chmod(0o755)
    proc = subprocess.Popen([str(WRAPPER), "-q", "Q", "-w", "https://s"], env={**env, "PILOT_PYTHON": str(slow)},
                            stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        time.sleep(1)
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143 and "terminated before the pilot started" in out
    assert not (tmp / "mark.json").exists()
