"""The unmodified PyPI panda-pilot 3.7.0.36 runs jobs from our server over mutual TLS.

Each test submits a no-input `test` job with a log file as a user through the Client API,
activates it with the Setupper, and runs the real pilot once (realpilot.run_pilot: its own Unix
user, its own PID namespace, PILOT_NOKILL=1) with the pilot proxy, the queuedata and DDM
endpoints from our /cache/, and the payload script from HARVESTER_WORKDIR. The pilot's exit code
proves nothing (3.7 exits 0 after failures): the tests assert on what the server recorded, then
run the Adder.
"""

from __future__ import annotations

import datetime as dt
import json
import tarfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from client import api
from client.config import ClientConfig
from panda_server.dataservice import adder, setupper
from panda_server.db import tables as t
from panda_server.settings import Settings
from tests.interop import realpilot
from tests.support.jobs import simple_job

pytestmark = pytest.mark.interop

QUEUE = "CLOUDA_T1"  # production queue; its siteid (the pilot's siteName) is the same
DDM = "CLOUDA_T1_DATADISK"  # its storage: <storage_root>/CLOUDA_T1_DATADISK
# 3.7 only runs a transformation under an allow-listed base URL; with HARVESTER_WORKDIR it copies
# the script from there instead of downloading it (reference/pilot.md §3.4).
TRF_BASE = "http://pandaserver-doma.cern.ch:25080/trf/user/"
ECHO_TEXT = "hello from PanDA-WMS"
ECHO_SCRIPT = '#!/bin/bash\necho "payload says: $*"\nexit 0\n'
SLEEP_SCRIPT = '#!/bin/bash\necho "payload sleeps"\nsleep 200\necho "payload woke up"\n'
KILL_HEARTBEAT = 10  # s between `running` heartbeats in the kill test (default 1800, §13 trick)
PILOT_TIMEOUT = 240  # s; `timeout` ends the pilot, run_pilot kills its namespace after that


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@pytest.fixture
def setup(clean_db, pilot_server, pki, workdir, db_url, pilot_source):
    """Empty job tables, an empty SE directory owned by the pilot user, a run dir, a client."""
    realpilot.ensure_pilot_user()
    se_dir = pilot_server.storage_root / DDM
    if se_dir.exists():
        for p in sorted(se_dir.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
    se_dir.mkdir(parents=True, exist_ok=True)
    _chown_pilot(se_dir)
    realpilot.check_user_access(se_dir, "-w")
    run_dir = workdir / f"realpilot-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(mode=0o755)
    config = ClientConfig(url=f"{pilot_server.http_url}/server/panda",
                          url_ssl=f"{pilot_server.https_url}/server/panda",
                          proxy=str(pki.user_proxy), ca_dir=str(pki.ca_dir))  # fmt: skip
    return Setup(clean_db, Settings(database_url=db_url), pilot_server, pki, pilot_source, se_dir, run_dir,
                 config)  # fmt: skip


def _chown_pilot(path: Path) -> None:
    import shutil

    shutil.chown(path, realpilot.PILOT_USER, realpilot.PILOT_USER)


class Setup:
    def __init__(self, engine, settings, server, pki, source, se_dir, run_dir, client) -> None:
        self.engine, self.settings, self.server, self.pki = engine, settings, server, pki
        self.source, self.se_dir, self.run_dir, self.client = source, se_dir, run_dir, client

    def submit_and_activate(self, script_name: str) -> int:
        """One `test` job with a log file, submitted as the user; the Setupper activates it."""
        job = simple_job(QUEUE, label="test", transformation=TRF_BASE + script_name, params=ECHO_TEXT)
        status, out = api.submitJobs([job], self.client)
        assert status == 0 and out, f"submitJobs failed: {out}"
        panda_id = out[0][0]
        summary = setupper.run_once(self.engine, self.settings, utcnow())
        assert summary.activated == 1, summary
        assert self.job(panda_id)["jobStatus"] == "activated"
        return panda_id

    def job(self, panda_id: int) -> dict[str, Any]:
        """The job's row and the table it is in."""
        with self.engine.connect() as conn:
            for name, table in t.JOB_TABLE.items():
                row = conn.execute(sa.select(table).where(table.c.PandaID == panda_id)).mappings().first()
                if row is not None:
                    return {**row, "table": name}
        raise AssertionError(f"PandaID={panda_id} is in no job table")

    def files(self, panda_id: int) -> list[dict[str, Any]]:
        f = t.filestable4
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(f).where(f.c.PandaID == panda_id)).mappings()]

    def pilot_files(self, script_name: str, script: str, config_text: str | None = None) -> dict[str, str]:
        """Write what the pilot reads locally; return its extra environment."""
        trf = self.run_dir / "trf"
        trf.mkdir(mode=0o755)
        (trf / script_name).write_text(script)
        (trf / script_name).chmod(0o755)
        # {queue: queuedata} from our own cache spares the pilot ~1 min of CRIC retries
        url = f"{self.server.http_url}/cache/schedconfig/{QUEUE}.all.json"
        queuedata = requests.get(url, timeout=30).json()
        schedconf = self.run_dir / "pandaqueues.json"
        schedconf.write_text(json.dumps({QUEUE: queuedata}))
        schedconf.chmod(0o644)
        env = {"HARVESTER_WORKDIR": str(trf), "LOCAL_AGIS_SCHEDCONF": str(schedconf)}
        if config_text is not None:
            cfg = self.run_dir / "pilot_test.cfg"
            cfg.write_text(config_text)
            cfg.chmod(0o644)
            env["HARVESTER_PILOT_CONFIG"] = str(cfg)
        for path in env.values():
            realpilot.check_user_access(Path(path), "-r")
        return env

    def run_pilot(self, extra_env: dict[str, str]) -> realpilot.PilotRun:
        cache = f"{self.server.https_url}/cache"
        return realpilot.run_pilot(
            source=self.source, workdir=self.run_dir / "pilot", queue=QUEUE, server_url="https://127.0.0.1",
            port=self.server.https_port, proxy_file=self.pki.pilot_proxy, ca_dir=self.pki.ca_dir,
            queuedata_url=f"{cache}/schedconfig/{QUEUE}.all.json", storagedata_url=f"{cache}/ddmendpoints.json",
            label="test", extra_env=extra_env, timeout=PILOT_TIMEOUT,
        )  # fmt: skip

    def run_adder(self) -> adder.Summary:
        return adder.run_once(self.engine, self.settings, utcnow())


