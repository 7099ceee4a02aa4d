"""What the tests with the real panda-pilot share: the queue, a PilotBench (clean server, SE dir,
run dir, user client) and checks on what the pilot stored. The `bench` fixture is in conftest.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import tarfile
import uuid
import zlib
from pathlib import Path
from typing import Any

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

QUEUE = "CLOUDA_T1"  # production queue; its siteid (the pilot's siteName) is the same
DDM = "CLOUDA_T1_DATADISK"  # its storage element: <storage_root>/CLOUDA_T1_DATADISK
# 3.7 only runs a transformation under an allow-listed base URL; with HARVESTER_WORKDIR it
# copies the script from there instead of downloading it (reference/pilot.md §3.4).
TRF_BASE = "http://pandaserver-doma.cern.ch:25080/trf/user/"
ECHO_TEXT = "hello from PanDA-WMS"
PILOT_AGENT = f"pilot/{realpilot.PILOT_VERSION} "
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


def make_bench(clean_db, pilot_server, pki, workdir: Path, db_url: str, pilot_source: Path) -> PilotBench:
    """A clean DB, an empty SE directory owned by the pilot user, a run dir, the user's client."""
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
