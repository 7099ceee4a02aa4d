"""pilot.credentials with real processes: the proxy in a memfd, non-dumpable holders, the handover.

What a same-uid process can read is only meaningful without root's privileges, so the holder
and the attacker run as the unprivileged user `pandapilot` (/usr/bin/python3, PYTHONPATH at
this checkout); those tests need root to switch users and are skipped otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilot import cli, config, credentials
from pilot.job import parse
from pilot.wrapper.runjob import payload_env
from tests.support import unprivileged

ROOT = Path(__file__).resolve().parent.parent.parent
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"


def test_credential_variables_never_reach_the_payload(tmp_path, monkeypatch):
    monkeypatch.setenv("X509_USER_PROXY", "/tmp/x509up_u0")
    job = parse({"PandaID": "7", "transformation": "/bin/true"})
    queue_environ = {"X509_USER_PROXY": "/x", "BEARER_TOKEN": "t", "PANDA_AUTH_ID_TOKEN": "t",
                     "X509_USER_KEY": "/k", "BEARER_TOKEN_FILE": "/t", "FRONTIER_SERVER": "ok"}  # fmt: skip
    env = payload_env(job, tmp_path, {"payload_environ": queue_environ, "pilot_home": str(tmp_path),
                                      "queuedata": {"nickname": "Q", "siteid": "S"}})  # fmt: skip
    assert env["FRONTIER_SERVER"] == "ok" and env["PANDAID"] == "7"
    assert not [k for k in env if credentials.is_credential_variable(k)]
    assert credentials.without_credentials({"X509_CERT_DIR": "/ca", "PANDA_AUTH_VO": "atlas"}) == {
        "X509_CERT_DIR": "/ca"
    }


def _hooks(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A queue environ that would make `bash -c 'id -u'` run other code, one way per variable; each
    way leaves a marker file named after its variable in the returned dir."""
    markers, bin_dir = tmp_path / "ran", tmp_path / "bin"
    markers.mkdir()
    bin_dir.mkdir()
    touch = shutil.which("touch")
    hook = tmp_path / "hook.sh"
    hook.write_text(f"{touch} {markers}/BASH_ENV\n")
    fake_id = bin_dir / "id"
    fake_id.write_text(f"#!/bin/sh\n{touch} {markers}/PATH\n")
    fake_id.chmod(0o755)
    evil = {"BASH_ENV": str(hook), "PATH": str(bin_dir), "SHELLOPTS": "xtrace", "PS4": f"$({touch} {markers}/PS4)",
            "LD_PRELOAD": "/nonexistent/evil.so", "LD_LIBRARY_PATH": str(bin_dir), "ENV": str(hook),
            "PYTHONSTARTUP": str(hook), "PYTHONPATH": str(bin_dir), "FRONTIER_SERVER": "http://frontier:8000"}  # fmt: skip
    return evil, markers