def pilot_calls(access, offset: int) -> list[str]:
    """The requests logged by our HTTPS server since `offset`, as 'METHOD path status'."""
    return [f"{m} {p} {s}" for m, p, s in access.requests_since(offset)]


def explain(run: realpilot.PilotRun, calls: list[str]) -> str:
    return (f"pilot rc={run.returncode} after {run.elapsed:.0f} s; requests: {calls}\n"
            f"--- pilot log (tail) ---\n{realpilot.last_lines(run.pilotlog() or run.stdout, 60)}\n"
            f"--- stderr ---\n{realpilot.last_lines(run.stderr, 20)}")  # fmt: skip


def staged_log(se_dir: Path, lfn: str) -> Path:
    found = [p for p in realpilot.find_outputs(se_dir) if p.name == lfn]
    assert len(found) == 1, f"expected {lfn} once under {se_dir}, found {realpilot.find_outputs(se_dir)}"
    return found[0]


def payload_stdout(tarball: Path) -> str:
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith("payload.stdout"):
                return tar.extractfile(member).read().decode(errors="replace")
    raise AssertionError(f"no payload.stdout in {tarball}")


def assert_log_recorded(s: Setup, panda_id: int, *, job_lfn: str) -> Path:
    """The log row is `ready` with the size and adler32 of the file the pilot staged."""
    staged = staged_log(s.se_dir, job_lfn)
    data = staged.read_bytes()
    (log_row,) = [f for f in s.files(panda_id) if f["type"] == "log"]
    assert log_row["lfn"] == job_lfn
    assert log_row["status"] == "ready", log_row
    assert log_row["fsize"] == len(data)
    assert log_row["checksum"] == f"ad:{zlib.adler32(data):08x}"
    return staged


