#!/usr/bin/env python3
"""Dispatch benchmark: N simulated pilots over mTLS keep-alive against the real server.

Each pilot loops getJob → updateJob starting → running → finished (pilot 3.7 form fields,
Accept: application/json) until no job is left or the duration cap is reached. In the same run,
the raw-SQL baseline executes the four statements a lifecycle needs (claim with FOR UPDATE SKIP
LOCKED activated→sent, starting, running, final: holding + output report), four commits per
lifecycle, with psycopg directly, on a fresh set of jobs. See benchmarks/README.md.

    .venv/bin/python benchmarks/dispatch.py --pilots 8 --jobs 2000
    .venv/bin/python benchmarks/dispatch.py --pilots 16 --workers 3 --threads 8 --json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import queue
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Heavy imports (sqlalchemy, the server packages) happen inside functions, so that spawned pilot
# processes, which re-import this module, start fast and stay small.

PILOT_VERSION = "3.7.0.36"
CALLS = ("getJob", "starting", "running", "finished")
MAX_CONSECUTIVE_ERRORS = 20
REQUEST_TIMEOUT = 30.0


# ---------------------------------------------------------------------------------------------
# Pilot side (stdlib only, or requests)


class _HttpClient:
    """One keep-alive HTTPS connection with the pilot proxy as client certificate (http.client)."""

    def __init__(self, host: str, port: int, ca_dir: str, proxy: str) -> None:
        import http.client
        import ssl

        self._http = http.client
        self.host, self.port = host, port
        self.ctx = ssl.create_default_context(capath=ca_dir)
        self.ctx.load_cert_chain(proxy)  # proxy file: cert + key + user cert (feasibility §5)
        self.conn = None

    def post(self, path: str, body: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = self._http.HTTPSConnection(
                self.host, self.port, context=self.ctx, timeout=REQUEST_TIMEOUT
            )
        try:
            self.conn.request("POST", path, body=body.encode(), headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
            if resp.will_close:
                self.close()
            return resp.status, data
        except Exception:
            self.close()
            raise

    def get(self, path: str) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = self._http.HTTPSConnection(
                self.host, self.port, context=self.ctx, timeout=REQUEST_TIMEOUT
            )
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class _RequestsClient:
    """The same over a requests.Session (what RunningServer.session gives)."""

    def __init__(self, host: str, port: int, ca_dir: str, proxy: str) -> None:
        import requests

        self.base = f"https://{host}:{port}"
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.verify = ca_dir
        self.s.cert = proxy

    def post(self, path: str, body: str, headers: dict[str, str]) -> tuple[int, bytes]:
        r = self.s.post(self.base + path, data=body, headers=headers, timeout=REQUEST_TIMEOUT)
        return r.status_code, r.content

    def get(self, path: str) -> tuple[int, bytes]:
        r = self.s.get(self.base + path, timeout=REQUEST_TIMEOUT)
        return r.status_code, r.content

    def close(self) -> None:
        self.s.close()


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def pilot_main(cfg: dict[str, Any], index: int, barrier: Any, out: Any, release: Any) -> None:
    """One simulated pilot; puts one result dict on `out`. Runs in a thread or a process."""
    import resource
    from urllib.parse import urlencode

    result: dict[str, Any] = {"index": index, "lat": {c: [] for c in CALLS}, "lifecycles": 0,
                              "warmup": 0, "getjob_calls": 0, "update_calls": 0, "errors": 0,
                              "error_samples": [], "start": None, "end": None, "cpu": 0.0}  # fmt: skip
    node = f"benchnode-{index:03d}"
    site = cfg["site"]
    headers = {"User-Agent": f"pilot/{PILOT_VERSION} (Python {platform.python_version()}; Linux x86_64)",
               "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    cls = _RequestsClient if cfg["http_lib"] == "requests" else _HttpClient
    client = None
    waited = False

    def error(msg: str) -> None:
        result["errors"] += 1
        if len(result["error_samples"]) < 5:
            result["error_samples"].append(f"pilot {index}: {msg}"[:300])

    def call(kind: str, method: str, fields: dict[str, Any], timed: bool) -> dict[str, Any] | None:
        body = urlencode(fields)
        t0 = time.perf_counter()
        try:
            status, data = client.post(f"/server/panda/{method}", body, headers)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            error(f"{kind}: {type(exc).__name__}: {exc}")
            return None
        elapsed = time.perf_counter() - t0
        if timed:
            result["lat"][kind].append(elapsed)
            result["getjob_calls" if kind == "getJob" else "update_calls"] += 1
        if status != 200:
            error(f"{kind}: HTTP {status}: {data[:200]!r}")
            return None
        try:
            reply = json.loads(data)
        except ValueError:
            error(f"{kind}: not JSON: {data[:200]!r}")
            return None
        return reply

    def lifecycle(timed: bool) -> str:
        """'done' (a full lifecycle), 'empty' (no jobs left) or 'error'."""
        job = call("getJob", "getJob", {
            "siteName": site, "computingElement": site, "prodSourceLabel": "managed", "diskSpace": "20000",
            "workingGroup": "", "cpu": "2596.122", "mem": "24105.55859375", "node": node,
            "allowOtherCountry": "False"}, timed)  # fmt: skip
        if job is None:
            return "error"
        code = str(job.get("StatusCode"))
        if code == "20":
            return "empty"
        if code != "0" or "PandaID" not in job:
            error(f"getJob: StatusCode={code} {str(job)[:200]}")
            return "error"
        panda_id, attempt = job["PandaID"], job.get("attemptNr", "1")
        t_start = time.time()
        common = {"jobId": panda_id, "siteName": site, "node": node, "attemptNr": attempt,
                  "schedulerID": "unknown", "pilotID": f"unknown|PR|{PILOT_VERSION}",
                  "startTime": f"{t_start:.2f}", "coreCount": "1",
                  "cpuConsumptionUnit": "s+AMD EPYC 1024 KB 2-Core Processor+AVX2",
                  "cpu_architecture_level": "x86-64-v3"}  # fmt: skip
        for state in ("starting", "running"):
            fields = {**common, "state": state, "timestamp": _stamp()}
            if state == "running":
                fields.update(cpuConsumptionTime="1", cpuConversionFactor="1.0", meanCoreCount="1.0",
                              jobMetrics="coreCount=1 workDirSize=4096")  # fmt: skip
            reply = call(state, "updateJob", fields, timed)
            if reply is None:
                return "error"
            if str(reply.get("StatusCode")) != "0" or reply.get("command") not in ("NULL", None):
                error(f"updateJob {state} PandaID={panda_id}: {str(reply)[:200]}")
                return "error"
        log_file = job.get("logFile") or f"log.{panda_id}.job.log.tgz"
        xml = json.dumps({log_file: {"guid": job.get("logGUID") or str(uuid.uuid4()), "fsize": 8035,
                                     "adler32": "eabec616",
                                     "surl": f"file://localhost/bench/se/{log_file}"}})  # fmt: skip
        fields = {**common, "state": "finished", "timestamp": _stamp(), "cpuConsumptionTime": "2",
                  "cpuConversionFactor": "1.0", "xml": xml, "pilotTiming": "0|0|1|0|1|0", "pilotLog": "",
                  "endTime": f"{time.time():.2f}", "pilotErrorCode": "0", "pilotErrorDiag": "",
                  "transExitCode": "0", "exeErrorCode": "0", "exeErrorDiag": "", "nEvents": "10",
                  "jobMetrics": "coreCount=1 nEvents=10 workDirSize=4096"}  # fmt: skip
        reply = call("finished", "updateJob", fields, timed)
        if reply is None:
            return "error"
        if str(reply.get("StatusCode")) != "0" or reply.get("command") not in ("NULL", None):
            error(f"updateJob finished PandaID={panda_id}: {str(reply)[:200]}")
            return "error"
        return "done"

    try:
        client = cls(cfg["host"], cfg["port"], cfg["ca_dir"], cfg["proxy"])
        status, _ = client.get("/server/panda/isAlive")  # TLS handshake outside the timed window
        if status != 200:
            error(f"isAlive: HTTP {status}")
        for _ in range(cfg["warmup"]):
            if lifecycle(timed=False) == "done":
                result["warmup"] += 1
        barrier.wait(timeout=300)
        waited = True
        who = resource.RUSAGE_THREAD if cfg.get("in_thread") else resource.RUSAGE_SELF
        cpu0 = resource.getrusage(who)
        result["start"] = time.monotonic()
        deadline = result["start"] + cfg["duration"]
        consecutive = 0
        for _ in range(cfg["max_lifecycles"]):  # bounded in count and in time
            if time.monotonic() >= deadline:
                break
            outcome = lifecycle(timed=True)
            if outcome == "empty":
                break
            if outcome == "done":
                result["lifecycles"] += 1
                consecutive = 0
            else:
                consecutive += 1
                if consecutive >= MAX_CONSECUTIVE_ERRORS:
                    error("too many consecutive errors; pilot stops")
                    break
        result["end"] = time.monotonic()
        cpu1 = resource.getrusage(who)
        result["cpu"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    except Exception as exc:  # noqa: BLE001 - reported, never hangs the run
        error(f"pilot crashed: {type(exc).__name__}: {exc}")
        if not waited:
            with contextlib.suppress(Exception):
                barrier.abort()
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        out.put(result)


# ---------------------------------------------------------------------------------------------
# CPU accounting from /proc (Linux)

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime of the process itself
    except (OSError, IndexError, ValueError):
        return 0.0


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def server_pids(https_port: int) -> list[int]:
    """The gunicorn master and workers of our HTTPS listener (matched on their environment)."""
    want = f"PANDA_HTTPS_PORT={https_port}".encode()
    out = []
    for pid in _all_pids():
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if want in env and b"PANDA_LISTEN=https" in env:
            out.append(pid)
    return out


def postgres_pids(pg_base: Path | None) -> list[int]:
    """The postmaster of our private cluster and its children (backends, background workers)."""
    if pg_base is None:
        return []
    try:
        master = int((pg_base / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    out = [master]
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == master:
            out.append(pid)
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return total - idle, total


class CpuMeter:
    """CPU seconds used by server workers, postgres and this process between start() and stop()."""

    def __init__(self, https_port: int | None, pg_base: Path | None) -> None:
        self.https_port, self.pg_base = https_port, pg_base

    def _snap(self) -> dict[str, Any]:
        srv = {p: _proc_cpu(p) for p in server_pids(self.https_port)} if self.https_port else {}
        pg = {p: _proc_cpu(p) for p in postgres_pids(self.pg_base)}
        t = os.times()
        return {"server": srv, "pg": pg, "self": t.user + t.system, "machine": machine_cpu()}

    def start(self) -> None:
        self.a = self._snap()

    def stop(self) -> dict[str, float | None]:
        b = self._snap()

        def delta(kind: str) -> float:
            return sum(v - self.a[kind].get(p, 0.0) for p, v in b[kind].items())

        busy = b["machine"][0] - self.a["machine"][0]
        total = b["machine"][1] - self.a["machine"][1]
        return {"server_cpu_s": delta("server") if self.https_port else None,
                "pg_cpu_s": delta("pg") if self.pg_base else None,
                "bench_process_cpu_s": b["self"] - self.a["self"],
                "machine_busy_pct": 100.0 * busy / total if total else None}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Database set-up


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def prepare_db(engine, site: str) -> None:
    """Migrate, and load the default schedconfig unless the site is already defined."""
    import sqlalchemy as sa

    from panda_server.db import migrate
    from panda_server.db import tables as t
    from schedconfig import loader, sync

    migrate.upgrade(engine)
    with engine.begin() as conn:
        known = conn.execute(sa.select(t.schedconfig.c.siteid).where(t.schedconfig.c.siteid == site)).first()
        if known is None:
            directory = ROOT / "schedconfig" / "queues"
            sync.sync(conn, loader.load_queues(directory), loader.load_clouds(directory), _utcnow())
        status = conn.execute(
            sa.select(t.schedconfig.c.status).where(t.schedconfig.c.siteid == site)
        ).scalar()
    if status is None:
        raise SystemExit(f"site {site} is not in schedconfig (default queues: schedconfig/queues/)")
    if status not in ("online", "test", "brokeroff"):
        print(f"warning: site {site} has status {status!r}", file=sys.stderr)


def insert_jobs(engine, n: int, site: str, tag: str) -> list[int]:
    """n activated jobs for `site` (with a log file and parameters), in one transaction."""
    import sqlalchemy as sa

    from panda_server.db import tables as t
    from panda_server.taskbuffer import rows
    from tests.support.jobs import simple_job

    if n <= 0:
        return []
    now = _utcnow()
    template = simple_job(site, label="managed", priority=100, params="bench run")
    base = rows.job_values(template)
    log_tpl = template.Files[0].to_dict()
    with engine.begin() as conn:
        ids = conn.execute(sa.text("SELECT nextval('jobsdefined4_pandaid_seq') FROM generate_series(1, :n)"),
                           {"n": n}).scalars().all()  # fmt: skip
        row_ids = conn.execute(sa.text("SELECT nextval('filestable4_row_id_seq') FROM generate_series(1, :n)"),
                               {"n": n}).scalars().all()  # fmt: skip
        jobs, params, files = [], [], []
        for panda_id, row_id in zip(ids, row_ids, strict=True):
            jobs.append({**base, "PandaID": panda_id, "jobName": f"bench.{tag}.{panda_id}", "jobDefinitionID": 1,
                         "jobStatus": "activated", "creationTime": now, "modificationTime": now,
                         "stateChangeTime": now, "attemptNr": 1, "creationHost": "benchmark",
                         "prodUserID": "/DC=org/DC=pandawms/OU=Users/CN=Jane Doe"})  # fmt: skip
            params.append({"PandaID": panda_id, "modificationTime": now, "jobParameters": "bench run"})
            files.append({**log_tpl, "rowID": row_id, "PandaID": panda_id, "lfn": f"log.{panda_id:05d}.job.log.tgz",
                          "GUID": str(uuid.uuid4()), "status": "unknown", "modificationTime": now})  # fmt: skip
        conn.execute(t.jobsactive4.insert(), jobs)
        conn.execute(t.jobparamstable.insert(), params)
        conn.execute(t.filestable4.insert(), files)
    return list(ids)


def delete_jobs(engine, ids: list[int], *, only_activated: bool = False) -> int:
    import sqlalchemy as sa

    if not ids:
        return 0
    with engine.begin() as conn:
        if only_activated:
            gone = conn.execute(sa.text('DELETE FROM jobsactive4 WHERE "PandaID" = ANY(:ids) AND '
                                        "\"jobStatus\" = 'activated' RETURNING \"PandaID\""),
                                {"ids": ids}).scalars().all()  # fmt: skip
            ids = list(gone)
            if not ids:
                return 0
        n = 0
        for table in ("jobsactive4", "jobsarchived4", "jobsdefined4", "jobswaiting4", "filestable4",
                      "jobparamstable", "metatable", "job_output_report"):  # fmt: skip
            n += conn.execute(
                sa.text(f'DELETE FROM {table} WHERE "PandaID" = ANY(:ids)'), {"ids": ids}
            ).rowcount
        return n


def verify(engine, ids: list[int], expected: int) -> dict[str, Any]:
    """Did every completed lifecycle leave its job in holding with the pilot's report (for the Adder)?"""
    import sqlalchemy as sa

    with engine.connect() as conn:
        states = dict(conn.execute(sa.text('SELECT "jobStatus", count(*) FROM jobsactive4 WHERE "PandaID" = ANY(:ids) '
                                           'GROUP BY "jobStatus"'), {"ids": ids}).all())  # fmt: skip
        reports = conn.execute(sa.text('SELECT count(*) FROM job_output_report WHERE "PandaID" = ANY(:ids) '
                                       "AND \"jobStatus\" = 'finished'"), {"ids": ids}).scalar_one()  # fmt: skip
    ok = states.get("holding", 0) == expected and reports == expected
    return {"ok": ok, "expected": expected, "holding": states.get("holding", 0), "reports": reports,
            "job_states": states}  # fmt: skip


