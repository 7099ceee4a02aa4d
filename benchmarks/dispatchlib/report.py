"""The report: a table for people (print_table) or JSON (print_report with as_json)."""

from __future__ import annotations

import json
from typing import Any

from .common import CALLS
from .measure import ms_per


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _header(r: dict[str, Any]) -> None:
    p, ss = r["params"], r["server_settings"]
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


def _rates(r: dict[str, Any]) -> None:
    s, raw, p = r["server"], r["raw_sql"], r["params"]
    rows = [
        ("full lifecycles/s (server, mTLS)", _f(s["lifecycles_per_s"]), f"{s['lifecycles']} in {s['wall_s']:.2f} s"),
        ("getJob/s", _f(s["getjob_per_s"]), f"{s['getjob_calls']} calls"),
        ("updateJob/s", _f(s["updatejob_per_s"]), f"{s['updatejob_calls']} calls"),
        ("requests/s", _f(s["requests_per_s"]), ""),
        ("raw-SQL lifecycles/s (4 commits)", _f(raw["lifecycles_per_s"]),
         f"{raw['lifecycles']} in {raw['wall_s']:.2f} s, {p['pilots']} psycopg {p['raw_mode']}"),
        ("ratio server / raw SQL", f"{100 * r.get('ratio_server_over_raw', 0):.1f} %", "target ≥ 10 % and ≥ 300/s"),
        ("errors (server / raw)", f"{s['errors']} / {raw['errors']}", ""),
    ]  # fmt: skip
    w = max(len(a) for a, _, _ in rows)
    for a, b, c in rows:
        print(f"  {a:<{w}}  {b:>10}  {c}")


def _latencies(s: dict[str, Any]) -> None:
    print(f"\n  {'latency (ms)':<22} {'n':>5} {'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    for c in (*CALLS, "updateJob"):
        lat = s["latency_ms"][c]
        label = c if c in ("getJob", "updateJob") else f"  updateJob {c}"
        figures = "".join(f"{_f(lat[k], 2):>8}" for k in ("p50", "p95", "p99", "max"))
        print(f"  {label:<22} {lat['n']:>5} {figures}")


def _ceiling(prefix: str, cpus: int, ceiling: float | None, tail: str) -> None:
    """The CPU-bound ceiling line, where the CPU costs were measured."""
    if ceiling:
        print(f"    {prefix}CPU-bound ceiling on {cpus} idle CPUs: {ceiling:.0f} lifecycles/s {tail}")


def _server_cpu(r: dict[str, Any]) -> None:
    s = r["server"]
    cpu, n = s["cpu"], max(s["lifecycles"], 1)
    print("\n  CPU during the server phase (seconds; ms per lifecycle)")
    for label, v in (
        ("gunicorn https (master+workers)", cpu.get("server_cpu_s")),
        ("postgres (all processes)", cpu.get("pg_cpu_s")),
        ("pilots (load generator)", s["pilot_cpu_s"]),
    ):
        print(f"    {label:<32} {_f(v, 2):>8}  {_f(ms_per(v, n), 2):>7}")
    print(
        f"    machine busy: {_f(cpu.get('machine_busy_pct'))} % of {r['cpu_count']} CPUs (other users included)"
    )
    per = s.get("cpu_ms_per_lifecycle") or {}
    _ceiling("", r["cpu_count"], per.get("ceiling_all_on_these_cpus_per_s"),
             f"with the pilots on the same CPUs, {per.get('ceiling_server_and_db_only_per_s', 0):.0f}/s without them")  # fmt: skip


def _raw_cpu(r: dict[str, Any]) -> None:
    raw = r["raw_sql"]
    rc, m = raw["cpu"], max(raw["lifecycles"], 1)
    print(
        f"  CPU during the raw-SQL phase: postgres {_f(rc.get('pg_cpu_s'), 2)} s "
        f"({_f(ms_per(rc.get('pg_cpu_s'), m), 2)} ms/lifecycle), "
        f"psycopg workers {_f(raw['worker_cpu_s'], 2)} s, machine busy {_f(rc.get('machine_busy_pct'))} %"
    )
    rper = raw.get("cpu_ms_per_lifecycle") or {}
    _ceiling("raw-SQL ", r["cpu_count"], rper.get("ceiling_all_on_these_cpus_per_s"),
             f"(postgres {rper.get('postgres')} + psycopg {rper.get('psycopg_workers')} ms per lifecycle)")  # fmt: skip


def _check(r: dict[str, Any]) -> None:
    v = r["server"].get("verified") or {}
    print(
        f"  check: {v.get('holding')} jobs in holding and {v.get('reports')} output reports for "
        f"{v.get('expected')} completed lifecycles (incl. warm-up): {'OK' if v.get('ok') else 'MISMATCH'} "
        f"{'' if v.get('ok') else v.get('job_states')}"
    )
    for e in r["server"]["error_samples"] + r["raw_sql"]["error_samples"]:
        print(f"  error: {e}")


def print_table(r: dict[str, Any]) -> None:
    _header(r)
    _rates(r)
    _latencies(r["server"])
    _server_cpu(r)
    _raw_cpu(r)
    _check(r)


def print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