@pytest.mark.timeout(PILOT_TIMEOUT + 120)
def test_real_pilot_runs_echo_job(setup, https_access):
    s = setup
    panda_id = s.submit_and_activate("runecho.sh")
    env = s.pilot_files("runecho.sh", ECHO_SCRIPT)
    offset = https_access.offset()

    run = s.run_pilot(env)

    calls = pilot_calls(https_access, offset)
    why = explain(run, calls)
    job = s.job(panda_id)
    # the pilot's final report makes the job holding, with the report kept for the Adder
    assert (job["table"], job["jobStatus"]) == ("jobsactive4", "holding"), why
    assert job["pilotErrorCode"] == 0 and job["transExitCode"] == "0", why  # transExitCode is text (S08)
    assert job["modificationHost"], why  # the pilot's node name, from getJob and updateJob
    assert job["pilotID"] and realpilot.PILOT_VERSION in job["pilotID"], why
    assert job["startTime"] and job["endTime"] and job["startTime"] <= job["endTime"], why
    assert job["computingElement"] == QUEUE, why

    summary = s.run_adder()
    assert (summary.finished, summary.failed) == (1, 0), summary
    job = s.job(panda_id)
    assert (job["table"], job["jobStatus"]) == ("jobsarchived4", "finished"), why
    log_lfn = f"log.{panda_id:05d}.job.log.tgz"
    staged = assert_log_recorded(s, panda_id, job_lfn=log_lfn)
    assert f"payload says: {ECHO_TEXT}" in payload_stdout(staged)

    states = [c for c in calls if "/server/panda/" in c]
    assert calls[:2] == [f"GET /cache/schedconfig/{QUEUE}.all.json 200", "GET /cache/ddmendpoints.json 200"], why
    assert states[0] == "POST /server/panda/getJob 200", why
    assert all(c.endswith(" 200") for c in calls), why
    print(f"\nreal pilot: {run.elapsed:.1f} s, requests: {calls}")


@pytest.mark.timeout(PILOT_TIMEOUT + 120)
def test_real_pilot_obeys_kill(setup, https_access):
    """killJobs by the owner reaches the pilot on its next heartbeat; it reports failed/1144."""
    s = setup
    panda_id = s.submit_and_activate("runsleep.sh")
    default_cfg = (s.source / "pilot" / "util" / "default.cfg").read_text()
    config = default_cfg.replace("\nheartbeat: 1800\n", f"\nheartbeat: {KILL_HEARTBEAT}\n")
    assert config != default_cfg, "default.cfg has no 'heartbeat: 1800' line to change"
    env = s.pilot_files("runsleep.sh", SLEEP_SCRIPT, config)
    offset = https_access.offset()

    import threading

    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.setdefault("run", s.run_pilot(env)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while s.job(panda_id)["jobStatus"] != "running":
        assert thread.is_alive() and time.monotonic() < deadline, "the pilot never reported running"
        time.sleep(1)
    status, killed = api.killJobs([panda_id], config=s.client)
    assert (status, killed) == (0, [True])
    assert s.job(panda_id)["commandToPilot"] == "tobekilled"
    thread.join(PILOT_TIMEOUT + realpilot.KILL_GRACE + 90)
    assert not thread.is_alive(), "run_pilot did not return"
    run = result["run"]

    calls = pilot_calls(https_access, offset)
    why = explain(run, calls)
    job = s.job(panda_id)
    assert (job["table"], job["jobStatus"]) == ("jobsactive4", "holding"), why
    assert job["pilotErrorCode"] == 1144, why  # PANDAKILL: "This job was killed by panda server"
    summary = s.run_adder()
    assert (summary.finished, summary.failed) == (0, 1), summary
    job = s.job(panda_id)
    assert (job["table"], job["jobStatus"]) == ("jobsarchived4", "failed"), why
    assert job["pilotErrorCode"] == 1144 and job["taskBufferErrorCode"], why
    staged = assert_log_recorded(s, panda_id, job_lfn=f"log.{panda_id:05d}.job.log.tgz")
    out = payload_stdout(staged)
    assert "payload sleeps" in out and "payload woke up" not in out
    print(f"\nreal pilot (kill): {run.elapsed:.1f} s, requests: {calls}")