def vacuum(engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("jobsactive4", "filestable4", "jobparamstable", "job_output_report"):
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")


# ---------------------------------------------------------------------------------------------
# Raw-SQL baseline: the four statements of a lifecycle, four commits, psycopg directly

RAW_CLAIM = """
UPDATE jobsactive4 SET "modificationHost" = %(node)s, "computingElement" = %(site)s,
       "schedulerID" = 'unknown', "jobStatus" = 'sent', "modificationTime" = %(now)s,
       "stateChangeTime" = %(now)s, "startTime" = %(now)s
 WHERE "PandaID" = (SELECT "PandaID" FROM jobsactive4
                     WHERE "jobStatus" = 'activated' AND "computingSite" = %(site)s
                       AND "commandToPilot" IS NULL AND "prodSourceLabel" = ANY(%(labels)s)
                       AND ("minRamCount" IS NULL OR "minRamCount" = 0 OR "minRamCount" <= %(mem)s)
                       AND ("maxDiskCount" IS NULL OR "maxDiskCount" = 0 OR "maxDiskCount" <= %(disk)s)
                     ORDER BY "currentPriority" DESC NULLS LAST, "PandaID"
                     LIMIT 1 FOR UPDATE SKIP LOCKED)
   AND "jobStatus" = 'activated'
RETURNING *"""
RAW_STEP = """
UPDATE jobsactive4 SET "jobStatus" = %(new)s, "modificationTime" = %(now)s, "stateChangeTime" = %(now)s,
       "modificationHost" = %(node)s, "schedulerID" = 'unknown', "pilotID" = %(pilot_id)s,
       "actualCoreCount" = 1, "cpuConsumptionUnit" = %(unit)s, "cpuConsumptionTime" = %(cpu)s,
       "cpu_architecture_level" = 'x86-64-v3'
 WHERE "PandaID" = %(id)s AND "jobStatus" = %(old)s
RETURNING "commandToPilot" """
RAW_FINAL = """
UPDATE jobsactive4 SET "jobStatus" = 'holding', "modificationTime" = %(now)s, "stateChangeTime" = %(now)s,
       "endTime" = %(now)s, "pilotTiming" = '0|0|1|0|1|0', "transExitCode" = '0', "pilotErrorCode" = 0,
       "pilotErrorDiag" = '', "exeErrorCode" = 0, "exeErrorDiag" = '', "nEvents" = 10,
       "cpuConsumptionTime" = 2, "jobMetrics" = 'coreCount=1 nEvents=10 workDirSize=4096'
 WHERE "PandaID" = %(id)s AND "jobStatus" = 'running'
RETURNING "commandToPilot" """
RAW_REPORT = """
INSERT INTO job_output_report ("PandaID", "jobStatus", data, "attemptNr", "prodSourceLabel", "timeStamp",
                               "lockedBy", "lockedTime")
VALUES (%(id)s, 'finished', %(xml)s, %(attempt)s, %(label)s, %(now)s, NULL, NULL)
ON CONFLICT ("PandaID") DO UPDATE SET "jobStatus" = excluded."jobStatus", data = excluded.data,
       "attemptNr" = excluded."attemptNr", "prodSourceLabel" = excluded."prodSourceLabel",
       "timeStamp" = excluded."timeStamp", "lockedBy" = NULL, "lockedTime" = NULL"""


def raw_worker(cfg: dict[str, Any], index: int, barrier: Any, out: Any, release: Any) -> None:
    import resource

    import psycopg

    result: dict[str, Any] = {"index": index, "lifecycles": 0, "errors": 0, "error_samples": [],
                              "start": None, "end": None, "cpu": 0.0}  # fmt: skip
    node = f"rawnode-{index:03d}"
    waited = False
    try:
        with psycopg.connect(cfg["conninfo"], application_name="panda-bench-raw") as conn:
            barrier.wait(timeout=300)
            waited = True
            who = resource.RUSAGE_THREAD if cfg.get("in_thread") else resource.RUSAGE_SELF
            cpu0 = resource.getrusage(who)
            result["start"] = time.monotonic()
            deadline = result["start"] + cfg["duration"]
            for _ in range(cfg["max_lifecycles"]):
                if time.monotonic() >= deadline:
                    break
                try:
                    now = _utcnow()
                    row = conn.execute(RAW_CLAIM, {"node": node, "site": cfg["site"], "now": now, "mem": 24105,
                                                   "disk": 20000, "labels": cfg["labels"]}).fetchone()  # fmt: skip
                    conn.commit()
                    if row is None:
                        break
                    panda_id = row[0]
                    step = {"id": panda_id, "node": node, "pilot_id": f"unknown|PR|{PILOT_VERSION}",
                            "unit": "s+AMD EPYC 1024 KB 2-Core Processor+AVX2"}  # fmt: skip
                    for old, new, cpu in (("sent", "starting", None), ("starting", "running", 1)):
                        got = conn.execute(RAW_STEP, {**step, "old": old, "new": new, "cpu": cpu,
                                                      "now": _utcnow()}).fetchone()  # fmt: skip
                        conn.commit()
                        if got is None:
                            raise RuntimeError(f"PandaID={panda_id} not in {old}")
                    now = _utcnow()
                    if conn.execute(RAW_FINAL, {"id": panda_id, "now": now}).fetchone() is None:
                        raise RuntimeError(f"PandaID={panda_id} not running")
                    xml = json.dumps({f"log.{panda_id}.job.log.tgz": {"guid": str(uuid.uuid4()), "fsize": 8035,
                                                                      "adler32": "eabec616"}})  # fmt: skip
                    conn.execute(RAW_REPORT, {"id": panda_id, "xml": xml, "attempt": 1, "label": "managed",
                                              "now": now})  # fmt: skip
                    conn.commit()
                    result["lifecycles"] += 1
                except Exception as exc:  # noqa: BLE001
                    with contextlib.suppress(Exception):
                        conn.rollback()
                    result["errors"] += 1
                    if len(result["error_samples"]) < 5:
                        result["error_samples"].append(f"raw {index}: {type(exc).__name__}: {exc}"[:300])
                    if result["errors"] >= MAX_CONSECUTIVE_ERRORS:
                        break
            result["end"] = time.monotonic()
            cpu1 = resource.getrusage(who)
            result["cpu"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            # Report, then keep the connection (and so its backend's CPU counters) until the
            # main process has read the postgres CPU times
            out.put(result)
            result = None
            release.wait(timeout=120)
    except Exception as exc:  # noqa: BLE001
        if result is not None:
            result["errors"] += 1
            result["error_samples"].append(f"raw {index} crashed: {type(exc).__name__}: {exc}"[:300])
        if not waited:
            with contextlib.suppress(Exception):
                barrier.abort()
    finally:
        if result is not None:
            out.put(result)


# ---------------------------------------------------------------------------------------------
# Running N workers (threads or processes) behind a start barrier


def run_workers(target, cfg: dict[str, Any], n: int, mode: str, meter: CpuMeter) -> tuple[list[dict], dict]:
    """Start n workers, release them together, collect one result each; returns (results, cpu)."""
    limit = cfg["duration"] + 120  # generous: a stuck worker cannot hang the benchmark
    cfg = {**cfg, "in_thread": mode == "threads"}  # CPU per thread (RUSAGE_THREAD), not per process
    if mode == "processes":
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        barrier, out, release = ctx.Barrier(n + 1), ctx.Queue(), ctx.Event()
        workers = [ctx.Process(target=target, args=(cfg, i, barrier, out, release), daemon=True)
                   for i in range(n)]  # fmt: skip
    else:
        barrier, out, release = threading.Barrier(n + 1), queue.Queue(), threading.Event()
        workers = [threading.Thread(target=target, args=(cfg, i, barrier, out, release), daemon=True)
                   for i in range(n)]  # fmt: skip
    for w in workers:
        w.start()
    results: list[dict] = []
    cpu: dict = {}
    try:
        barrier.wait(timeout=300)
        meter.start()
        children0 = os.times()
        deadline = time.monotonic() + limit
        while len(results) < n and time.monotonic() < deadline:
            try:
                results.append(out.get(timeout=1.0))
            except queue.Empty:
                if mode == "processes" and not any(w.is_alive() for w in workers) and out.empty():
                    break
        cpu = meter.stop()
        children1 = os.times()
        if mode == "processes":
            cpu["bench_process_cpu_s"] = None  # the pilots report their own CPU
        cpu["children_cpu_s"] = (children1.children_user + children1.children_system
                                 - children0.children_user - children0.children_system)  # fmt: skip
    except threading.BrokenBarrierError:
        pass
    finally:
        release.set()
        for w in workers:
            w.join(timeout=10)
            if mode == "processes" and w.is_alive():
                w.terminate()  # our own child, by its handle
                w.join(timeout=5)
    return results, cpu


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))]


