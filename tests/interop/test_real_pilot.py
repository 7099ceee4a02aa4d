"""The unmodified PyPI panda-pilot 3.7.0.36 runs jobs from our server over mutual TLS.

Each test submits a no-input `test` job with a log file as a user through the Client API,
activates it with the Setupper, and runs the real pilot once (realpilot.run_pilot: its own Unix
user, its own PID namespace, PILOT_NOKILL=1) with the pilot proxy, `--url https://127.0.0.1`,
the queuedata and DDM endpoints from our /cache/, and the payload script from
HARVESTER_WORKDIR. The pilot's exit code proves nothing (3.7 exits 0 after failures), so the
tests assert on what the server recorded and logged, then run the Adder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import tarfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from client import api
from client.config import ClientConfig
from panda_server.dataservice import adder, setupper
from panda_server.db import tables as t
from panda_server.settings import Settings
from tests.interop import realpilot
from tests.support.jobs import simple_job

pytestmark = pytest.mark.interop

QUEUE = "CLOUDA_T1"  # production queue; its siteid (the pilot's siteName) is the same
DDM = "CLOUDA_T1_DATADISK"  # its storage element: <storage_root>/CLOUDA_T1_DATADISK
# 3.7 only runs a transformation under an allow-listed base URL; with HARVESTER_WORKDIR it
# copies the script from there instead of downloading it (reference/pilot.md §3.4).
TRF_BASE = "http://pandaserver-doma.cern.ch:25080/trf/user/"
ECHO_TEXT = "hello from PanDA-WMS"
ECHO_SCRIPT = '#!/bin/bash\necho "payload says: $*"\nexit 0\n'
SLEEP_SCRIPT = '#!/bin/bash\necho "payload sleeps"\nsleep 200\necho "payload woke up"\n'
PILOT_AGENT = f"pilot/{realpilot.PILOT_VERSION} "
# The kill test's heartbeat period (default 1800 s): the pilot learns commands only from the
# replies to its updates (reference/pilot.md §5, §13 fast-heartbeat trick).
KILL_HEARTBEAT = 10
PILOT_TIMEOUT = 180  # s; `timeout` ends the pilot, run_pilot kills its namespace 30 s later


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclasses.dataclass
class PilotBench:
    """A clean server, the pilot's SE directory and run directory, and the user's client."""

    engine: Engine
    settings: Settings
    server: Any  # tests.support.server.RunningServer
    pki: Any
    source: Path
    se_dir: Path
    run_dir: Path
    client: ClientConfig
    node: str  # PANDA_HOSTNAME given to the pilot: its `node` in getJob and updateJob

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
        """The job's row, with the name of the table it is in."""
        with self.engine.connect() as conn:
            for name, table in t.JOB_TABLE.items():
                row = conn.execute(sa.select(table).where(table.c.PandaID == panda_id)).mappings().first()
                if row is not None:
                    return {**row, "table": name}
        raise AssertionError(f"PandaID={panda_id} is in no job table")

    def log_file(self, panda_id: int) -> dict[str, Any]:
        f = t.filestable4
        query = sa.select(f).where(f.c.PandaID == panda_id, f.c.type == "log")
        with self.engine.connect() as conn:
            (row,) = conn.execute(query).mappings().all()
        return dict(row)

    def output_report(self, panda_id: int) -> dict[str, Any] | None:
        """The pilot's final report as queued for the Adder (None once the Adder took it)."""
        r = t.job_output_report
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(r).where(r.c.PandaID == panda_id)).mappings().first()
        return None if row is None else dict(row)

    def pilot_env(self, script_name: str, script: str, *, heartbeat: int | None = None) -> dict[str, str]:
        """Write what the pilot reads from local files; return its extra environment."""
        trf = self.run_dir / "trf"
        trf.mkdir(mode=0o755)
        (trf / script_name).write_text(script)
        (trf / script_name).chmod(0o755)
        # {queue: queuedata} from our own cache spares the pilot ~1 min of CRIC retries
        url = f"{self.server.http_url}/cache/schedconfig/{QUEUE}.all.json"
        schedconf = self.run_dir / "pandaqueues.json"
        schedconf.write_text(json.dumps({QUEUE: requests.get(url, timeout=30).json()}))
        env = {"HARVESTER_WORKDIR": str(trf), "LOCAL_AGIS_SCHEDCONF": str(schedconf)}
        if heartbeat is not None:  # HARVESTER_PILOT_CONFIG replaces the pilot's whole default.cfg
            default = (self.source / "pilot" / "util" / "default.cfg").read_text()
            config = default.replace("\nheartbeat: 1800\n", f"\nheartbeat: {heartbeat}\n")
            assert config != default, "the pilot's default.cfg has no 'heartbeat: 1800' line"
            (self.run_dir / "pilot.cfg").write_text(config)
            env["HARVESTER_PILOT_CONFIG"] = str(self.run_dir / "pilot.cfg")
        for name in ("LOCAL_AGIS_SCHEDCONF", "HARVESTER_PILOT_CONFIG"):
            if name in env:
                Path(env[name]).chmod(0o644)
        realpilot.check_user_access(trf / script_name, "-x")
        for path in env.values():
            realpilot.check_user_access(Path(path), "-r")
        return {**env, "PANDA_HOSTNAME": self.node}

    def run_pilot(self, env: dict[str, str], **kwargs: Any) -> realpilot.PilotRun:
        cache = f"{self.server.https_url}/cache"
        return realpilot.run_pilot(
            source=self.source, workdir=self.run_dir / "pilot", queue=QUEUE, server_url="https://127.0.0.1",
            port=self.server.https_port, proxy_file=self.pki.pilot_proxy, ca_dir=self.pki.ca_dir,
            queuedata_url=f"{cache}/schedconfig/{QUEUE}.all.json", storagedata_url=f"{cache}/ddmendpoints.json",
            label="test", extra_env=env, timeout=PILOT_TIMEOUT, **kwargs,
        )  # fmt: skip

    def run_adder(self) -> adder.Summary:
        return adder.run_once(self.engine, self.settings, utcnow())

    def staged(self, scope: str, lfn: str) -> Path:
        """The file the pilot moved to the SE, at its Rucio deterministic path (pilot.md §4)."""
        digest = hashlib.md5(f"{scope}:{lfn}".encode()).hexdigest()
        path = self.se_dir / scope.replace(".", "/") / digest[:2] / digest[2:4] / lfn
        assert path.is_file(), f"{lfn} not at {path}; the SE holds {realpilot.find_outputs(self.se_dir)}"
        return path


