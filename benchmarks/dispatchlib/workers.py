"""N workers (threads or processes) behind a start barrier, and the timed loop each of them runs.

A worker is `target(cfg, index, barrier, out, release)`: it waits at `barrier`, puts exactly one
result dict on `out` and may hold its resources until `release` is set.
"""

from __future__ import annotations

import contextlib
import os
import queue
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

BARRIER_TIMEOUT = 300.0
COLLECT_GRACE = 120.0  # on top of the duration cap: a stuck worker cannot hang the benchmark
MAX_ERROR_SAMPLES = 5


class WorkerRun:
    """One worker's result dict, its bounded error samples, and its timed loop."""

    def __init__(self, cfg: dict[str, Any], index: int, name: str, **counters: Any) -> None:
        self.cfg = cfg
        self.prefix = f"{name} {index}"
        self.waited = False
        self.result: dict[str, Any] = {"index": index, **counters, "lifecycles": 0, "errors": 0,
                                       "error_samples": [], "start": None, "end": None, "cpu": 0.0}  # fmt: skip

    def error(self, msg: str) -> None:
        """Count an error; keep the first few messages, prefixed with the worker's name."""
        self.count_error(f"{self.prefix}: {msg}")

    def count_error(self, sample: str, *, bounded: bool = True) -> None:
        self.result["errors"] += 1
        if not bounded or len(self.result["error_samples"]) < MAX_ERROR_SAMPLES:
            self.result["error_samples"].append(sample[:300])

    def timed_loop(self, barrier: Any, step: Callable[[], bool]) -> None:
        """Wait at the barrier, then call step() until it returns False; bounded in count and in time.

        Sets start, end and cpu (this thread's or this process's CPU seconds during the loop).
        """
        barrier.wait(timeout=BARRIER_TIMEOUT)
        self.waited = True
        who = resource.RUSAGE_THREAD if self.cfg.get("in_thread") else resource.RUSAGE_SELF
        cpu0 = resource.getrusage(who)
        self.result["start"] = time.monotonic()
        deadline = self.result["start"] + self.cfg["duration"]
        for _ in range(self.cfg["max_lifecycles"]):
            if time.monotonic() >= deadline or not step():
                break
        self.result["end"] = time.monotonic()
        cpu1 = resource.getrusage(who)
        self.result["cpu"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)

    def release_others(self, barrier: Any) -> None:
        """After a crash before the barrier: break it, so that nobody waits for this worker."""
        if not self.waited:
            with contextlib.suppress(Exception):
                barrier.abort()


def _create(target, cfg: dict[str, Any], n: int, mode: str) -> tuple[Any, Any, Any, list]:
    """(barrier, out, release, workers), not started yet."""
    if mode == "processes":
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        barrier, out, release = ctx.Barrier(n + 1), ctx.Queue(), ctx.Event()
        make = ctx.Process
    else:
        barrier, out, release = threading.Barrier(n + 1), queue.Queue(), threading.Event()
        make = threading.Thread
    workers = [make(target=target, args=(cfg, i, barrier, out, release), daemon=True) for i in range(n)]
    return barrier, out, release, workers


def _collect(out: Any, n: int, workers: list, processes: bool, deadline: float) -> list[dict]:
    """One result per worker, until the deadline (or, for processes, until none is left alive)."""
    results: list[dict] = []
    while len(results) < n and time.monotonic() < deadline:
        try:
            results.append(out.get(timeout=1.0))
        except queue.Empty:
            if processes and not any(w.is_alive() for w in workers) and out.empty():
                break
    return results


def _stop(workers: list, release: Any, processes: bool) -> None:
    release.set()
    for w in workers:
        w.join(timeout=10)
        if processes and w.is_alive():
            w.terminate()  # our own child, by its handle
            w.join(timeout=5)


def run_workers(target, cfg: dict[str, Any], n: int, mode: str, meter: Any) -> tuple[list[dict], dict]:
    """Start n workers, release them together, collect one result each; returns (results, cpu)."""
    limit = cfg["duration"] + COLLECT_GRACE
    cfg = {**cfg, "in_thread": mode == "threads"}  # CPU per thread (RUSAGE_THREAD), not per process
    processes = mode == "processes"
    barrier, out, release, workers = _create(target, cfg, n, mode)
    for w in workers:
        w.start()
    results: list[dict] = []
    cpu: dict = {}
    try:
        barrier.wait(timeout=BARRIER_TIMEOUT)
        meter.start()
        children0 = os.times()
        results = _collect(out, n, workers, processes, time.monotonic() + limit)
        cpu = meter.stop()
        children1 = os.times()
        if processes:
            cpu["bench_process_cpu_s"] = None  # the pilots report their own CPU
        cpu["children_cpu_s"] = (children1.children_user + children1.children_system
                                 - children0.children_user - children0.children_system)  # fmt: skip
    except threading.BrokenBarrierError:
        pass
    finally:
        _stop(workers, release, processes)
    return results, cpu