def summarise_pilots(results: list[dict], n: int) -> dict[str, Any]:
    starts = [r["start"] for r in results if r["start"] is not None]
    ends = [r["end"] for r in results if r["end"] is not None]
    wall = (max(ends) - min(starts)) if starts and ends else 0.0
    lifecycles = sum(r["lifecycles"] for r in results)
    getjob = sum(r["getjob_calls"] for r in results)
    updates = sum(r["update_calls"] for r in results)
    lat: dict[str, dict[str, float | int | None]] = {}
    all_updates: list[float] = []
    for c in CALLS:
        values = [x for r in results for x in r["lat"][c]]
        if c != "getJob":
            all_updates += values
        lat[c] = {"n": len(values), **{f"p{q}": _ms(_pct(values, q)) for q in (50, 95, 99)},
                  "max": _ms(max(values) if values else None)}  # fmt: skip
    lat["updateJob"] = {"n": len(all_updates), **{f"p{q}": _ms(_pct(all_updates, q)) for q in (50, 95, 99)},
                        "max": _ms(max(all_updates) if all_updates else None)}  # fmt: skip
    return {
        "pilots": n, "pilots_reporting": len(results), "wall_s": round(wall, 3), "lifecycles": lifecycles,
        "lifecycles_per_s": round(lifecycles / wall, 1) if wall else 0.0,
        "getjob_calls": getjob, "getjob_per_s": round(getjob / wall, 1) if wall else 0.0,
        "updatejob_calls": updates, "updatejob_per_s": round(updates / wall, 1) if wall else 0.0,
        "requests_per_s": round((getjob + updates) / wall, 1) if wall else 0.0,
        "warmup_lifecycles": sum(r["warmup"] for r in results),
        "errors": sum(r["errors"] for r in results) + (n - len(results)),
        "error_samples": [s for r in results for s in r["error_samples"]][:10],
        "latency_ms": lat, "pilot_cpu_s": round(sum(r["cpu"] for r in results), 2),
    }  # fmt: skip