@pytest.fixture
def bench(clean_db, pilot_server, pki, workdir, db_url, pilot_source) -> PilotBench:
    realpilot.ensure_pilot_user()
    se_dir = pilot_server.storage_root / DDM
    shutil.rmtree(se_dir, ignore_errors=True)
    se_dir.mkdir(parents=True)
    shutil.chown(se_dir, realpilot.PILOT_USER, realpilot.PILOT_USER)
    realpilot.check_user_access(se_dir, "-w")
    run_dir = workdir / f"realpilot-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(mode=0o755)
    client = ClientConfig(url=f"{pilot_server.http_url}/server/panda",
                          url_ssl=f"{pilot_server.https_url}/server/panda",
                          proxy=str(pki.user_proxy), ca_dir=str(pki.ca_dir))  # fmt: skip
    return PilotBench(clean_db, Settings(database_url=db_url), pilot_server, pki, pilot_source, se_dir,
                      run_dir, client, f"realpilot-{uuid.uuid4().hex[:6]}")  # fmt: skip


def explain(run: realpilot.PilotRun, calls: list[Any]) -> str:
    """Context for a failed assertion: the requests the server saw and the pilot's log."""
    return (f"pilot rc={run.returncode} after {run.elapsed:.0f} s (stopped={run.stopped}); "
            f"requests: {[str(c) for c in calls]}\n--- pilot log (tail) ---\n"
            f"{realpilot.last_lines(run.pilotlog() or run.stdout, 60)}\n"
            f"--- pilot stderr ---\n{realpilot.last_lines(run.stderr, 20)}")  # fmt: skip


def payload_stdout(tarball: Path) -> str:
    """payload.stdout from the log tarball the pilot staged out."""
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith("/payload.stdout"):
                return tar.extractfile(member).read().decode(errors="replace")
    raise AssertionError(f"no payload.stdout in {tarball}")


def assert_matches_file(row: dict[str, Any], path: Path) -> None:
    """A file row records the size and adler32 of the real file."""
    data = path.read_bytes()
    expected = ("ready", len(data), f"ad:{zlib.adler32(data):08x}")
    assert (row["status"], row["fsize"], row["checksum"]) == expected, row


