"""CPU accounting from /proc (Linux), percentiles, and the summary of each phase."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .common import CALLS

_TICK = os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _proc_cpu(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
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
            ppid = int(_stat_fields(pid)[1])
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
# Summaries


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))]


def _r(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(v, digits)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 2)


def ms_per(seconds: float | None, n: int) -> float | None:
    """CPU milliseconds per lifecycle, or None where the CPU was not measured."""
    return None if seconds is None else 1000.0 * seconds / n


def _rate(count: int, wall: float) -> float:
    return round(count / wall, 1) if wall else 0.0


def _latency(values: list[float]) -> dict[str, float | int | None]:
    """n, p50, p95, p99 and max in milliseconds."""
    return {"n": len(values), **{f"p{q}": _ms(_pct(values, q)) for q in (50, 95, 99)},
            "max": _ms(max(values) if values else None)}  # fmt: skip


def _totals(results: list[dict], n: int) -> dict[str, Any]:
    """What both phases sum over their workers; a worker that did not report counts as an error."""
    starts = [r["start"] for r in results if r["start"] is not None]
    ends = [r["end"] for r in results if r["end"] is not None]
    return {"wall": (max(ends) - min(starts)) if starts and ends else 0.0,
            "lifecycles": sum(r["lifecycles"] for r in results),
            "errors": sum(r["errors"] for r in results) + (n - len(results)),
            "error_samples": [s for r in results for s in r["error_samples"]][:10],
            "cpu": round(sum(r["cpu"] for r in results), 2)}  # fmt: skip


def summarise_pilots(results: list[dict], n: int) -> dict[str, Any]:
    t = _totals(results, n)
    wall = t["wall"]
    getjob = sum(r["getjob_calls"] for r in results)
    updates = sum(r["update_calls"] for r in results)
    per_call = {c: [x for r in results for x in r["lat"][c]] for c in CALLS}
    lat = {c: _latency(values) for c, values in per_call.items()}
    lat["updateJob"] = _latency([x for c in CALLS[1:] for x in per_call[c]])
    return {
        "pilots": n, "pilots_reporting": len(results), "wall_s": round(wall, 3), "lifecycles": t["lifecycles"],
        "lifecycles_per_s": _rate(t["lifecycles"], wall),
        "getjob_calls": getjob, "getjob_per_s": _rate(getjob, wall),
        "updatejob_calls": updates, "updatejob_per_s": _rate(updates, wall),
        "requests_per_s": _rate(getjob + updates, wall),
        "warmup_lifecycles": sum(r["warmup"] for r in results),
        "errors": t["errors"], "error_samples": t["error_samples"],
        "latency_ms": lat, "pilot_cpu_s": t["cpu"],
    }  # fmt: skip


def summarise_raw(results: list[dict], n: int) -> dict[str, Any]:
    t = _totals(results, n)
    return {"workers": n, "wall_s": round(t["wall"], 3), "lifecycles": t["lifecycles"],
            "lifecycles_per_s": _rate(t["lifecycles"], t["wall"]),
            "commits_per_s": _rate(4 * t["lifecycles"], t["wall"]),
            "errors": t["errors"], "error_samples": t["error_samples"],
            "worker_cpu_s": t["cpu"]}  # fmt: skip


def _ceiling(cpus: int, *ms: float) -> float | None:
    """The lifecycles/s that these CPU costs (ms per lifecycle) allow on `cpus` otherwise idle CPUs."""
    return _r(cpus * 1000.0 / sum(ms), 1)


def server_cpu_per_lifecycle(
    server: dict[str, Any], cpu: dict[str, Any], cpus: int
) -> dict[str, float | None]:
    """CPU milliseconds per lifecycle by component, and the rate those costs allow on `cpus` idle CPUs.

    Load-independent (unlike the rates on a shared machine): if the server, PostgreSQL and the
    pilots had the CPUs to themselves, lifecycles/s could not exceed cpus × 1000 / total ms.
    """
    n = server["lifecycles"]
    if not n:
        return {}
    srv, pg = ms_per(cpu.get("server_cpu_s"), n), ms_per(cpu.get("pg_cpu_s"), n)
    pilots = ms_per(server["pilot_cpu_s"], n)
    out: dict[str, float | None] = {"server": _r(srv), "postgres": _r(pg), "pilots": _r(pilots)}
    if srv is not None and pg is not None:
        out["ceiling_all_on_these_cpus_per_s"] = _ceiling(cpus, srv, pg, pilots)
        out["ceiling_server_and_db_only_per_s"] = _ceiling(cpus, srv, pg)
    return out


def raw_cpu_per_lifecycle(
    raw: dict[str, Any], cpu: dict[str, Any], cpus: int
) -> dict[str, float | None] | None:
    """The same for the raw-SQL phase (postgres and the psycopg workers); None without the postgres CPU."""
    n = raw["lifecycles"]
    if not n or cpu.get("pg_cpu_s") is None:
        return None
    pg_ms, cl_ms = ms_per(cpu["pg_cpu_s"], n), ms_per(raw["worker_cpu_s"], n)
    return {"postgres": _r(pg_ms), "psycopg_workers": _r(cl_ms),
            "ceiling_all_on_these_cpus_per_s": _ceiling(cpus, pg_ms, cl_ms)}  # fmt: skip
