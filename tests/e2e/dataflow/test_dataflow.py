"""The data-driven flow end to end: real server (gunicorn, mTLS), real PostgreSQL, the real local
DDM with its transfer agent, a real XRootD T1 and directory T2s, and our pilot.

A test cloud CLOUDX (T1 on XRootD, two T2s and an analysis queue on directories) is added to the
default topology for the module. The daemons' cycles run in this process; the DDM agent calls
the live server's datasetCompleted over mTLS, which is what activates and finishes the jobs here.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from panda_server.dataservice import adder, setupper
from panda_server.dataservice.context import CALLBACK_PATH, DataService
from panda_server.db import tables as t
from panda_server.ddm.interface import FileInfo
from panda_server.ddm.local import LocalDDM, rse_map
from panda_server.ddm.local import agent as ddm_agent
from panda_server.protocol.jobspec import FileSpec, JobSpec
from panda_server.settings import Settings
from pilot.infosys import rucio_path
from schedconfig import loader, sync
from schedconfig.model import CloudSpec, QueueSpec
from tests.support.dbjobs import insert_job
from tests.support.pilots import run_pilot
from tests.wire.helpers import USER_DN, store_jobs

ROOT = Path(__file__).resolve().parents[3]
DDM_TABLES = "ddm.transfers, ddm.subscriptions, ddm.replicas, ddm.dataset_files, ddm.files, ddm.datasets"
MAX_CYCLES = 15


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def cloudx(xrootd_url: str) -> tuple[list[QueueSpec], CloudSpec]:
    common = {"cloud": "CLOUDX", "memory": 4000, "copytool": "cp", "maxinputsize": 10000, "space": 1000}
    queues = [
        QueueSpec(nickname="CLOUDX_T1", tier="T1", se_path=f"{xrootd_url}/dataflow/CLOUDX_T1", **common),
        QueueSpec(nickname="CLOUDX_T2_1", tier="T2", **common),
        QueueSpec(nickname="CLOUDX_T2_2", tier="T2", **common),
        QueueSpec(nickname="ANALY_CLOUDX_T2_2", tier="T2", ddm="CLOUDX_T2_2_DATADISK", **common),
    ]
    return queues, CloudSpec(name="CLOUDX", tier1="CLOUDX_T1", tier1SE=("CLOUDX_T1_DATADISK",), weight=2)


@pytest.fixture(scope="module")
def topology(engine, schedconfig_loaded, xrootd):
    directory = ROOT / "schedconfig" / "queues"
    queues, clouds = loader.load_queues(directory), loader.load_clouds(directory)
    extra, cloud = cloudx(xrootd.url)
    with engine.begin() as conn:
        sync.sync(conn, [*queues, *extra], [*clouds, cloud], utcnow())
    yield extra
    with engine.begin() as conn:  # back to the default topology: the test cloud leaves no trace
        conn.execute(sa.delete(t.schedconfig).where(t.schedconfig.c.cloud == "CLOUDX"))
        conn.execute(sa.delete(t.cloudconfig).where(t.cloudconfig.c.name == "CLOUDX"))
        sync.sync(conn, queues, clouds, utcnow())


class Flow:
    def __init__(self, engine, server, xrootd, workdir: Path):
        self.engine, self.server, self.xrootd, self.workdir = engine, server, xrootd, workdir
        self.settings = Settings(pki_dir=server.pki.root, storage_root=server.storage_root, ddm_backoff=1.0)

        def rses():
            with engine.connect() as conn:
                return rse_map(conn, server.storage_root)

        self.rses = rses
        self.svc = DataService(LocalDDM(engine, rses), f"{server.https_url}{CALLBACK_PATH}",
                               self.settings.jobsign_key, self.settings)  # fmt: skip

    def t1_file(self, scope: str, lfn: str) -> Path:
        return self.xrootd.data_dir / "dataflow" / "CLOUDX_T1" / rucio_path(scope, lfn)

    def dir_file(self, rse: str, scope: str, lfn: str) -> Path:
        return self.server.storage_root / rse / rucio_path(scope, lfn)

    def seed_t1(self, dataset: str, files: dict[str, bytes], scope: str = "mc") -> None:
        """Files onto the XRootD T1 (with xrdcp, as the SE's own user writes them) and into DDM."""
        infos = []
        for lfn, data in files.items():
            local = self.workdir / lfn
            local.write_bytes(data)
            url = f"{self.xrootd.url}//dataflow/CLOUDX_T1/{rucio_path(scope, lfn)}"
            subprocess.run(["xrdcp", "-f", "-p", "-s", str(local), url], check=True, timeout=60,
                           env={**os.environ, "XRD_CONNECTIONRETRY": "1"})  # fmt: skip
            infos.append(FileInfo(lfn, str(uuid.uuid4()), scope, len(data), f"ad:{adler32(data)}"))
        self.svc.ddm.register_dataset(dataset, rse="CLOUDX_T1_DATADISK")
        self.svc.ddm.register_files(dataset, infos, "CLOUDX_T1_DATADISK")

    def seed_dir(self, dataset: str, rse: str, files: dict[str, bytes], scope: str = "user") -> None:
        infos = []
        for lfn, data in files.items():
            path = self.dir_file(rse, scope, lfn)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            infos.append(FileInfo(lfn, str(uuid.uuid4()), scope, len(data), f"ad:{adler32(data)}"))
        self.svc.ddm.register_dataset(dataset, rse=rse)
        self.svc.ddm.register_files(dataset, infos, rse)

    def setupper(self):
        return setupper.run_once(self.engine, self.settings, utcnow(), svc=self.svc)

    def adder(self):
        return adder.run_once(self.engine, self.settings, utcnow(), svc=self.svc)

    def agent_until(self, done, what: str) -> None:
        """DDM agent cycles (each one bounded) until `done()`; the callbacks reach the live server."""
        for _ in range(MAX_CYCLES):
            ddm_agent.run_once(self.engine, self.settings, utcnow() + dt.timedelta(minutes=10))
            if done():
                return
        raise AssertionError(f"{what}: not reached after {MAX_CYCLES} DDM agent cycles")

    def jobs(self, ids) -> dict[int, dict]:
        out = {}
        with self.engine.connect() as conn:
            for table in t.JOB_TABLE.values():
                for row in conn.execute(sa.select(table).where(table.c.PandaID.in_(ids))).mappings():
                    out[row["PandaID"]] = dict(row)
        return out

    def statuses(self, ids) -> set[str]:
        return {r["jobStatus"] for r in self.jobs(ids).values()}

    def files(self, ids) -> list[dict]:
        f = t.filestable4
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(f).where(f.c.PandaID.in_(ids))).mappings()]

    def subscriptions(self) -> list[tuple[str, str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT d.name, s.rse, s.state FROM ddm.subscriptions s JOIN ddm.datasets d ON d.id = s.dataset_id"
            ))  # fmt: skip
            return [tuple(r) for r in rows]