def test_the_queue_environ_cannot_make_the_payload_run_other_code(tmp_path, caplog):
    """queuedata is not signed: whoever can change schedconfig must not get code run in the payload's place."""
    evil, markers = _hooks(tmp_path)
    base = {"PATH": "/usr/bin:/bin", "LANG": "C"}
    # the control: these variables do take over bash when they reach it (PS4 too, but not for root)
    subprocess.run(
        ["/bin/bash", "-c", "id -u"], env={**base, **evil}, cwd=tmp_path, capture_output=True, timeout=30
    )
    assert {"BASH_ENV", "PATH"} <= set(os.listdir(markers))
    for name in os.listdir(markers):
        (markers / name).unlink()
    job = parse({"PandaID": "7", "transformation": "/bin/true"})
    with caplog.at_level(logging.WARNING, logger="pilot.wrapper"):
        env = payload_env(job, tmp_path, {"payload_environ": evil, "pilot_home": str(tmp_path),
                                          "queuedata": {"nickname": "Q", "siteid": "S"}})  # fmt: skip
    assert env["FRONTIER_SERVER"] == evil["FRONTIER_SERVER"] and env["PATH"] == os.environ["PATH"]
    assert not set(evil) - {"FRONTIER_SERVER", "PATH"} & set(env), env
    r = subprocess.run(
        ["/bin/bash", "-c", "id -u"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert r.stdout.strip() == str(os.getuid()) and os.listdir(markers) == []
    dropped = "BASH_ENV, ENV, LD_LIBRARY_PATH, LD_PRELOAD, PATH, PS4, PYTHONPATH, PYTHONSTARTUP, SHELLOPTS"
    assert f"the queue's environ may not set {dropped}: dropped" in caplog.text


def test_the_pilot_log_names_what_the_queue_environ_may_not_set(caplog):
    cfg = config.parse(["-q", "Q", "--user-map", "/etc/grid-security/grid-mapfile"], {})
    with caplog.at_level(logging.WARNING, logger="pilot"):
        cli._warn_about_queue(
            cfg, {"nickname": "Q", "environ": "LD_PRELOAD=/x.so FRONTIER_SERVER=ok BASH_ENV=/h"}
        )
    assert "queue Q: its environ may not set BASH_ENV, LD_PRELOAD (queuedata is not signed)" in caplog.text
    assert "FRONTIER" not in caplog.text


def test_options_and_variables(monkeypatch):
    assert config.parse(["-q", "Q"], {}).conceal_proxy is True
    assert config.parse(["-q", "Q"], {"PILOT_CONCEAL_PROXY": "false"}).conceal_proxy is False
    assert config.parse(["-q", "Q", "--conceal-proxy"], {"PILOT_CONCEAL_PROXY": "0"}).conceal_proxy is True
    cfg = config.parse(
        ["-q", "Q", "--user-map", "/etc/grid-security/grid-mapfile"], {"PILOT_REMOVE_PROXY": "yes"}
    )
    assert cfg.remove_proxy and cfg.user_map == "/etc/grid-security/grid-mapfile"
    with pytest.raises(SystemExit, match="needs --conceal-proxy"):
        config.parse(["-q", "Q", "--remove-proxy", "--no-conceal-proxy"], {})
    with pytest.raises(SystemExit, match="true or false"):
        config.parse(["-q", "Q"], {"PILOT_CONCEAL_PROXY": "maybe"})
    text = config.build_parser().format_help()
    for word in ("PILOT_CONCEAL_PROXY", "PILOT_REMOVE_PROXY", "PILOT_USER_MAP", "--no-conceal-proxy"):
        assert word in text


def _python(
    code: str, *args: str, user: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (as `user`: /usr/bin/python3 with this checkout on PYTHONPATH)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    if user is None:
        return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd="/")  # fmt: skip
    pw = pwd.getpwnam(user)
    return subprocess.run([unprivileged.PYTHON, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd="/", user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])  # fmt: skip


@pytest.fixture
def proxy_of_pilot_user() -> Iterator[Path]:
    """A fake proxy (a private key block) owned by `pandapilot`, in a dir of its own under /tmp."""
    unprivileged.require_root()
    unprivileged.ensure_user(unprivileged.PILOT_USER)
    base = Path(tempfile.mkdtemp(prefix="pandacred-", dir="/tmp"))  # pytest's tmp dirs are 0700 root
    try:
        proxy = base / "x509up"
        proxy.write_text(KEY)
        proxy.chmod(0o600)
        unprivileged.hand_over(base, unprivileged.PILOT_USER)
        yield proxy
    finally:
        shutil.rmtree(base, ignore_errors=True)


LOAD = """
import json, os, ssl, sys
from pilot import credentials
c = credentials.load(sys.argv[1], conceal=sys.argv[2] == "1", remove=sys.argv[3] == "1")
fd = credentials.fd_of(c.path)
out = {"path": c.path, "concealed": c.concealed, "file_left": os.path.exists(sys.argv[1])}
if fd is not None:
    out["inheritable"] = os.get_inheritable(fd)
    out["same"] = open(c.path).read() == sys.argv[4]
    try:
        os.write(fd, b"x")
        out["writable"] = True
    except PermissionError:
        out["writable"] = False
print(json.dumps(out))
"""


def test_concealed_proxy_is_a_sealed_close_on_exec_memfd(proxy_of_pilot_user):
    r = _python(LOAD, str(proxy_of_pilot_user), "1", "0", KEY, user=unprivileged.PILOT_USER)
    out = json.loads(r.stdout or r.stderr)
    assert out["concealed"] and out["path"].startswith("/proc/self/fd/") and out["same"], out
    assert (out["inheritable"], out["writable"], out["file_left"]) == (False, False, True)
    r = _python(LOAD, str(proxy_of_pilot_user), "0", "0", KEY, user=unprivileged.PILOT_USER)
    assert json.loads(r.stdout) == {"path": str(proxy_of_pilot_user), "concealed": False, "file_left": True}
    r = _python(LOAD, str(proxy_of_pilot_user), "1", "1", KEY, user=unprivileged.PILOT_USER)
    assert json.loads(r.stdout)["file_left"] is False and not proxy_of_pilot_user.exists()


def test_tls_loads_a_memfd_certificate(tmp_path):
    """The pilot's HTTPS client (requests, ssl) takes /proc/self/fd/N as its certificate file."""
    from panda_server import ca

    pki = ca.create_pki(tmp_path / "pki")
    code = textwrap.dedent("""
        import ssl, sys, requests
        from pilot import credentials
        c = credentials.load(sys.argv[1], conceal=True, remove=False)
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(c.path)
        requests.adapters.HTTPAdapter().cert_verify(type("C", (), {})(), "https://x", False, c.path)
        print("ok", c.path)
    """)
    r = _python(code, str(pki.pilot_proxy))
    assert r.returncode == 0 and r.stdout.startswith("ok /proc/self/fd/"), r.stderr


HOLDER = """
import os, sys, time
from pilot import credentials
if sys.argv[2] == "1":
    c = credentials.load(sys.argv[1], conceal=True, remove=True)
    print(c.fd, flush=True)
else:  # the control: the proxy open in a process that is not protected
    fd = os.open(sys.argv[1], os.O_RDONLY)
    print(fd, flush=True)
time.sleep(30)
"""
ATTACK = """
import os, sys, ctypes
pid, fd = sys.argv[1], sys.argv[2]
out = []
for path in (f"/proc/{pid}/fd/{fd}", f"/proc/{pid}/environ", f"/proc/{pid}/mem"):
    try:
        with open(path, "rb") as fh:
            out.append(f"{path}: " + ("KEY" if b"PRIVATE KEY" in fh.read(1 << 16) else "read"))
    except OSError as exc:
        out.append(f"{path}: {type(exc).__name__}")
pidfd = os.pidfd_open(int(pid))
libc = ctypes.CDLL(None, use_errno=True)
stolen = libc.syscall(438, pidfd, int(fd), 0)
out.append("pidfd_getfd: " + ("KEY" if stolen >= 0 and b"PRIVATE KEY" in os.pread(stolen, 1 << 16, 0) else "denied"))
print("\\n".join(out))
"""


@pytest.mark.parametrize("concealed", [True, False])
def test_a_same_uid_process_cannot_read_a_concealed_proxy(proxy_of_pilot_user, concealed):
    pw = pwd.getpwnam(unprivileged.PILOT_USER)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    holder = subprocess.Popen([unprivileged.PYTHON, "-c", HOLDER, str(proxy_of_pilot_user), "1" if concealed else "0"],
                              env=env, stdout=subprocess.PIPE, text=True, cwd="/", user=pw.pw_uid, group=pw.pw_gid,
                              extra_groups=[])  # fmt: skip
    try:
        fd = holder.stdout.readline().strip()
        r = _python(ATTACK, str(holder.pid), fd, user=unprivileged.PILOT_USER)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    lines = r.stdout.splitlines()
    assert len(lines) == 4, r.stderr
    if concealed:
        assert all(line.endswith(("PermissionError", "denied")) for line in lines), lines
        assert not proxy_of_pilot_user.exists()
    else:  # the attack itself works: without concealment it gets the key
        assert lines[0].endswith("KEY") and lines[3].endswith("KEY"), lines


PILOT = """
import json, os, subprocess, sys
from pilot import credentials
c = credentials.load(sys.argv[1], conceal=True, remove=False)
result = {}
for label, prctl in (("dumpable", False), ("stranger", True), ("wrapper", True)):
    h = credentials.Handover(c)
    wrapper = subprocess.Popen([sys.executable, "-c", sys.argv[2], h.name, "1" if prctl else "0"],
                               stdout=subprocess.PIPE, text=True)
    if label == "stranger":  # someone else connects first: refused, the real wrapper still served
        stranger = subprocess.Popen([sys.executable, "-c", sys.argv[2], h.name, "1"], stdout=subprocess.PIPE, text=True)
        given = h.give(wrapper.pid, lambda: True, timeout=20)
        result["stranger got"] = stranger.communicate(timeout=30)[0].strip()
    else:
        given = h.give(wrapper.pid, lambda: wrapper.poll() is None, timeout=20)
    h.close()
    result[label] = [given, wrapper.communicate(timeout=30)[0].strip()]
print(json.dumps(result))
"""
WRAPPER = """
import sys
from pilot import credentials
if sys.argv[2] == "1":
    credentials.set_non_dumpable()
try:
    c = credentials.receive(sys.argv[1], timeout=5)
    print("same" if open(c.path).read().startswith("-----BEGIN PRIVATE KEY") else "different")
except OSError as exc:
    print(f"refused: {exc}")
"""


def test_handover_only_to_the_started_wrapper_once_it_is_non_dumpable(proxy_of_pilot_user):
    r = _python(PILOT, str(proxy_of_pilot_user), WRAPPER, user=unprivileged.PILOT_USER, timeout=120)
    out = json.loads(r.stdout or "{}") if r.returncode == 0 else pytest.fail(r.stderr)
    assert out["dumpable"][0] is False and out["dumpable"][1].startswith("refused"), out
    assert out["stranger got"].startswith("refused"), out
    assert out["wrapper"] == [True, "same"], out
    assert os.path.exists(proxy_of_pilot_user)
