"""Constants and clocks shared by the dispatch benchmark's modules (stdlib only)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout: benchmarks/dispatchlib/ is two below

PILOT_VERSION = "3.7.0.36"
PILOT_ID = f"unknown|PR|{PILOT_VERSION}"
CPU_UNIT = "s+AMD EPYC 1024 KB 2-Core Processor+AVX2"
CALLS = ("getJob", "starting", "running", "finished")
MAX_CONSECUTIVE_ERRORS = 20
REQUEST_TIMEOUT = 30.0


def utcnow() -> dt.datetime:
    """Naive UTC, as the tables store it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def stamp() -> str:
    """The pilot's timestamp field."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