@pytest.fixture
def flow(live, engine, xrootd, topology, tmp_path):
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE " + DDM_TABLES))
    return Flow(engine, live, xrootd, tmp_path)


def production_job(tag: str, i: int, inputs: list[str]) -> JobSpec:
    out = f"mc.{tag}.HITS.{i:02d}.root"
    job = JobSpec(jobName=f"mc.{tag}.{i:02d}", transformation="/bin/bash", prodSourceLabel="managed",
                  jobParameters=f"-c 'cat {' '.join(inputs)} > {out}'", cloud="CLOUDX", AtlasRelease="NULL",
                  prodDBlock=f"mc.{tag}.evgen", assignedPriority=100, currentPriority=100)  # fmt: skip
    for lfn in inputs:
        job.add_file(FileSpec(lfn=lfn, type="input", dataset=f"mc.{tag}.evgen", prodDBlock=f"mc.{tag}.evgen",
                              scope="mc"))  # fmt: skip
    job.add_file(FileSpec(lfn=out, type="output", scope="mc", dataset=f"mc.{tag}.HITS",
                          destinationDBlock=f"mc.{tag}.HITS"))  # fmt: skip
    job.add_file(FileSpec(lfn=f"mc.{tag}.log.{i:02d}.tgz", type="log", scope="mc", dataset=f"mc.{tag}.log",
                          destinationDBlock=f"mc.{tag}.log", GUID=str(uuid.uuid4())))  # fmt: skip
    return job


def run_pilots(flow: Flow, queues: list[str]) -> None:
    def one(queue):
        return run_pilot(flow.server, queue, flow.workdir / f"pilot-{queue}", "--max-jobs", "20", timeout=600)

    with ThreadPoolExecutor(len(queues)) as pool:
        for queue, proc in zip(queues, pool.map(one, queues), strict=True):
            assert proc.returncode == 0, f"pilot for {queue}: {proc.stderr[-3000:]}"


