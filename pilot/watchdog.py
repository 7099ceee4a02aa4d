"""The job monitor's decisions: is the running payload still within its limits? (reference/pilot.md §6)

Pure functions: plain numbers in (measured by pilot.probes and pilot.util.processes), a verdict
out, the clock passed in. So every rule is tested with a table, and the I/O side stays thin.
A verdict is (pilot error code, diag); the diag names the measured value and the limit, so a
person reading the job page knows what to change (the queue's limit, or the payload).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilot.errors import CODES

Verdict = tuple[int, str]

MB = 1024 * 1024
WORKDIR_GRACE = 1.1  # the real pilot allows maxwdir + 10 %
LOOPING_PROD = 12 * 3600.0  # classic pilot loopingLimitDefaultProd
LOOPING_ANALYSIS = 3 * 3600.0  # classic pilot loopingLimitDefaultUser
LOOPING_MIN = 2 * 3600.0  # classic pilot loopingLimitMinDefault


@dataclass(frozen=True)
class Limits:
    """The limits one job runs under; None switches a check off."""

    looping_limit: float = 7200  # s without any file in the work dir changing
    looping_grace_start: float = 0  # s of payload run time before the looping check starts
    workdir_max_mb: float | None = None  # queuedata maxwdir
    free_space_min_mb: float = 1024  # free space needed on the work dir's file system while running
    rss_max_kb: int | None = None  # resident memory of the whole payload tree
    stdout_max_bytes: int = 2 * 1024**3
    output_max_bytes: int = 500 * 1024**3


@dataclass(frozen=True)
class WatchSample:
    """One measurement of the running job; None means "not measured this time" (the check is skipped)."""

    newest_mtime: float | None  # epoch s of the newest file in the work dir (0: none)
    payload_start: float  # epoch s
    workdir_bytes: int | None
    free_bytes: int | None
    rss_kb: int | None
    stdout_bytes: int | None


def _mb(n: float) -> str:
    return f"{n / MB:.0f} MB" if n >= 10 * MB else f"{n:.0f} bytes"


def _kb(n: int) -> str:
    return f"{n // 1024} MB" if n >= 10 * 1024 else f"{n} kB"


def looping(newest_mtime: float, payload_start: float, now: float, limits: Limits) -> Verdict | None:
    """1150 LOOPINGJOB: no file in the work dir changed for `looping_limit` s.

    Measured from the newest file or the payload start, whichever is later (inputs staged in
    long before the payload must not count against it).
    """
    if now - payload_start < limits.looping_grace_start:
        return None
    idle = now - max(newest_mtime, payload_start)
    if idle <= limits.looping_limit:
        return None
    return CODES["LOOPINGJOB"], (
        f"looping job: no file in the work directory changed for {idle:.0f} s "
        f"(looping limit {limits.looping_limit:.0f} s); the payload seems stuck"
    )


def workdir_size(size_bytes: int, limits: Limits) -> Verdict | None:
    """1104 USERDIRTOOLARGE: the work dir grew beyond the queue's maxwdir + 10 % grace."""
    if limits.workdir_max_mb is None:
        return None
    allowed = limits.workdir_max_mb * MB * WORKDIR_GRACE
    if size_bytes <= allowed:
        return None
    return CODES["USERDIRTOOLARGE"], (
        f"work directory is {_mb(size_bytes)}, above the limit of {_mb(allowed)} "
        f"(queue maxwdir {limits.workdir_max_mb:.0f} MB + 10 %)"
    )


def local_space(free_bytes: int, limits: Limits) -> Verdict | None:
    """1098 NOLOCALSPACE: the work dir's file system is nearly full (the node's other jobs suffer too)."""
    if free_bytes >= limits.free_space_min_mb * MB:
        return None
    return CODES["NOLOCALSPACE"], (
        f"only {_mb(free_bytes)} free on the work directory's file system, "
        f"below the minimum of {limits.free_space_min_mb:.0f} MB"
    )


