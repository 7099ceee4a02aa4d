"""The payload never gets the pilot's proxy: a payload that tries everything, against a real pilot.

The pilot runs as the unprivileged user `pandapilot` (root would read anything, which would make
the test meaningless), with /usr/bin/python3, against the test server; the payload runs as the
same uid. As in a batch slot, the pilot is started by a shell of that user which stays its parent,
dumpable, with X509_USER_PROXY in its environment. The payload's transformation, attack_payload.py,
is downloaded from the server's /cache/ over HTTPS with the concealed proxy (so the job wrapper's
copy of it works), looks for a private key everywhere a same-uid process can look and writes a
report, stored as the job's output (so the pilot's heartbeats and stage-out work meanwhile).
Nothing of the pilot or its wrapper gives the key away; the proxy file whose path the parent shows
does, unless --remove-proxy (the limitation the pilot warns about). The same script against a
pilot started with --no-conceal-proxy finds the key: the test can fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import uuid
from pathlib import Path

import pytest

from pilot.infosys import rucio_path
from tests.support import pilots, unprivileged

QUEUE = "CONCEAL_T2"
HERE = Path(__file__).resolve().parent


@pytest.fixture
def setup(live, engine, pilot_dir, workdir):
    """A queue whose SE the pilot user may write, and the proxy in a private dir of that user."""
    unprivileged.require_root()
    unprivileged.ensure_user(unprivileged.PILOT_USER)
    se = pilot_dir / "se"
    se.mkdir(exist_ok=True)
    unprivileged.hand_over(se, unprivileged.PILOT_USER)
    pilots.add_queue(engine, QUEUE, se_path=str(se), copytool="cp")
    # outside the work dir and its parents' own files: only a leak of its path could lead there
    secret = unprivileged.private_copy(live.pki.pilot_proxy, workdir / f"secret-{uuid.uuid4().hex[:8]}",
                                       unprivileged.PILOT_USER)  # fmt: skip
    return se, secret


def key_lines(proxy_text: str) -> list[str]:
    """The base64 lines of the proxy's private key: what must not turn up anywhere."""
    start = proxy_text.index("PRIVATE KEY-----") + len("PRIVATE KEY-----")
    return proxy_text[start : proxy_text.index("-----END", start)].split()


def fingerprint(proxy_text: str) -> str:
    """As attack_payload.py prints it: sha256 (16 hex) of the key's base64 body."""
    return hashlib.sha256("".join(key_lines(proxy_text)).encode()).hexdigest()[:16]


def ours(report: dict, secret: Path, proxy_text: str, pilot_dir: Path) -> list[dict]:
    """The hits that are this test's key, or in this test's pilot processes or files (other
    processes of the same uid, e.g. a real pilot of an interop test, may hold keys of their own)."""
    pids = pilot_pids(report, pilot_dir)
    places = (*(f"/{p}/" for p in pids), *(f" {p}:" for p in pids), str(pilot_dir), str(secret))
    return [h for h in report["found"] if h["key"] == fingerprint(proxy_text) or h["where"].startswith("env ")
            or any(x in h["where"] for x in places)]  # fmt: skip


def attack_job(live, engine) -> tuple[int, str]:
    tag = uuid.uuid4().hex[:8]
    cache = live.storage_root.parent / "cache" / "trf"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "attack_payload.py", cache / f"attack-{tag}.py")
    report = f"report.{tag}.json"
    job = pilots.shell_job(QUEUE, "unused", outputs=[report])
    job.transformation, job.jobParameters = f"{live.https_url}/cache/trf/attack-{tag}.py", report
    return pilots.insert_activated(engine, job), report


def stored(se: Path, lfn: str) -> Path:
    return se / rucio_path("test", lfn)


def run_attack(live, engine, pilot_dir, secret, *extra):
    pid, report = attack_job(live, engine)
    proc = unprivileged.run_pilot_as(unprivileged.PILOT_USER, live, QUEUE, pilot_dir / "work", *extra,
                                     proxy=secret, parent_shell=True)  # fmt: skip
    return pid, report, proc


def pilot_pids(found: dict, pilot_dir: Path) -> list[str]:
    """This test's pilot's and job wrapper's pids (not their parent shell), as the payload saw them in /proc."""
    return [pid for pid, cmd in found["procs"].items()
            if cmd.startswith(f"{unprivileged.PYTHON} -m pilot") and str(pilot_dir) in cmd]  # fmt: skip


