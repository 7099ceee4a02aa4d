"""Fixtures for the data-service tests: the default topology's directory SEs under a private
storage root, the real local DDM on them, input data placed on an SE, and the daemons' cycles
run in-process with an explicit clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import uuid
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from panda_server.dataservice import activator, adder, finisher, setupper, waker
from panda_server.dataservice.context import CALLBACK_PATH, DataService
from panda_server.db import tables as t
from panda_server.ddm.interface import FileInfo
from panda_server.ddm.local import LocalDDM
from panda_server.ddm.local import agent as ddm_agent
from panda_server.ddm.local import tables as ddm_tables
from panda_server.ddm.local.rses import rse_map
from panda_server.protocol import signing
from panda_server.protocol.jobspec import FileSpec, JobSpec
from panda_server.settings import Settings
from panda_server.taskbuffer import reports, rows
from pilot.infosys import rucio_path
from tests.support.dbjobs import insert_job
from tests.wire.helpers import store_jobs

DDM_TABLES = "ddm.transfers, ddm.subscriptions, ddm.replicas, ddm.dataset_files, ddm.files, ddm.datasets"


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


@dataclasses.dataclass
class Grid:
    """The data service over the default topology, driven cycle by cycle."""

    engine: object
    settings: Settings
    svc: DataService
    storage: Path
    now: dt.datetime

    def tick(self, seconds: float = 60) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now

    def se_file(self, rse: str, scope: str, lfn: str) -> Path:
        return self.storage / rse / rucio_path(scope, lfn)

    def seed(self, dataset: str, rse: str, files: dict[str, bytes], scope: str = "mc") -> dict[str, FileInfo]:
        """Write files onto an SE at their Rucio paths and register them (dataset created if new)."""
        infos = {}
        for lfn, data in files.items():
            path = self.se_file(rse, scope, lfn)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            infos[lfn] = FileInfo(lfn, str(uuid.uuid4()), scope, len(data), f"ad:{adler32(data)}")
        if self.svc.ddm.get_dataset(dataset) is None:
            self.svc.ddm.register_dataset(dataset, rse=rse)
        self.svc.ddm.register_files(dataset, list(infos.values()), rse)
        return infos

    def setupper(self):
        return setupper.run_once(self.engine, self.settings, self.now, svc=self.svc)

    def activator(self):
        return activator.run_once(self.engine, self.settings, self.now, svc=self.svc)

    def adder(self):
        return adder.run_once(self.engine, self.settings, self.now, svc=self.svc)

    def finisher(self):
        return finisher.run_once(self.engine, self.settings, self.now, svc=self.svc)

    def waker(self):
        return waker.run_once(self.engine, self.settings, self.now, svc=self.svc)

    def agent(self, cycles: int = 1):
        out = None
        for _ in range(cycles):
            out = ddm_agent.run_once(self.engine, self.settings, self.now)
        return out


@pytest.fixture
def grid(clean_db, pki, tmp_path) -> Grid:
    """Empty job and DDM tables; default schedconfig; SEs under tmp_path; callbacks to a closed port."""
    with clean_db.begin() as conn:
        conn.execute(sa.text("TRUNCATE " + DDM_TABLES))
    storage = tmp_path / "storage"
    settings = Settings(pki_dir=pki.root, storage_root=storage, ddm_backoff=10.0, ddm_callback_attempts=1)

    def rses():
        with clean_db.connect() as conn:
            return rse_map(conn, storage)

    callback = f"https://127.0.0.1:9{CALLBACK_PATH}"  # nobody listens: only the polls settle
    svc = DataService(LocalDDM(clean_db, rses), callback, settings.jobsign_key, settings)
    return Grid(clean_db, settings, svc, storage, dt.datetime.now(dt.UTC).replace(tzinfo=None))


def payload(n: int = 3000) -> bytes:
    return os.urandom(n)


# ---------------------------------------------------------------- jobs and their rows


def production_job(tag: str, i: int, inputs: list[str], **attrs) -> JobSpec:
    job = JobSpec(jobName=f"mc.{tag}.{i}", transformation="/bin/true", prodSourceLabel="managed", cloud="CLOUDA",
                  AtlasRelease="NULL", prodDBlock=f"mc.{tag}.evgen", assignedPriority=100, currentPriority=100,
                  jobParameters="x", **attrs)  # fmt: skip
    for lfn in inputs:
        job.add_file(FileSpec(lfn=lfn, type="input", dataset=f"mc.{tag}.evgen", prodDBlock=f"mc.{tag}.evgen",
                              scope="mc"))  # fmt: skip
    job.add_file(FileSpec(lfn=f"mc.{tag}.HITS.{i}.root", type="output", scope="mc", dataset=f"mc.{tag}.HITS",
                          destinationDBlock=f"mc.{tag}.HITS"))  # fmt: skip
    job.add_file(FileSpec(lfn=f"mc.{tag}.log.{i}.tgz", type="log", scope="mc", dataset=f"mc.{tag}.log",
                          destinationDBlock=f"mc.{tag}.log", GUID=str(uuid.uuid4())))  # fmt: skip
    return job


def load_tier1(engine, n: int = 3) -> None:
    """Activated jobs at CLOUDA_T1: its weight (activated+assigned) sends new work to the T2s."""
    with engine.begin() as conn:
        for _ in range(n):
            insert_job(conn, "activated", site="CLOUDA_T1")


def jobs_by_id(engine, ids):
    out = {}
    with engine.connect() as conn:
        for table in t.JOB_TABLE.values():
            for row in conn.execute(sa.select(table).where(table.c.PandaID.in_(ids))).mappings():
                out[row["PandaID"]] = dict(row)
    return out


def job_row(engine, panda_id: int) -> dict:
    return jobs_by_id(engine, [panda_id])[panda_id]


def files_of(engine, panda_id):
    f = t.filestable4
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(sa.select(f).where(f.c.PandaID == panda_id).order_by(f.c.rowID)).mappings()
        ]


def inputs_of(engine, panda_id):
    return [f for f in files_of(engine, panda_id) if f["type"] == "input"]


def set_status(engine, panda_ids, status: str) -> None:
    """What the dispatcher and the pilot's heartbeats do to activated jobs (jobsactive4 only)."""
    a = t.jobsactive4
    with engine.begin() as conn:
        conn.execute(sa.update(a).where(a.c.PandaID.in_(list(panda_ids))).values(jobStatus=status))


