#!/usr/bin/env python3
"""Brokerage: how fast the pure broker (`panda_server.brokerage.broker.schedule`) decides.

Everything is in memory (no DB, no server): a snapshot of `--sites` sites in `--clouds` clouds
(one T1 per cloud, the rest T2s plus one analysis site per cloud; a few offline, brokeroff or
without the release; random load and pilot counts; input replicas at the T1 and some T2s) and
`--jobs` jobs in datasets of 20–200 jobs (0–8 inputs each; 10 % analysis, brokered over the
analysis sites of every cloud; 5 % production without a cloud; 5 % pre-assigned). Each size is timed `--repeat` times; the figures are the median run.

    .venv/bin/python benchmarks/brokerage.py
    .venv/bin/python benchmarks/brokerage.py --jobs 10000 1000 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from panda_server.brokerage import broker  # noqa: E402
from panda_server.brokerage.model import (  # noqa: E402
    BrokerJob,
    CloudInfo,
    PilotStats,
    SiteInfo,
    SiteStats,
    Snapshot,
)

RELEASES = ("14.2.20", "14.2.21", "14.2.22")


def make_snapshot(rng: random.Random, n_sites: int, n_clouds: int) -> tuple[Snapshot, list[str]]:
    """Sites, clouds, load and pilots; replicas are added by make_jobs."""
    sites, clouds, stats, pilots = {}, {}, {}, {}
    per_cloud = n_sites // n_clouds
    for c in range(n_clouds):
        cloud = f"CLOUD{c}"
        clouds[cloud] = CloudInfo(cloud, f"{cloud}_T1", weight=rng.choice((0.0, 2.0, 3.0)))
        for i in range(per_cloud):
            name = (
                f"{cloud}_T1" if i == 0 else (f"ANALY_{cloud}" if i == per_cloud - 1 else f"{cloud}_T2_{i}")
            )
            status = rng.choices(("online", "offline", "brokeroff", "test"), (90, 4, 4, 2))[0]
            sites[name] = SiteInfo(
                siteid=name, cloud=cloud, tier="T1" if i == 0 else "T2",
                type="analysis" if name.startswith("ANALY_") else "production", status=status,
                ddm=f"{name}_DATADISK", releases=tuple(r for r in RELEASES if rng.random() < 0.9),
                memory=rng.choice((0, 2000, 4000)), maxinputsize=rng.choice((0, 10000)),
                space=rng.choice((0, 250, 5000)),
            )  # fmt: skip
            stats[name] = SiteStats(rng.randrange(50), rng.randrange(500), rng.randrange(1000))
            pilots[name] = PilotStats(rng.randrange(0, 300), rng.randrange(0, 3000))
    snap = Snapshot(sites=sites, clouds=clouds, stats=stats, pilots=pilots, replicas={})
    return snap, sorted(clouds)


def make_jobs(
    rng: random.Random, n_jobs: int, snap: Snapshot, clouds: list[str]
) -> tuple[list[BrokerJob], dict]:
    jobs: list[BrokerJob] = []
    replicas: dict[str, frozenset[str]] = {}
    dataset = 0
    while len(jobs) < n_jobs:
        dataset += 1
        cloud = rng.choice(clouds)
        rses = [f"{cloud}_T1_DATADISK"] + [
            s.ddm for s in snap.sites.values() if s.cloud == cloud and rng.random() < 0.3
        ]
        release = f"Atlas-{rng.choice(RELEASES)}"
        kind = rng.choices(("managed", "user", "nocloud", "preset"), (80, 10, 5, 5))[0]
        n_inputs = rng.randrange(0, 9)
        if kind == "user":  # analysis input is where an analysis site can read it
            rses.append(f"ANALY_{cloud}_DATADISK")
        for _ in range(min(rng.randrange(20, 201), n_jobs - len(jobs))):
            guids = tuple(f"ds{dataset}.{len(jobs)}.{k}" for k in range(n_inputs))
            for g in guids:
                replicas[g] = frozenset(rses)
            jobs.append(BrokerJob(
                PandaID=len(jobs) + 1, prodSourceLabel="user" if kind == "user" else "managed",
                computingSite=f"{cloud}_T1" if kind == "preset" else None,
                cloud=None if kind in ("nocloud", "user") else cloud, prodDBlock=f"mc.ds{dataset}", AtlasRelease=release,
                minRamCount=rng.choice((0, 1000, 3000)), inputs=guids,
            ))  # fmt: skip
    return jobs, replicas


def measure(n_jobs: int, n_sites: int, n_clouds: int, repeat: int, seed: int) -> dict:
    rng = random.Random(seed)
    snap, clouds = make_snapshot(rng, n_sites, n_clouds)
    jobs, replicas = make_jobs(rng, n_jobs, snap, clouds)
    snap = Snapshot(snap.sites, snap.clouds, snap.stats, snap.pilots, replicas)
    times, result = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = broker.schedule(jobs, snap)
        times.append(time.perf_counter() - t0)
    n_bunches = len({a.bunch for a in result})
    total = statistics.median(times)
    return {
        "jobs": n_jobs, "sites": len(snap.sites), "clouds": len(snap.clouds), "bunches": n_bunches,
        "repeat": repeat, "seconds_median": total, "seconds_min": min(times),
        "jobs_per_second": n_jobs / total, "ms_per_bunch": 1000 * total / n_bunches,
        "unbrokered": sum(1 for a in result if a.site is None),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[10000, 1000], help="job counts to time")
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--clouds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="runs per size (the median is reported)")
    parser.add_argument("--seed", type=int, default=2008)
    parser.add_argument("--json", action="store_true", help="print one JSON object per size")
    args = parser.parse_args(argv)
    for n in args.jobs:
        r = measure(n, args.sites, args.clouds, args.repeat, args.seed)
        if args.json:
            print(json.dumps(r))
            continue
        print(f"{r['jobs']:>6} jobs, {r['sites']} sites in {r['clouds']} clouds, {r['bunches']} bunches: "
              f"{r['seconds_median']:.3f} s median of {r['repeat']} (min {r['seconds_min']:.3f} s), "
              f"{r['jobs_per_second']:,.0f} jobs/s, {r['ms_per_bunch']:.3f} ms/bunch, "
              f"{r['unbrokered']} jobs without a site")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