def memory(rss_kb: int, limits: Limits) -> Verdict | None:
    """1235 PAYLOADEXCEEDMAXMEM: the payload tree's resident memory is above the job's limit."""
    if limits.rss_max_kb is None or rss_kb <= limits.rss_max_kb:
        return None
    return CODES["PAYLOADEXCEEDMAXMEM"], (
        f"payload uses {_kb(rss_kb)} resident memory (RSS of all its processes), "
        f"above the limit of {_kb(limits.rss_max_kb)}"
    )


def stdout_size(size_bytes: int, limits: Limits) -> Verdict | None:
    """1106 STDOUTTOOBIG: the payload's stdout is too large to keep and tar up."""
    if size_bytes <= limits.stdout_max_bytes:
        return None
    return CODES["STDOUTTOOBIG"], (
        f"payload stdout is {_mb(size_bytes)}, above the limit of {_mb(limits.stdout_max_bytes)}"
    )


def output_sizes(sizes: Mapping[str, int], limits: Limits) -> Verdict | None:
    """1124 OUTPUTFILETOOLARGE / 1350 EMPTYOUTPUTFILE for the first bad output (in the given order)."""
    for name, size in sizes.items():
        if size > limits.output_max_bytes:
            return CODES["OUTPUTFILETOOLARGE"], (
                f"output file {name} is {_mb(size)}, above the limit of {_mb(limits.output_max_bytes)}"
            )
        if size == 0:
            return CODES["EMPTYOUTPUTFILE"], f"output file {name} is empty (0 bytes)"
    return None


def _positive(value: Any) -> float:
    """A queuedata number (they arrive as int, str or null); 0 when absent or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if number > 0 else 0.0


def classic_looping_limit(max_cpu_count: float, analysis: bool) -> float:
    """The classic pilot's looping limit (Monitor.__getLoopingLimit).

    A task that declares maxCpuCount of at least 2 h gets exactly that (never below 2 h); otherwise
    the default: 12 h for production, 3 h for analysis.
    """
    if max_cpu_count >= LOOPING_MIN:
        return max(LOOPING_MIN, float(max_cpu_count))
    return LOOPING_ANALYSIS if analysis else LOOPING_PROD


def limits_for(
    job_min_ram_mb: int,
    queue: Mapping[str, Any],
    *,
    max_cpu_count: float = 0,
    analysis: bool = False,
    looping_limit: float | None = None,
) -> Limits:
    """The limits for one job, from the job and its queue's queuedata.

    * memory: the job's minRamCount (MB) when > 0, else queuedata `maxrss` (MB), else none;
    * work dir: queuedata `maxwdir` (MB; the check adds 10 % grace), else none;
    * looping: `looping_limit` when given and > 0 (site/pilot configuration, e.g. tests),
      else the classic rule (classic_looping_limit) from the job's maxCpuCount.
    """
    ram_mb = _positive(job_min_ram_mb) or _positive(queue.get("maxrss"))
    loop = _positive(looping_limit) or classic_looping_limit(_positive(max_cpu_count), analysis)
    return Limits(
        looping_limit=loop,
        workdir_max_mb=_positive(queue.get("maxwdir")) or None,
        rss_max_kb=int(ram_mb * 1024) or None,
    )


def check_all(sample: WatchSample, limits: Limits, now: float) -> Verdict | None:
    """All running-job checks; the first hit wins, in this fixed order:

    local space (a full disk hurts every job on the node), work-dir size, stdout size, memory,
    then looping (the slowest signal, and a full disk can also stop a payload writing).
    """
    checks = (
        (sample.free_bytes, lambda v: local_space(v, limits)),
        (sample.workdir_bytes, lambda v: workdir_size(v, limits)),
        (sample.stdout_bytes, lambda v: stdout_size(v, limits)),
        (sample.rss_kb, lambda v: memory(v, limits)),
        (sample.newest_mtime, lambda v: looping(v, sample.payload_start, now, limits)),
    )
    for value, check in checks:
        if value is not None:
            verdict = check(value)
            if verdict:
                return verdict
    return None