def write_outputs(grid, panda_id: int, site_rse: str) -> dict[str, dict]:
    """A pilot's stage-out: the job's outputs and log on the site's SE; its report entries."""
    report = {}
    for f in files_of(grid.engine, panda_id):
        if f["type"] == "input":
            continue
        data = payload(1000)
        path = grid.se_file(site_rse, f["scope"], f["lfn"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        report[f["lfn"]] = {
            "guid": f["GUID"] or str(uuid.uuid4()),
            "fsize": len(data),
            "adler32": adler32(data),
        }
    return report


def report_final(grid, panda_id: int, data: str, *, status: str = "finished", label: str = "managed") -> None:
    """The pilot's final updateJob as the dispatcher stores it: job holding, report kept for the adder."""
    with grid.engine.begin() as conn:
        a = t.jobsactive4
        conn.execute(sa.update(a).where(a.c.PandaID == panda_id).values(jobStatus="holding"))
        reports.save(conn, panda_id, pilot_status=status, data=data, attempt_nr=1, label=label, now=grid.now)


def pilot_ran(
    grid, panda_id: int, site_rse: str, *, status: str = "finished", label: str = "managed"
) -> None:
    """What a pilot leaves behind: outputs on the site's SE and a final JSON report (job holding)."""
    report_final(
        grid, panda_id, json.dumps(write_outputs(grid, panda_id, site_rse)), status=status, label=label
    )


def site_rse(row: dict) -> str:
    """The RSE of a job's computingSite in the default topology (ANALY_ queues share their site's)."""
    return f"{row['computingSite'].removeprefix('ANALY_')}_DATADISK"


# ---------------------------------------------------------------- whole stretches of the flow


def seeded_jobs(grid, tag: str, n: int = 1, **attrs) -> list[int]:
    """n production jobs of one input each, the inputs at the T1, the T1 loaded: stored `defined`."""
    inputs = grid.seed(
        f"mc.{tag}.evgen", "CLOUDA_T1_DATADISK", {f"mc.{tag}.EVNT.{i}": payload() for i in range(n)}
    )
    load_tier1(grid.engine)
    return store_jobs(
        grid.engine, [production_job(tag, i, [lfn], **attrs) for i, lfn in enumerate(sorted(inputs))]
    )


def running_jobs(grid, tag: str, n: int = 1) -> list[int]:
    """n production jobs brokered to the T2s, their inputs dispatched, activated and running."""
    ids = seeded_jobs(grid, tag, n)
    assert grid.setupper().assigned == n
    grid.agent(cycles=2)
    assert grid.activator().activated == n
    set_status(grid.engine, ids, "running")
    return ids


def transferring_jobs(grid, tag: str, n: int = 1) -> list[int]:
    """n production jobs run at a T2 whose outputs the adder registered and subscribed to the T1."""
    ids = running_jobs(grid, tag, n)
    for pid in ids:
        pilot_ran(grid, pid, site_rse(job_row(grid.engine, pid)))
    assert grid.adder().transferring == n
    return ids


# ---------------------------------------------------------------- DDM and signatures


def corrupt(path: Path) -> bytes:
    """Change one byte of a file in place (same size, another adler32); the original bytes."""
    data = path.read_bytes()
    path.write_bytes(bytes([(data[0] + 1) % 256]) + data[1:])
    return data


def transfers_of(engine, dataset: str) -> list[dict]:
    """The local DDM's transfer rows (attempts, state, last_error) of a dataset's subscriptions."""
    tr, s, d, f = ddm_tables.transfers, ddm_tables.subscriptions, ddm_tables.datasets, ddm_tables.files
    query = (
        sa.select(tr, f.c.lfn, s.c.rse).join(s, s.c.id == tr.c.subscription_id).join(d, d.c.id == s.c.dataset_id)
        .join(f, f.c.guid == tr.c.guid).where(d.c.name == dataset).order_by(f.c.lfn)
    )  # fmt: skip
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def ddm_subscriptions(engine) -> list[dict]:
    s, d = ddm_tables.subscriptions, ddm_tables.datasets
    with engine.connect() as conn:
        query = sa.select(s, d.c.name.label("dataset"), d.c.vuid).join(d, d.c.id == s.c.dataset_id)
        return [dict(r) for r in conn.execute(query.order_by(s.c.id)).mappings()]


def panda_dataset(engine, name: str) -> dict | None:
    d = t.datasets
    with engine.connect() as conn:
        row = conn.execute(sa.select(d).where(d.c.name == name)).mappings().first()
    return dict(row) if row else None


def stored_signature(engine, panda_id: int) -> str | None:
    p = t.jobparamstable
    with engine.connect() as conn:
        return conn.execute(sa.select(p.c.jobSignature).where(p.c.PandaID == panda_id)).scalar_one()


def signature_verdict(grid, panda_id: int, signature: str | None = None) -> signing.Verdict:
    """What our pilot would decide: the job as stored (peek_jobs, i.e. the getJob reply's fields)
    against its stored signature (or `signature`), with the PKI's public job-signing key."""
    with grid.engine.connect() as conn:
        [job] = rows.peek_jobs(conn, [panda_id])
    pub = grid.settings.jobsign_pub
    key = signing.load_public_key(pub.read_bytes(), str(pub))
    return signing.verify(
        signing.fields_of_job(job), signature or stored_signature(grid.engine, panda_id), key
    )