@pytest.mark.timeout(PILOT_TIMEOUT + 150)
def test_real_pilot_runs_a_job_to_finished(bench, https_log):
    panda_id = bench.submit_and_activate("runecho.sh")
    env = bench.pilot_env("runecho.sh", ECHO_SCRIPT)
    offset = https_log.offset()

    run = bench.run_pilot(env)

    calls = https_log.requests_since(offset)
    why = explain(run, calls)
    # what the pilot called, in order: queuedata, DDM endpoints, getJob, starting, running, finished
    assert [str(c) for c in calls] == [
        f"GET /cache/schedconfig/{QUEUE}.all.json 200", "GET /cache/ddmendpoints.json 200",
        "POST /server/panda/getJob 200", *["POST /server/panda/updateJob 200"] * 3,
    ], why  # fmt: skip
    assert all(c.agent.startswith(PILOT_AGENT) for c in calls), why
    assert https_log.transitions_since(offset, panda_id) == [
        ("activated", "sent"), ("sent", "starting"), ("starting", "running"), ("running", "holding"),
    ], why  # fmt: skip
    # the final update leaves the job holding, its file report queued for the Adder
    job = bench.job(panda_id)
    assert (job["table"], job["jobStatus"]) == ("jobsactive4", "holding"), why
    assert (job["pilotErrorCode"], job["transExitCode"]) == (0, "0"), why  # transExitCode is text (S08)
    assert job["modificationHost"] == bench.node, why
    assert job["computingElement"] == QUEUE, why
    assert job["pilotID"] and realpilot.PILOT_VERSION in job["pilotID"], why
    assert job["startTime"] and job["endTime"] and job["startTime"] <= job["endTime"], why
    assert job["pilotTiming"], why
    report = bench.output_report(panda_id)
    assert report is not None and report["jobStatus"] == "finished", why

    summary = bench.run_adder()

    assert (summary.finished, summary.failed) == (1, 0), why
    job = bench.job(panda_id)
    assert (job["table"], job["jobStatus"]) == ("jobsarchived4", "finished"), why
    log_row = bench.log_file(panda_id)
    assert log_row["lfn"] == f"log.{panda_id:05d}.job.log.tgz"
    staged = bench.staged(log_row["scope"], log_row["lfn"])
    assert_matches_file(log_row, staged)
    assert json.loads(report["data"])[log_row["lfn"]]["guid"].lower() == log_row["GUID"].lower()
    assert f"payload says: {ECHO_TEXT}" in payload_stdout(staged)
    assert bench.output_report(panda_id) is None
    print(f"\nreal pilot: {run.elapsed:.1f} s; requests: {[str(c) for c in calls]}")


@pytest.mark.timeout(PILOT_TIMEOUT + 150)
def test_real_pilot_obeys_kill_from_the_owner(bench, https_log):
    """killJobs reaches the pilot on its next heartbeat; it kills the payload, reports 1144."""
    panda_id = bench.submit_and_activate("runsleep.sh")
    env = bench.pilot_env("runsleep.sh", SLEEP_SCRIPT, heartbeat=KILL_HEARTBEAT)
    offset = https_log.offset()
    killed_at: list[float] = []

    def watch() -> bool:
        """Kill the job as its owner once it runs; done when the pilot's final update is in."""
        job = bench.job(panda_id)
        if not killed_at and job["jobStatus"] == "running":
            assert api.killJobs([panda_id], config=bench.client) == (0, [True])
            killed_at.append(time.monotonic())
        return bench.output_report(panda_id) is not None

    run = bench.run_pilot(env, watch=watch)

    calls = https_log.requests_since(offset)
    why = explain(run, calls)
    assert killed_at, f"the pilot never reported running; {why}"
    paths = [c.path.rsplit("/", 1)[-1] for c in calls]
    kill = paths.index("killJobs")
    assert calls[kill].agent.startswith("python-requests/"), why
    assert paths[:5] == [f"{QUEUE}.all.json", "ddmendpoints.json", "getJob", "updateJob", "updateJob"], why
    assert set(paths[5:kill]) <= {"updateJob"}, why  # heartbeats before the kill, if any
    assert set(paths[kill + 1 :]) == {"updateJob"} and len(paths) - kill - 1 >= 2, why  # heartbeat, final
    assert https_log.transitions_since(offset, panda_id) == [
        ("activated", "sent"), ("sent", "starting"), ("starting", "running"), ("running", "holding"),
    ], why  # fmt: skip
    job = bench.job(panda_id)
    assert (job["table"], job["jobStatus"]) == ("jobsactive4", "holding"), why
    assert job["commandToPilot"] == "tobekilled", why
    assert job["pilotErrorCode"] == 1144, why  # PANDAKILL "This job was killed by panda server"
    report = bench.output_report(panda_id)
    assert report["jobStatus"] == "failed", why

    summary = bench.run_adder()

    assert (summary.finished, summary.failed) == (0, 1), why
    job = bench.job(panda_id)
    assert (job["table"], job["jobStatus"]) == ("jobsarchived4", "failed"), why
    assert job["pilotErrorCode"] == 1144 and job["taskBufferErrorCode"], why
    log_row = bench.log_file(panda_id)
    staged = bench.staged(log_row["scope"], log_row["lfn"])
    out = payload_stdout(staged)
    assert "payload sleeps" in out and "payload woke up" not in out, out
    # 3.7 races two threads for the final update after a kill: when its job monitor wins, the
    # update carries no file report (and its queue monitor then idles ~2 min, hence `watch`).
    reported = json.loads(report["data"] or "{}")
    if log_row["lfn"] in reported:
        assert_matches_file(log_row, staged)
    else:
        assert log_row["status"] == "failed", log_row
    print(f"\nreal pilot (kill): {run.elapsed:.1f} s, stopped={run.stopped}, log reported="
          f"{log_row['lfn'] in reported}; requests: {[str(c) for c in calls]}")  # fmt: skip
