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
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The parts live in benchmarks/dispatchlib/ (this script's folder is on sys.path). Their heavy
# imports (sqlalchemy, the server packages) happen inside functions, so that spawned pilot
# processes, which re-import this module, start fast and stay small.
from dispatchlib import measure, pilots, rawsql, report, setup
from dispatchlib.common import ROOT
from dispatchlib.workers import run_workers

if str(ROOT) not in sys.path:  # for panda_server, schedconfig and tests.support
    sys.path.insert(0, str(ROOT))


@dataclass
class Bench:
    """What the phases of one run share."""

    args: argparse.Namespace
    engine: Any
    db_url: str
    pg_base: Path | None
    base: Path
    report: dict[str, Any]
    tag: str


def _say(args, text: str) -> None:
    if not args.quiet:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _report_head(args, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "host": platform.node(),
        "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_before": measure.loadavg(), "python": platform.python_version(),
        "params": {"pilots": args.pilots, "jobs": args.jobs, "duration_cap_s": args.duration,
                   "client_mode": args.client_mode, "http_lib": args.http_lib, "raw_mode": args.raw_mode,
                   "warmup_per_pilot": args.warmup, "site": args.site,
                   "db": "external (--db-url)" if args.db_url else "private PostgreSQL (fsync=off, synchronous_commit=off)"},
        "server_settings": settings,
    }  # fmt: skip


def _server_phase(b: Bench) -> list[int]:
    """The pilots against the real server; returns the ids of the jobs inserted for it."""
    from panda_server import ca
    from tests.support.server import running_server

    args, ss = b.args, b.report["server_settings"]
    pki = ca.create_pki(b.base / "pki")
    os.environ["PANDA_PKI_DIR"] = str(pki.root)  # setup.insert_jobs signs the jobs with its key
    extra = {"PANDA_WORKERS": str(ss["workers"]), "PANDA_THREADS": str(ss["threads"]),
             "PANDA_LOG_LEVEL": ss["log_level"]}  # fmt: skip
    _say(
        args,
        f"server: {ss['workers']} gthread workers × {ss['threads']} threads, log level {ss['log_level']}",
    )
    with running_server(b.base / "server", db_url=b.db_url, pki=pki, extra_env=extra) as srv:
        n_warm = args.pilots * args.warmup
        t0 = time.monotonic()
        ids = setup.insert_jobs(b.engine, args.jobs + n_warm, args.site, b.tag)
        _say(args, f"inserted {len(ids)} activated jobs in {time.monotonic() - t0:.2f} s")
        setup.vacuum(b.engine)
        cfg = pilots.pilot_config(args, srv.https_port, pki, n_warm)
        meter = measure.CpuMeter(srv.https_port, b.pg_base)
        _say(args, f"server phase: {args.pilots} pilots ({args.client_mode}, {args.http_lib})")
        b.report["loadavg_server_start"] = measure.loadavg()
        results, cpu = run_workers(pilots.pilot_main, cfg, args.pilots, args.client_mode, meter)
        server = measure.summarise_pilots(results, args.pilots)
        server["cpu"] = cpu
        server["cpu_ms_per_lifecycle"] = measure.server_cpu_per_lifecycle(server, cpu, os.cpu_count() or 1)
        b.report["server"] = server
        b.report["loadavg_server_end"] = measure.loadavg()
        server["verified"] = setup.verify(b.engine, ids, server["lifecycles"] + server["warmup_lifecycles"])
    return ids


def _raw_phase(b: Bench) -> list[int]:
    """The raw-SQL baseline on a fresh set of jobs, with the server stopped; returns their ids."""
    args = b.args
    raw_ids = setup.insert_jobs(b.engine, args.jobs, args.site, b.tag + "r")
    setup.vacuum(b.engine)
    cfg = rawsql.raw_config(b.db_url, args.site, args.duration, args.jobs)
    _say(args, f"raw-SQL phase: {args.pilots} psycopg {args.raw_mode}")
    b.report["loadavg_raw_start"] = measure.loadavg()
    results, cpu = run_workers(
        rawsql.raw_worker, cfg, args.pilots, args.raw_mode, measure.CpuMeter(None, b.pg_base)
    )
    raw = measure.summarise_raw(results, args.pilots)
    raw["cpu"] = cpu
    per = measure.raw_cpu_per_lifecycle(raw, cpu, os.cpu_count() or 1)
    if per is not None:
        raw["cpu_ms_per_lifecycle"] = per
    b.report["raw_sql"] = raw
    b.report["loadavg_after"] = measure.loadavg()
    return raw_ids


def _phases(b: Bench) -> None:
    """Both phases, then the ratio; cleans up after itself on an external database."""
    setup.prepare_db(b.engine, b.args.site)
    with b.engine.connect() as conn:
        b.report["postgres"] = conn.exec_driver_sql("SHOW server_version").scalar()
    ids = _server_phase(b)
    leftovers = setup.delete_jobs(b.engine, ids, only_activated=True)
    if leftovers:
        _say(b.args, f"removed the {leftovers} rows of jobs the pilots did not reach")
    ids += _raw_phase(b)
    server, raw = b.report["server"], b.report["raw_sql"]
    if raw["lifecycles_per_s"]:
        b.report["ratio_server_over_raw"] = round(server["lifecycles_per_s"] / raw["lifecycles_per_s"], 4)
    if b.args.db_url and not b.args.keep_jobs:
        setup.delete_jobs(b.engine, ids)


def run(args) -> dict[str, Any]:
    """Set up, run both phases, stop everything; returns the report."""
    import sqlalchemy as sa

    report_ = _report_head(args, setup.server_settings(args))
    base = Path(tempfile.mkdtemp(prefix="pandabench-", dir="/tmp"))
    base.chmod(0o755)
    engine = None
    try:
        with setup.database(args.db_url, base) as (db_url, pg_base):
            engine = sa.create_engine(db_url, pool_size=2, max_overflow=2)
            _phases(Bench(args, engine, db_url, pg_base, base, report_, uuid.uuid4().hex[:8]))
            engine.dispose()
            engine = None
    finally:
        if engine is not None:
            engine.dispose()
        if args.keep_dir:
            report_["workdir"] = str(base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    return report_


def _parser() -> argparse.ArgumentParser:
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
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if not 1 <= args.pilots <= 256:
        ap.error("--pilots must be between 1 and 256")
    if not 1 <= args.jobs <= 1_000_000:
        ap.error("--jobs must be between 1 and 1000000")
    if not 1 <= args.duration <= 3600:
        ap.error("--duration must be between 1 and 3600 seconds")
    result = run(args)
    report.print_report(result, args.json)
    bad = result["server"]["errors"] or result["raw_sql"]["errors"] or not result["server"]["verified"]["ok"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
