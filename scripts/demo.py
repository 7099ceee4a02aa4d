"""The demo workload of `make run`: PanDA's data-driven flow on the local grid.

1. Input data is put on CLOUDA's T1 storage and registered in the local DDM (dataset
   mc.demo.<tag>.evgen), and one analysis input on CLOUDA_T2_1's storage (user.demo.<tag>.in).
2. Three reprocessing jobs are pinned to CLOUDA_T1 (they load it); eight production jobs
   (production proxy, cloud CLOUDA, no site, four inputs each) are submitted: the broker cuts
   them into bunches of at most 20 input files and spreads the bunches over CLOUDA_T2_1 and
   CLOUDA_T2_2 (the loaded T1 weighs more, and in-loop assigned++ moves the second bunch), their inputs are
   dispatched T1 → T2 by the DDM agent and they stay `assigned` until the datasetCompleted
   callback activates them. One analysis job (user proxy) is brokered to ANALY_CLOUDA_T2_1, the
   only analysis site holding its input, and triggers no transfer.
3. AutoPilot (the `autopilot` service of the local grid) sees activated jobs at a queue and
   submits pilots there (local processes, or Slurm jobs with `make run SUBMITTER=slurm`); the
   production outputs are then aggregated at the T1 (`transferring` until the DDM callback),
   the others finish where they ran.
The script prints each job's site and state, the pilots that ran them, and checks the outputs on
the T1's storage.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
import zlib
from collections.abc import Mapping
from pathlib import Path

from client import api
from client.config import ClientConfig
from panda_server.protocol.jobspec import FileSpec, JobSpec

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 420  # s for the whole flow
TERMINAL = ("finished", "failed", "cancelled")


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def seed(env: Mapping[str, str], dataset: str, rse: str, files: dict[str, bytes]) -> dict[str, str]:
    """Write `files` onto `rse` at their Rucio paths and register them in DDM; {lfn: guid}."""
    from panda_server.db.engine import make_engine
    from panda_server.ddm.factory import make_ddm
    from panda_server.ddm.interface import FileInfo
    from panda_server.ddm.local.rses import rse_map
    from panda_server.settings import Settings
    from pilot.infosys import rucio_path

    settings = Settings.from_env(env)
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=1)
    ddm = make_ddm(engine, settings)
    with engine.connect() as conn:
        _endpoint, base = rse_map(conn, settings.storage_root)[rse]
    scope = dataset.split(".")[0]
    infos = []
    for lfn, data in files.items():
        path = Path(base) / rucio_path(scope, lfn)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        infos.append(FileInfo(lfn=lfn, guid=str(uuid.uuid4()), scope=scope, fsize=len(data),
                              checksum=f"ad:{adler32(data)}"))  # fmt: skip
    ddm.register_dataset(dataset, rse=rse)
    ddm.register_files(dataset, infos, rse)
    engine.dispose()
    return {i.lfn: i.guid for i in infos}


def production_job(tag: str, i: int, inputs: list[str]) -> JobSpec:
    job = JobSpec(jobName=f"mc.demo.{tag}.simul.{i:02d}", transformation="/bin/bash", prodSourceLabel="managed",
                  jobParameters=f"-c 'cat {' '.join(inputs)} | wc -c > mc.demo.{tag}.HITS.{i:02d}.root'",
                  cloud="CLOUDA", AtlasRelease="NULL", assignedPriority=100, currentPriority=100,
                  prodDBlock=f"mc.demo.{tag}.evgen", taskID=1)  # fmt: skip
    for lfn in inputs:
        job.add_file(FileSpec(lfn=lfn, type="input", dataset=f"mc.demo.{tag}.evgen", scope="mc",
                              prodDBlock=f"mc.demo.{tag}.evgen"))  # fmt: skip
    job.add_file(FileSpec(lfn=f"mc.demo.{tag}.HITS.{i:02d}.root", type="output", scope="mc",
                          dataset=f"mc.demo.{tag}.HITS", destinationDBlock=f"mc.demo.{tag}.HITS"))  # fmt: skip
    job.add_file(FileSpec(lfn=f"mc.demo.{tag}.log.{i:02d}.tgz", type="log", scope="mc", GUID=str(uuid.uuid4()),
                          dataset=f"mc.demo.{tag}.log", destinationDBlock=f"mc.demo.{tag}.log"))  # fmt: skip
    return job


def t1_load_job(tag: str, i: int) -> JobSpec:
    job = JobSpec(jobName=f"data.demo.{tag}.reco.{i}", transformation="/bin/echo", prodSourceLabel="managed",
                  jobParameters="reprocessing at the T1", computingSite="CLOUDA_T1", cloud="CLOUDA",
                  AtlasRelease="NULL", assignedPriority=50, currentPriority=50)  # fmt: skip
    job.add_file(FileSpec(lfn=f"data.demo.{tag}.log.{i}.tgz", type="log", scope="data", GUID=str(uuid.uuid4()),
                          dataset=f"data.demo.{tag}.log", destinationDBlock=f"data.demo.{tag}.log"))  # fmt: skip
    return job


def analysis_job(tag: str, lfn: str) -> JobSpec:
    job = JobSpec(jobName=f"user.demo.{tag}.ana", transformation="/bin/bash", prodSourceLabel="user",
                  jobParameters=f"-c 'wc -c {lfn}'", AtlasRelease="NULL", prodDBlock=f"user.demo.{tag}.in")  # fmt: skip
    job.add_file(FileSpec(lfn=lfn, type="input", dataset=f"user.demo.{tag}.in", scope="user",
                          prodDBlock=f"user.demo.{tag}.in"))  # fmt: skip
    job.add_file(FileSpec(lfn=f"user.demo.{tag}.log.tgz", type="log", scope="user", GUID=str(uuid.uuid4()),
                          dataset=f"user.demo.{tag}.log", destinationDBlock=f"user.demo.{tag}.log"))  # fmt: skip
    return job


def t1_path(env: Mapping[str, str], scope: str, lfn: str) -> Path:
    from pilot.infosys import rucio_path

    return (
        Path(env.get("PANDA_STORAGE_ROOT", ROOT / "var" / "storage"))
        / "CLOUDA_T1_DATADISK"
        / rucio_path(scope, lfn)
    )


def configs(env: Mapping[str, str]) -> tuple[ClientConfig, ClientConfig]:
    pki = env["PANDA_PKI_DIR"]
    urls = {"url": "http://localhost:25080/server/panda", "url_ssl": "https://localhost:25443/server/panda"}
    return (ClientConfig(**urls, proxy=f"{pki}/production.proxy", ca_dir=f"{pki}/ca"),
            ClientConfig(**urls, proxy=f"{pki}/user.proxy", ca_dir=f"{pki}/ca"))  # fmt: skip


def submit(env: Mapping[str, str], tag: str) -> tuple[list[int], list[int], int]:
    """Seed the data and submit; (production PandaIDs, T1 load PandaIDs, analysis PandaID)."""
    evgen = {f"mc.demo.{tag}.EVNT.{i:02d}.pool.root": os.urandom(4096 + i) for i in range(32)}
    seed(env, f"mc.demo.{tag}.evgen", "CLOUDA_T1_DATADISK", evgen)
    ana_lfn = f"user.demo.{tag}.AOD.pool.root"
    seed(env, f"user.demo.{tag}.in", "CLOUDA_T2_1_DATADISK", {ana_lfn: os.urandom(2048)})
    print(f"==> input data: 32 files at CLOUDA_T1_DATADISK (mc.demo.{tag}.evgen), "
          f"1 at CLOUDA_T2_1_DATADISK (user.demo.{tag}.in)")  # fmt: skip
    prod, user = configs(env)
    lfns = sorted(evgen)
    status, load = api.submitJobs([t1_load_job(tag, i) for i in range(3)], prod)
    _check(status, load, "T1 load jobs")
    jobs = [production_job(tag, i, lfns[4 * i : 4 * i + 4]) for i in range(8)]
    status, stored = api.submitJobs(jobs, prod)
    _check(status, stored, "production jobs")
    status, ana = api.submitJobs([analysis_job(tag, ana_lfn)], user)
    _check(status, ana, "analysis job")
    print("==> submitted 8 production jobs, 3 T1 reprocessing jobs and 1 analysis job")
    return [r[0] for r in stored], [r[0] for r in load], ana[0][0]


def _check(status: int, stored, what: str) -> None:
    if status != 0 or not stored:
        sys.exit(f"demo: submitting {what} failed (status {status}); see var/log/server-https.log")


def statuses(ids: list[int], config: ClientConfig) -> list[JobSpec]:
    status, jobs = api.getJobStatus(ids, config)
    return [j for j in jobs or [] if j is not None] if status == 0 else []


def run_until_done(ids: list[int], config: ClientConfig) -> list[JobSpec]:
    """Show the jobs' states until all have ended (the factory sends the pilots)."""
    shown: dict[int, str] = {}
    deadline = time.monotonic() + DEADLINE
    jobs: list[JobSpec] = []
    while time.monotonic() < deadline:
        jobs = statuses(ids, config)
        for j in jobs:
            if shown.get(j.PandaID) != j.jobStatus:
                shown[j.PandaID] = j.jobStatus
                print(
                    f"    PandaID={j.PandaID} {j.jobStatus:12} {j.computingSite or '':18} {j.jobName}",
                    flush=True,
                )
        if len(jobs) == len(ids) and all(j.jobStatus in TERMINAL for j in jobs):
            break
        time.sleep(2)
    return jobs


