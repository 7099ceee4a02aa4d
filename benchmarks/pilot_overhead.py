#!/usr/bin/env python3
"""Pilot overhead: what our pilot itself costs per job, with a trivial payload (`true`).

Against a real server (private PostgreSQL, gunicorn with mTLS), each job has a log file (the
tarball is made and stored: part of the pilot's work) on a directory storage element.
  * one-shot: one pilot process per job (start, queuedata, getJob, wrapper, heartbeats, stage-out,
    final update, cleanup) — the wall time of the pilot process minus the payload's own time;
  * multi-job: one pilot with --max-jobs N — the per-job cost once the pilot runs;
  * peak RSS of the pilot and of its job wrapper (VmHWM, which each logs at exit; ru_maxrss
    would carry this script's own size over fork+exec) and the CPU seconds of the tree;
  * baseline in the same run: starting `python -c pass` (the interpreter start every pilot and
    wrapper pays twice).

    .venv/bin/python benchmarks/pilot_overhead.py --jobs 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
QUEUE = "CLOUDA_T1"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_measured(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, float, str]:
    """(wall s, peak RSS kB of pilot or wrapper, CPU s of the process tree, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - run_measured.cpu_seen
    run_measured.cpu_seen += cpu
    peaks = [int(x) for x in re.findall(r"peak RSS (\d+) kB", err.decode())]
    return wall, max(peaks, default=0), cpu, out.decode()


run_measured.cpu_seen = 0.0


def payload_seconds(stdout: str) -> list[float]:
    return [float(x) for x in re.findall(r" payload=([0-9.]+)s", stdout)]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20, help="jobs per mode")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    from dispatchlib import setup

    from panda_server import ca
    from panda_server.db.engine import make_engine
    from tests.support import pilots
    from tests.support.server import running_server

    base = Path(tempfile.mkdtemp(prefix="pilotbench-", dir="/tmp"))
    report: dict = {"jobs": args.jobs, "loadavg_before": os.getloadavg()}
    with setup.database(None, base) as (db_url, _pg):
        engine = make_engine(db_url)
        setup.prepare_db(engine, QUEUE)
        pki = ca.create_pki(base / "pki")
        os.environ["PANDA_PKI_DIR"] = str(pki.root)  # insert_activated signs the jobs with its key
        with running_server(base / "server", db_url=db_url, pki=pki) as server:
            env = pilots.pilot_env()
            py = [sys.executable, "-c", "pass"]
            starts = [run_measured(py, env, base)[0] for _ in range(10)]
            report["python_start_s"] = statistics.median(starts)

            walls, rss, cpu, payload = [], [], [], []
            for _ in range(args.jobs):
                pilots.insert_activated(engine, pilots.shell_job(QUEUE, "true"))
                wall, peak, cpu_s, out = run_measured(
                    pilots.pilot_argv(server, QUEUE, base / "one"), env, base
                )
                assert "finished pilotErrorCode=0" in out, out
                walls.append(wall), rss.append(peak), cpu.append(cpu_s), payload.extend(payload_seconds(out))
            over = [w - p for w, p in zip(walls, payload, strict=True)]
            report["one_shot"] = {"overhead_s_p50": statistics.median(over), "overhead_s_p95": pct(over, 0.95),
                                  "payload_s_p50": statistics.median(payload), "peak_rss_kb_max": max(rss),
                                  "cpu_s_per_job_p50": statistics.median(cpu)}  # fmt: skip

            for _ in range(args.jobs):
                pilots.insert_activated(engine, pilots.shell_job(QUEUE, "true"))
            argv = pilots.pilot_argv(server, QUEUE, base / "multi", "--max-jobs", str(args.jobs))
            wall, peak, cpu_s, out = run_measured(argv, env, base)
            done = out.count("finished pilotErrorCode=0")
            assert done == args.jobs, out
            report["multi_job"] = {"jobs": done, "wall_s": wall, "overhead_s_per_job": (wall - sum(payload_seconds(out))) / done,
                                   "peak_rss_kb": peak, "cpu_s_per_job": cpu_s / done}  # fmt: skip
        engine.dispose()
    report["loadavg_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    one, multi = report["one_shot"], report["multi_job"]
    print(
        f"pilot overhead, trivial payload, {args.jobs} jobs per mode, load {report['loadavg_before'][0]:.1f}"
    )
    print(f"  python -c pass start:      {report['python_start_s'] * 1000:.0f} ms (baseline)")
    print(f"  one pilot per job:         overhead p50 {one['overhead_s_p50']:.2f} s, p95 {one['overhead_s_p95']:.2f} s"
          f" (payload p50 {one['payload_s_p50'] * 1000:.0f} ms); CPU {one['cpu_s_per_job_p50']:.2f} s/job;"
          f" peak RSS {one['peak_rss_kb_max'] / 1024:.1f} MB")  # fmt: skip
    print(f"  one pilot, {multi['jobs']} jobs:       {multi['overhead_s_per_job']:.2f} s/job overhead; CPU"
          f" {multi['cpu_s_per_job']:.2f} s/job; peak RSS {multi['peak_rss_kb'] / 1024:.1f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