def summarise_raw(results: list[dict], n: int) -> dict[str, Any]:
    starts = [r["start"] for r in results if r["start"] is not None]
    ends = [r["end"] for r in results if r["end"] is not None]
    wall = (max(ends) - min(starts)) if starts and ends else 0.0
    lifecycles = sum(r["lifecycles"] for r in results)
    return {"workers": n, "wall_s": round(wall, 3), "lifecycles": lifecycles,
            "lifecycles_per_s": round(lifecycles / wall, 1) if wall else 0.0,
            "commits_per_s": round(4 * lifecycles / wall, 1) if wall else 0.0,
            "errors": sum(r["errors"] for r in results) + (n - len(results)),
            "error_samples": [s for r in results for s in r["error_samples"]][:10],
            "worker_cpu_s": round(sum(r["cpu"] for r in results), 2)}  # fmt: skip


def _per_lifecycle(server: dict[str, Any], cpu: dict[str, Any], cpus: int) -> dict[str, float | None]:
    """CPU milliseconds per lifecycle by component, and the rate those costs allow on `cpus` idle CPUs.

    Load-independent (unlike the rates on a shared machine): if the server, PostgreSQL and the
    pilots had the CPUs to themselves, lifecycles/s could not exceed cpus × 1000 / total ms.
    """
    n = server["lifecycles"]
    if not n:
        return {}
    srv = None if cpu.get("server_cpu_s") is None else 1000.0 * cpu["server_cpu_s"] / n
    pg = None if cpu.get("pg_cpu_s") is None else 1000.0 * cpu["pg_cpu_s"] / n
    pilots = 1000.0 * server["pilot_cpu_s"] / n
    out: dict[str, float | None] = {"server": _r(srv), "postgres": _r(pg), "pilots": _r(pilots)}
    if srv is not None and pg is not None:
        out["ceiling_all_on_these_cpus_per_s"] = _r(cpus * 1000.0 / (srv + pg + pilots), 1)
        out["ceiling_server_and_db_only_per_s"] = _r(cpus * 1000.0 / (srv + pg), 1)
    return out