def show_pilots(env: Mapping[str, str], jobs: list[JobSpec]) -> None:
    """Which pilots ran the jobs (their GTAG log links), from the factory's tracking table."""
    import sqlalchemy as sa

    from panda_server.db import tables as t
    from panda_server.db.engine import make_engine

    urls = {(j.pilotID or "").split("|")[0] for j in jobs if j.pilotID and j.pilotID != "NULL"}
    engine = make_engine(env["PANDA_DATABASE_URL"], pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            rows = list(conn.execute(sa.select(t.pilotqueue).where(t.pilotqueue.c.url.in_(urls))))
    finally:
        engine.dispose()
    systems = sorted({r.system for r in rows})
    print(
        f"==> {len(rows)} pilots of the factory ({', '.join(systems) or 'none'}) ran the demo jobs; their logs:"
    )
    for r in sorted(rows, key=lambda r: r.tsubmit)[:12]:
        print(f"    {r.nickname:18} {r.system} {r.jobid:>8} {r.state:8} {r.url}")


def main(env: Mapping[str, str]) -> int:
    tag = uuid.uuid4().hex[:6]
    prod_ids, load_ids, ana_id = submit(env, tag)
    prod, _user = configs(env)
    print("==> waiting for AutoPilot's pilots to run them (panda-autopilot pilots lists them)", flush=True)
    jobs = {j.PandaID: j for j in run_until_done([*prod_ids, *load_ids, ana_id], prod)}
    print()
    show_pilots(env, list(jobs.values()))
    print("==> where the production jobs ran: " + ", ".join(
        sorted({jobs[i].computingSite for i in prod_ids if i in jobs})))  # fmt: skip
    if ana_id in jobs:
        print(f"==> the analysis job ran at {jobs[ana_id].computingSite}, where its input is")
    at_t1 = 0
    for i in range(8):
        lfn = f"mc.demo.{tag}.HITS.{i:02d}.root"
        at_t1 += t1_path(env, "mc", lfn).is_file()
    print(f"==> {at_t1} of 8 production outputs are on CLOUDA_T1's storage (var/storage/CLOUDA_T1_DATADISK)")
    done = sum(1 for j in jobs.values() if j.jobStatus == "finished")
    print(f"==> {done} of {len(jobs)} demo jobs finished")
    return 0 if done == len(prod_ids) + len(load_ids) + 1 and at_t1 == 8 else 1