def test_production_jobs_move_inputs_t1_to_t2_run_and_aggregate_outputs_at_the_t1(flow):
    tag = uuid.uuid4().hex[:8]
    inputs = {f"mc.{tag}.EVNT.{i:02d}.pool.root": os.urandom(2000 + i) for i in range(40)}
    flow.seed_t1(f"mc.{tag}.evgen", inputs)
    with flow.engine.begin() as conn:  # the T1 is busy: its weight sends the new work to the T2s
        for _ in range(3):
            insert_job(conn, "activated", site="CLOUDX_T1")
    lfns = sorted(inputs)
    ids = store_jobs(flow.engine, [production_job(tag, i, lfns[2 * i : 2 * i + 2]) for i in range(20)])

    assert flow.setupper().assigned == 20
    rows = flow.jobs(ids)
    sites = {r["computingSite"] for r in rows.values()}
    assert sites == {"CLOUDX_T2_1", "CLOUDX_T2_2"}, sites  # spread over the cloud's T2s
    assert flow.statuses(ids) == {"assigned"}
    assert not any(flow.dir_file(f"{r['computingSite']}_DATADISK", "mc", lfn).exists()
                   for r in rows.values() for lfn in lfns)  # nothing at the T2s yet  # fmt: skip

    flow.agent_until(
        lambda: flow.statuses(ids) == {"activated"}, "activation by the datasetCompleted callback"
    )
    for r in rows.values():
        for f in flow.files([r["PandaID"]]):
            if f["type"] == "input":
                assert (
                    flow.dir_file(f"{r['computingSite']}_DATADISK", "mc", f["lfn"]).read_bytes()
                    == inputs[f["lfn"]]
                )

    run_pilots(flow, sorted(sites))
    assert flow.statuses(ids) == {"holding"}
    assert flow.adder().transferring == 20
    assert flow.statuses(ids) == {"transferring"}  # not finished before the outputs are at the T1

    flow.agent_until(lambda: flow.statuses(ids) == {"finished"}, "finishing by the datasetCompleted callback")
    outs = [f for f in flow.files(ids) if f["type"] in ("output", "log")]
    assert len(outs) == 40
    for f in outs:
        at_t1 = flow.t1_file("mc", f["lfn"])
        data = at_t1.read_bytes()
        assert (len(data), f"ad:{adler32(data)}") == (f["fsize"], f["checksum"]), f["lfn"]
        assert f["status"] == "ready"
    hits = {f["lfn"]: f for f in outs if f["type"] == "output"}
    job_inputs = {r["jobName"]: r for r in rows.values()}
    assert len(hits) == 20 and len(job_inputs) == 20


def test_an_analysis_job_runs_where_its_input_is_with_no_transfer(flow):
    tag = uuid.uuid4().hex[:8]
    lfn, data = f"user.{tag}.AOD.pool.root", os.urandom(3000)
    flow.seed_dir(f"user.{tag}.in", "CLOUDX_T2_2_DATADISK", {lfn: data})
    job = JobSpec(jobName=f"user.{tag}.ana", transformation="/bin/bash", prodSourceLabel="user",
                  jobParameters=f"-c 'wc -c {lfn}'", AtlasRelease="NULL", prodDBlock=f"user.{tag}.in",
                  cloud="CLOUDX")  # fmt: skip
    job.add_file(
        FileSpec(lfn=lfn, type="input", dataset=f"user.{tag}.in", prodDBlock=f"user.{tag}.in", scope="user")
    )
    job.add_file(FileSpec(lfn=f"user.{tag}.log.tgz", type="log", scope="user", dataset=f"user.{tag}.log",
                          destinationDBlock=f"user.{tag}.log", GUID=str(uuid.uuid4())))  # fmt: skip
    (panda_id,) = store_jobs(flow.engine, [job], dn=USER_DN, production=False)

    assert flow.setupper().activated == 1
    row = flow.jobs([panda_id])[panda_id]
    assert (row["jobStatus"], row["computingSite"], row["dispatchDBlock"]) == (
        "activated",
        "ANALY_CLOUDX_T2_2",
        None,
    )
    run_pilots(flow, ["ANALY_CLOUDX_T2_2"])
    flow.adder()
    assert flow.statuses([panda_id]) == {"finished"}
    assert flow.subscriptions() == []  # no transfer at all
    assert not flow.t1_file("user", lfn).exists()