def _r(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(v, digits)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


# ---------------------------------------------------------------------------------------------
# Orchestration


@contextlib.contextmanager
def database(args, base: Path) -> Iterator[tuple[str, Path | None]]:
    """(SQLAlchemy URL, private cluster dir or None)."""
    if args.db_url:
        yield args.db_url, None
        return
    from panda_server.db import localpg

    pg = base / "pg"
    localpg.init(pg)
    try:
        url = localpg.start(pg, localpg.free_port())
        yield url, pg
    finally:
        localpg.stop(pg, mode="immediate")


def _settings_note(workers: int, threads: int, log_level: str) -> dict[str, Any]:
    from panda_server.settings import Settings

    s = Settings()
    return {"workers": workers, "threads": threads, "worker_class": "gthread", "keepalive_s": 30,
            "db_pool_size": threads, "log_level": log_level, "claim_attempts": s.claim_attempts,
            "tls": "mTLS, CERT_OPTIONAL + VERIFY_ALLOW_PROXY_CERTS, RSA-2048 host key, keep-alive"}  # fmt: skip


def run(args) -> dict[str, Any]:
    import sqlalchemy as sa

    from panda_server import ca
    from panda_server.settings import Settings
    from tests.support.server import running_server

    defaults = Settings()
    workers = args.workers or defaults.workers
    threads = args.threads or defaults.threads
    log_level = args.log_level or defaults.log_level
    tag = uuid.uuid4().hex[:8]
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "host": platform.node(),
        "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
        "params": {"pilots": args.pilots, "jobs": args.jobs, "duration_cap_s": args.duration,
                   "client_mode": args.client_mode, "http_lib": args.http_lib, "raw_mode": args.raw_mode,
                   "warmup_per_pilot": args.warmup, "site": args.site,
                   "db": "external (--db-url)" if args.db_url else "private PostgreSQL (fsync=off, synchronous_commit=off)"},
        "server_settings": _settings_note(workers, threads, log_level),
    }  # fmt: skip
    base = Path(tempfile.mkdtemp(prefix="pandabench-", dir="/tmp"))
    base.chmod(0o755)
    ids: list[int] = []
    engine = None
    try:
        with database(args, base) as (db_url, pg_base):
            engine = sa.create_engine(db_url, pool_size=2, max_overflow=2)
            prepare_db(engine, args.site)
            with engine.connect() as conn:
                report["postgres"] = conn.exec_driver_sql("SHOW server_version").scalar()
            pki = ca.create_pki(base / "pki")
            extra = {
                "PANDA_WORKERS": str(workers),
                "PANDA_THREADS": str(threads),
                "PANDA_LOG_LEVEL": log_level,
            }
            _say(args, f"server: {workers} gthread workers × {threads} threads, log level {log_level}")
            with running_server(base / "server", db_url=db_url, pki=pki, extra_env=extra) as srv:
                n_warm = args.pilots * args.warmup
                t0 = time.monotonic()
                ids = insert_jobs(engine, args.jobs + n_warm, args.site, tag)
                _say(args, f"inserted {len(ids)} activated jobs in {time.monotonic() - t0:.2f} s")
                vacuum(engine)
                cfg = {"host": "127.0.0.1", "port": srv.https_port, "ca_dir": str(pki.ca_dir),
                       "proxy": str(pki.pilot_proxy), "site": args.site, "duration": args.duration,
                       "warmup": args.warmup, "max_lifecycles": args.jobs + n_warm + 1,
                       "http_lib": args.http_lib}  # fmt: skip
                meter = CpuMeter(srv.https_port, pg_base)
                _say(args, f"server phase: {args.pilots} pilots ({args.client_mode}, {args.http_lib})")
                report["loadavg_server_start"] = [round(x, 2) for x in os.getloadavg()]
                results, cpu = run_workers(pilot_main, cfg, args.pilots, args.client_mode, meter)
                server = summarise_pilots(results, args.pilots)
                server["cpu"] = cpu
                server["cpu_ms_per_lifecycle"] = _per_lifecycle(server, cpu, os.cpu_count() or 1)
                report["server"] = server
                report["loadavg_server_end"] = [round(x, 2) for x in os.getloadavg()]
                server["verified"] = verify(engine, ids, server["lifecycles"] + server["warmup_lifecycles"])
            leftovers = delete_jobs(engine, ids, only_activated=True)
            if leftovers:
                _say(args, f"removed the {leftovers} rows of jobs the pilots did not reach")
            # Raw-SQL baseline on a fresh set of jobs, with the server stopped
            raw_ids = insert_jobs(engine, args.jobs, args.site, tag + "r")
            ids += raw_ids
            vacuum(engine)
            import sqlalchemy.engine.url as sa_url

            u = sa_url.make_url(db_url)
            conninfo = u.set(drivername="postgresql").render_as_string(hide_password=False)
            from panda_server.protocol import dispatch

            raw_cfg = {"conninfo": conninfo, "site": args.site, "duration": args.duration,
                       "max_lifecycles": args.jobs + 1, "labels": list(dispatch.eligible_labels("managed"))}  # fmt: skip
            _say(args, f"raw-SQL phase: {args.pilots} psycopg {args.raw_mode}")
            report["loadavg_raw_start"] = [round(x, 2) for x in os.getloadavg()]
            raw_results, raw_cpu = run_workers(
                raw_worker, raw_cfg, args.pilots, args.raw_mode, CpuMeter(None, pg_base)
            )
            raw = summarise_raw(raw_results, args.pilots)
            raw["cpu"] = raw_cpu
            if raw["lifecycles"] and raw_cpu.get("pg_cpu_s") is not None:
                pg_ms = 1000.0 * raw_cpu["pg_cpu_s"] / raw["lifecycles"]
                cl_ms = 1000.0 * raw["worker_cpu_s"] / raw["lifecycles"]
                raw["cpu_ms_per_lifecycle"] = {"postgres": _r(pg_ms), "psycopg_workers": _r(cl_ms),
                                               "ceiling_all_on_these_cpus_per_s": _r((os.cpu_count() or 1) * 1000.0 / (pg_ms + cl_ms), 1)}  # fmt: skip
            report["raw_sql"] = raw
            report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
            if raw["lifecycles_per_s"]:
                report["ratio_server_over_raw"] = round(
                    server["lifecycles_per_s"] / raw["lifecycles_per_s"], 4
                )
            if args.db_url and not args.keep_jobs:
                delete_jobs(engine, ids)
            engine.dispose()
            engine = None
    finally:
        if engine is not None:
            engine.dispose()
        if args.keep_dir:
            report["workdir"] = str(base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    return report


def _say(args, text: str) -> None:
    if not args.quiet:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def print_table(r: dict[str, Any]) -> None:
    s, raw, p, ss = r["server"], r["raw_sql"], r["params"], r["server_settings"]
    cpu = s["cpu"]
    n = max(s["lifecycles"], 1)
    print(f"\nPanDA-WMS dispatch benchmark — {r['date']} on {r['host']}")
    print(
        f"CPUs: {r['cpu_count']} (usable {r['cpus_usable']}); load average before {r['loadavg_before']}, "
        f"server phase start {r['loadavg_server_start']} end {r['loadavg_server_end']}, after {r['loadavg_after']}"
    )
    print(f"PostgreSQL {r.get('postgres')}: {p['db']}")
    print(
        f"server: {ss['workers']} gthread workers × {ss['threads']} threads, DB pool {ss['db_pool_size']}/worker, "
        f"log level {ss['log_level']}; {ss['tls']}"
    )
    print(
        f"pilots: {p['pilots']} {p['client_mode']} ({p['http_lib']}), {p['jobs']} jobs, cap {p['duration_cap_s']} s, "
        f"{p['warmup_per_pilot']} untimed warm-up lifecycles per pilot\n"
    )
    rows = [
        (
            "full lifecycles/s (server, mTLS)",
            _f(s["lifecycles_per_s"]),
            f"{s['lifecycles']} in {s['wall_s']:.2f} s",
        ),
        ("getJob/s", _f(s["getjob_per_s"]), f"{s['getjob_calls']} calls"),
        ("updateJob/s", _f(s["updatejob_per_s"]), f"{s['updatejob_calls']} calls"),
        ("requests/s", _f(s["requests_per_s"]), ""),
        (
            "raw-SQL lifecycles/s (4 commits)",
            _f(raw["lifecycles_per_s"]),
            f"{raw['lifecycles']} in {raw['wall_s']:.2f} s, {p['pilots']} psycopg {p['raw_mode']}",
        ),
        (
            "ratio server / raw SQL",
            f"{100 * r.get('ratio_server_over_raw', 0):.1f} %",
            "target ≥ 10 % and ≥ 300/s",
        ),
        ("errors (server / raw)", f"{s['errors']} / {raw['errors']}", ""),
    ]
    w = max(len(a) for a, _, _ in rows)
    for a, b, c in rows:
        print(f"  {a:<{w}}  {b:>10}  {c}")
    print(f"\n  {'latency (ms)':<22} {'n':>5} {'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    for c in (*CALLS, "updateJob"):
        lat = s["latency_ms"][c]
        label = c if c in ("getJob", "updateJob") else f"  updateJob {c}"
        print(
            f"  {label:<22} {lat['n']:>5} {_f(lat['p50'], 2):>8}{_f(lat['p95'], 2):>8}{_f(lat['p99'], 2):>8}"
            f"{_f(lat['max'], 2):>8}"
        )
    print("\n  CPU during the server phase (seconds; ms per lifecycle)")
    for label, key in (
        ("gunicorn https (master+workers)", "server_cpu_s"),
        ("postgres (all processes)", "pg_cpu_s"),
    ):
        v = cpu.get(key)
        print(f"    {label:<32} {_f(v, 2):>8}  {_f(None if v is None else 1000 * v / n, 2):>7}")
    pv = s["pilot_cpu_s"]
    print(f"    {'pilots (load generator)':<32} {_f(pv, 2):>8}  {_f(1000 * pv / n, 2):>7}")
    print(
        f"    machine busy: {_f(cpu.get('machine_busy_pct'))} % of {r['cpu_count']} CPUs (other users included)"
    )
    per = s.get("cpu_ms_per_lifecycle") or {}
    if per.get("ceiling_all_on_these_cpus_per_s"):
        print(
            f"    CPU-bound ceiling on {r['cpu_count']} idle CPUs: {per['ceiling_all_on_these_cpus_per_s']:.0f} lifecycles/s "
            f"with the pilots on the same CPUs, {per['ceiling_server_and_db_only_per_s']:.0f}/s without them"
        )
    rc = raw["cpu"]
    m = max(raw["lifecycles"], 1)
    print(
        f"  CPU during the raw-SQL phase: postgres {_f(rc.get('pg_cpu_s'), 2)} s "
        f"({_f(None if rc.get('pg_cpu_s') is None else 1000 * rc['pg_cpu_s'] / m, 2)} ms/lifecycle), "
        f"psycopg workers {_f(raw['worker_cpu_s'], 2)} s, machine busy {_f(rc.get('machine_busy_pct'))} %"
    )
    rper = raw.get("cpu_ms_per_lifecycle") or {}
    if rper.get("ceiling_all_on_these_cpus_per_s"):
        print(
            f"    raw-SQL CPU-bound ceiling on {r['cpu_count']} idle CPUs: {rper['ceiling_all_on_these_cpus_per_s']:.0f} lifecycles/s "
            f"(postgres {rper['postgres']} + psycopg {rper['psycopg_workers']} ms per lifecycle)"
        )
    v = s.get("verified") or {}
    print(
        f"  check: {v.get('holding')} jobs in holding and {v.get('reports')} output reports for "
        f"{v.get('expected')} completed lifecycles (incl. warm-up): {'OK' if v.get('ok') else 'MISMATCH'} "
        f"{'' if v.get('ok') else v.get('job_states')}"
    )
    for e in s["error_samples"] + raw["error_samples"]:
        print(f"  error: {e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pilots", type=int, default=8, help="simulated pilots (and raw-SQL workers); default 8")
    ap.add_argument("--jobs", type=int, default=2000, help="activated jobs per phase; default 2000")
    ap.add_argument("--duration", type=float, default=60.0, help="cap per phase in seconds; default 60")
    ap.add_argument("--db-url", help="use this existing database (SQLAlchemy URL) instead of a private "
                                     "PostgreSQL; the benchmark's jobs are deleted afterwards")  # fmt: skip
    ap.add_argument("--workers", type=int, help="gunicorn workers (default: Settings.workers)")
    ap.add_argument("--threads", type=int, help="threads per worker (default: Settings.threads)")
    ap.add_argument("--log-level", help="server log level (default: Settings.log_level)")
    ap.add_argument(
        "--site", default="CLOUDA_T1", help="PanDA site the jobs and pilots use; default CLOUDA_T1"
    )
    ap.add_argument("--client-mode", choices=("processes", "threads"), default="processes",
                    help="run pilots as processes (default; no shared GIL) or threads")  # fmt: skip
    ap.add_argument("--http-lib", choices=("http", "requests"), default="http",
                    help="pilot HTTP client: http.client (default, light) or requests.Session")  # fmt: skip
    ap.add_argument("--raw-mode", choices=("threads", "processes"), default="threads",
                    help="raw-SQL workers as threads (default) or processes")  # fmt: skip
    ap.add_argument("--warmup", type=int, default=2, help="untimed lifecycles per pilot first; default 2")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--keep-dir", action="store_true", help="keep the temp dir (server logs) for inspection")
    ap.add_argument("--keep-jobs", action="store_true", help="with --db-url: leave the benchmark's jobs")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)
    if not 1 <= args.pilots <= 256:
        ap.error("--pilots must be between 1 and 256")
    if not 1 <= args.jobs <= 1_000_000:
        ap.error("--jobs must be between 1 and 1000000")
    if not 1 <= args.duration <= 3600:
        ap.error("--duration must be between 1 and 3600 seconds")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    bad = report["server"]["errors"] or report["raw_sql"]["errors"] or not report["server"]["verified"]["ok"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