def parent_shell(found: dict, pilot_dir: Path) -> str:
    """The pid of the shell that started this test's pilot, as the payload saw it in /proc."""
    shells = [
        pid for pid, cmd in found["procs"].items() if cmd.startswith("/bin/sh -c") and str(pilot_dir) in cmd
    ]
    assert len(shells) == 1, found["procs"]
    return shells[0]


def test_a_concealing_pilot_gives_away_only_the_file_its_parent_names(setup, live, engine, pilot_dir):
    se, secret = setup
    pid, report, proc = run_attack(live, engine, pilot_dir, secret)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"PandaID={pid} finished" in proc.stdout
    text = stored(se, report).read_text()
    found = json.loads(text)
    assert found["uid"] == unprivileged.ensure_user(unprivileged.PILOT_USER).pw_uid
    # the documented limitation, which the pilot names at start-up (without the path: the payload reads its log)
    assert (
        f"the proxy file (--proxy/X509_USER_PROXY) stays readable by uid {found['uid']} processes"
        in proc.stderr
    )
    assert str(secret) not in proc.stderr
    # the parent shell (same uid, dumpable) shows the path; the file is readable by that uid; nothing else leaks
    assert found["tried"][f"/proc/{parent_shell(found, pilot_dir)}/environ"].startswith("read ")
    leaks = ours(found, secret, secret.read_text(), pilot_dir)
    assert [h["where"] for h in leaks] == [f"path {secret}"], found["found"]
    assert leaks[0]["key"] == fingerprint(secret.read_text())
    # it did look: the pilot and its job wrapper were there, and refused every way in
    looked_at = pilot_pids(found, pilot_dir)
    assert len(looked_at) >= 2, found["procs"]
    for p in looked_at:
        for what in (f"/proc/{p}/environ", f"/proc/{p}/mem", f"/proc/{p}/fd"):
            assert found["tried"][what] == "PermissionError", (what, found["tried"][what])
        assert found["tried"][f"pidfd_getfd {p}"].startswith("0 descriptors"), found["tried"][
            f"pidfd_getfd {p}"
        ]
    assert any(k.startswith("file ") and "wrapper-" in k for k in found["tried"]), (
        "it read the wrapper config"
    )
    assert secret.exists(), "without --remove-proxy the file stays"
    # the log tarball holds no credential either
    log_lfn = next(f["lfn"] for f in pilots.file_rows(engine, pid).values() if f["type"] == "log")
    with tarfile.open(stored(se, log_lfn)) as tar:
        packed = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
    assert b"PRIVATE KEY" not in packed
    assert not any(line.encode() in packed for line in key_lines(secret.read_text()) if len(line) > 40)


def test_remove_proxy_deletes_the_file_and_the_job_still_runs(setup, live, engine, pilot_dir):
    se, secret = setup
    key = secret.read_text()  # kept here: a copy on disk would be found by the payload
    pid, report, proc = run_attack(live, engine, pilot_dir, secret, "--remove-proxy")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not secret.exists(), "the proxy file is gone once the pilot has it in memory"
    assert "stays readable by uid" not in proc.stderr
    row = pilots.job_row(engine, pid)
    assert row["pilotErrorCode"] == 0 and row["jobStatus"] in ("holding", "finished")
    found = json.loads(stored(se, report).read_text())
    # it still read the parent shell's environment, with the path in it: nothing is left there
    assert found["tried"][f"/proc/{parent_shell(found, pilot_dir)}/environ"].startswith("read ")
    assert ours(found, secret, key, pilot_dir) == [], found["found"]


def test_without_concealment_the_same_payload_finds_the_key(setup, live, engine, pilot_dir):
    se, secret = setup
    pid, report, proc = run_attack(live, engine, pilot_dir, secret, "--no-conceal-proxy")
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(stored(se, report).read_text())
    mine = [h for h in found["found"] if h["key"] == fingerprint(secret.read_text())]
    assert mine, f"the attack must succeed against a pilot that does not conceal its proxy: {found['found']}"
    assert any(str(secret) in h["where"] for h in mine), mine


def test_remove_proxy_without_concealment_is_refused(setup, live, pilot_dir):
    _se, secret = setup
    proc = unprivileged.run_pilot_as(unprivileged.PILOT_USER, live, QUEUE, pilot_dir / "work", "--remove-proxy",
                                     "--no-conceal-proxy", proxy=secret, timeout=60)  # fmt: skip
    assert proc.returncode != 0 and "--remove-proxy needs --conceal-proxy" in proc.stderr
    assert secret.exists()
    assert os.listdir(pilot_dir / "work") == []
