#!/usr/bin/env python3
"""AutoPilot: how fast pilots get into a batch system and out again, and what deciding costs.

1. The decision (`autopilot.policy.decide` + `capped`) over `--queues` random queue views, pure.
2. Submission through the real submitters: `--pilots` pilots whose executable exits at once,
   put in by the `local` submitter (fork; the baseline) and by the `slurm` submitter into a
   private single-node Slurm started here (scripts/localslurm.py; skipped when Slurm is not
   installed). For each: submit time per pilot, and the time from submission until the
   batch system reports the pilot done (status polled every 0.1 s), as percentiles; and the
   ratio Slurm / local.

    .venv/bin/python benchmarks/autopilot.py
    .venv/bin/python benchmarks/autopilot.py --pilots 40 --json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autopilot.policy import QueueView, capped, decide  # noqa: E402
from autopilot.submitters.base import BatchState, PilotBatch  # noqa: E402
from autopilot.submitters.local import LocalSubmitter  # noqa: E402
from autopilot.submitters.slurm import SlurmSubmitter  # noqa: E402
from schedconfig.model import QueueSpec  # noqa: E402
from scripts import localslurm  # noqa: E402

STATUSES = ("online", "online", "online", "brokeroff", "test", "offline")


def decisions(n: int, rng: random.Random) -> dict:
    views = [QueueView(queue_status=rng.choice(STATUSES), cloud_status=rng.choice(("online",) * 9 + ("offline",)),
                       nqueue=rng.randint(0, 10), depthboost=rng.randint(0, 4), idlepilotsuppression=rng.randint(0, 6),
                       pilotlimit=rng.choice((0, 0, 5, 50)), transferringlimit=rng.choice((0, 100)),
                       activated=rng.choice((0, rng.randint(1, 5000))), transferring=rng.randint(0, 200),
                       inactive=rng.randint(0, 30), active=rng.randint(0, 300), cycle=rng.randint(0, 100))
             for _ in range(n)]  # fmt: skip
    t0 = time.perf_counter()
    total = sum(capped(decide(v), v, max_per_cycle=10, factory_room=None).n for v in views)
    elapsed = time.perf_counter() - t0
    return {
        "queues": n,
        "seconds": round(elapsed, 4),
        "per_second": round(n / elapsed),
        "pilots_decided": total,
    }


def batch(base: Path, queue: QueueSpec, n: int, name: str) -> PilotBatch:
    exe = base / "exit0.sh"
    exe.write_text("#!/bin/bash\nexit 0\n")
    exe.chmod(0o755)
    return PilotBatch(queue=queue, name=name, count=n, log_dir=base / "logs" / name, log_url="http://x/y",
                      executable=exe, arguments=(), environment={"PANDA_JSID": "bench"}, proxy=base / "none")  # fmt: skip


def run(submitter, b: PilotBatch, seconds: float = 300) -> dict:
    submitted_at, ids = [], []
    t0 = time.perf_counter()
    for i in range(b.count):  # one at a time, so each submission is timed
        one = PilotBatch(**{**b.__dict__, "name": f"{b.name}-{i}", "count": 1})
        ids += submitter.submit(one)
        submitted_at.append(time.perf_counter())
    submit_seconds = time.perf_counter() - t0
    done_at: dict[str, float] = {}
    deadline = time.monotonic() + seconds
    while len(done_at) < len(ids) and time.monotonic() < deadline:
        for batch_id, st in submitter.status([i for i in ids if i not in done_at]).items():
            if st.state in (BatchState.done, BatchState.failed):
                done_at[batch_id] = time.perf_counter()
        time.sleep(0.1)
    latencies = sorted(done_at[i] - submitted_at[k] for k, i in enumerate(ids) if i in done_at)
    return {"pilots": len(ids), "submit_ms_per_pilot": round(1000 * submit_seconds / len(ids), 2),
            "done": len(latencies), "to_done_p50_s": round(_pct(latencies, 50), 3),
            "to_done_p90_s": round(_pct(latencies, 90), 3), "to_done_max_s": round(latencies[-1], 3)}  # fmt: skip


def _pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queues", type=int, default=100_000)
    parser.add_argument("--pilots", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (1 <= args.pilots <= 500 and 1 <= args.queues <= 10_000_000):
        parser.error("--pilots 1..500, --queues 1..10,000,000")
    out = {"decide": decisions(args.queues, random.Random(7))}
    base = Path(tempfile.mkdtemp(prefix="apbench-", dir="/tmp"))
    base.chmod(0o755)
    try:
        out["local"] = run(
            LocalSubmitter(), batch(base, QueueSpec(nickname="BENCH", cloud="C"), args.pilots, "local")
        )
        if localslurm.installed():
            slurm = localslurm.start(base / "slurm", cpus=4)
            try:
                queue = QueueSpec(nickname="BENCH", cloud="C", system="slurm", queue="debug")
                out["slurm"] = run(SlurmSubmitter(env=slurm.env), batch(base, queue, args.pilots, "slurm"))
            finally:
                slurm.stop()
            out["slurm_over_local_p50"] = round(
                out["slurm"]["to_done_p50_s"] / out["local"]["to_done_p50_s"], 1
            )
        else:
            out["slurm"] = "skipped: Slurm is not installed"
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        d = out["decide"]
        print(f"decide: {d['queues']} queue views in {d['seconds']} s ({d['per_second']:,}/s)")
        for name in ("local", "slurm"):
            r = out[name]
            if isinstance(r, str):
                print(f"{name}: {r}")
                continue
            print(f"{name:6} {r['pilots']} pilots: submit {r['submit_ms_per_pilot']} ms/pilot; submitted → done "
                  f"p50 {r['to_done_p50_s']} s, p90 {r['to_done_p90_s']} s, max {r['to_done_max_s']} s")  # fmt: skip
        if "slurm_over_local_p50" in out:
            print(f"slurm / local, median time to done: {out['slurm_over_local_p50']}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
