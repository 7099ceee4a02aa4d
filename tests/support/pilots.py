"""Run our pilot (panda-pilot) against the test server, and set up queues and jobs for it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from panda_server.db import tables as t
from panda_server.protocol.jobspec import FileSpec, JobSpec
from schedconfig.model import QueueSpec
from schedconfig.sync import _upsert, queue_row
from tests.support.dbjobs import insert_job

ROOT = Path(__file__).resolve().parent.parent.parent


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def wait_for(predicate, seconds: float, what: str, *, every: float = 0.3):
    """Poll `predicate` until it returns something truthy (bounded); fail with `what` otherwise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def add_queue(engine: Engine, nickname: str, **fields) -> QueueSpec:
    """Create or replace one queue in schedconfig (other queues untouched)."""
    spec = QueueSpec.from_dict(
        {"nickname": nickname, "cloud": "CLOUDA", **fields}, source=f"test queue {nickname}"
    )
    with engine.begin() as conn:
        _upsert(conn, t.schedconfig, [queue_row(spec, utcnow())], key="nickname")
    return spec


def pilot_argv(server, queue: str, workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pilot", "-q", queue, "--url", server.https_url,
            "--proxy", str(server.pki.pilot_proxy), "--ca-dir", str(server.ca_dir), "-a", str(workdir),
            "--getjob-sleep", "0.2", "-v", "1", "--update-interval", "1", "--update-attempts", "3",
            "--transfer-backoff", "0.2", "--min-free-mb", "100", *extra]  # fmt: skip


def pilot_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PILOT_", "X509_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["XRD_CONNECTIONRETRY"] = "1"
    return env


def run_pilot(
    server, queue: str, workdir: Path, *extra: str, timeout: float = 180
) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(pilot_argv(server, queue, workdir, *extra), env=pilot_env(), cwd=workdir,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def start_pilot(server, queue: str, workdir: Path, *extra: str, log: Path) -> subprocess.Popen:
    """A pilot in its own session (so a test can kill its whole tree by process group)."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = open(log, "wb")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(pilot_argv(server, queue, workdir, *extra), env=pilot_env(), cwd=workdir,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def shell_job(site: str, script: str, *, outputs: Sequence[str] = (), inputs: Sequence[tuple[str, bytes]] = (),
              label: str = "managed", scope: str = "test", **attrs) -> JobSpec:  # fmt: skip
    """A job running `/bin/bash -c <script>` with named inputs (lfn, content) and outputs, plus a log."""
    tag = uuid.uuid4().hex[:8]
    job = JobSpec(jobName=f"pilot.{tag}", transformation="/bin/bash", jobParameters=f"-c '{script}'",
                  prodSourceLabel=label, computingSite=site, assignedPriority=100, currentPriority=100,
                  AtlasRelease="NULL", destinationSE=site, prodDBlock="test.in", cloud="CLOUDA", **attrs)  # fmt: skip
    for lfn, data in inputs:
        job.add_file(FileSpec(lfn=lfn, type="input", dataset="test.in", prodDBlock="test.in", scope=scope,
                              GUID=str(uuid.uuid4()), fsize=len(data), checksum=f"ad:{adler32(data)}"))  # fmt: skip
    for lfn in outputs:
        job.add_file(
            FileSpec(lfn=lfn, type="output", dataset="test.out", scope=scope, destinationDBlock="test.out")
        )
    job.add_file(FileSpec(lfn=f"log.{tag}.job.log.tgz", type="log", dataset="test.log", scope=scope,
                          destinationDBlock="test.log", GUID=str(uuid.uuid4())))  # fmt: skip
    return job


def insert_activated(engine: Engine, job: JobSpec) -> int:
    with engine.begin() as conn:
        return insert_job(conn, "activated", job=job)


def job_row(engine: Engine, panda_id: int) -> dict:
    with engine.begin() as conn:
        for table in ("jobsarchived4", "jobsactive4", "jobsdefined4", "jobswaiting4"):
            row = (
                conn.execute(sa.select(t.JOB_TABLE[table]).where(t.JOB_TABLE[table].c.PandaID == panda_id))
                .mappings()
                .first()
            )
            if row:
                return dict(row)
    raise LookupError(panda_id)


def file_rows(engine: Engine, panda_id: int) -> dict[str, dict]:
    with engine.begin() as conn:
        rows = (
            conn.execute(sa.select(t.filestable4).where(t.filestable4.c.PandaID == panda_id)).mappings().all()
        )
    return {r["lfn"]: dict(r) for r in rows}


def run_adder(engine: Engine) -> None:
    from panda_server.dataservice import adder
    from panda_server.settings import Settings

    adder.run_once(engine, Settings(), utcnow())
