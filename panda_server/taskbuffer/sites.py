"""Queue (schedconfig) lookups and per-site job counts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.db.engine import fetch

# Per-process memo for what getJob reads on every call but changes rarely (a queue's DDM
# endpoint after a schedconfig sync): seen within CACHE_SECONDS.
CACHE_SECONDS = 10.0
_cache: dict[tuple[str, str], tuple[float, Any]] = {}
_cache_lock = threading.Lock()


def cached(kind: str, key: str, load: Callable[[], Any], *, ttl: float = CACHE_SECONDS) -> Any:
    now = time.monotonic()
    hit = _cache.get((kind, key))
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    value = load()
    with _cache_lock:
        if len(_cache) > 10_000:  # bounded: a flood of bogus site names cannot grow it forever
            _cache.clear()
        _cache[(kind, key)] = (now, value)
    return value


_SITE_STATUS = "SELECT status FROM schedconfig WHERE siteid = %(site)s"


def site_status(conn: Connection, siteid: str) -> str | None:
    """Status of a PanDA site: 'test' if any of its queues is in test, else the first queue's."""
    statuses = [r["status"] for r in fetch(conn, _SITE_STATUS, {"site": siteid})]
    if not statuses:
        return None
    return "test" if "test" in statuses else statuses[0]


def ddm_endpoint(conn: Connection, siteid: str) -> str:
    s = t.schedconfig
    data = conn.execute(sa.select(s.c.data).where(s.c.siteid == siteid).limit(1)).scalar()
    return (data or {}).get("ddm") or ""


def queue_data(conn: Connection, nickname: str) -> dict[str, Any] | None:
    """The queue's definition; the status column wins, so an operator's change reaches pilots."""
    s = t.schedconfig
    row = conn.execute(sa.select(s.c.data, s.c.status).where(s.c.nickname == nickname)).first()
    return None if row is None else {**row.data, "status": row.status}


def site_specs(conn: Connection, site_type: str = "all") -> dict[str, dict[str, Any]]:
    """S08 getSiteSpecs: {siteid: {...}}; `analysis` (the classic default) or `all`."""
    s = t.schedconfig
    query = sa.select(s).order_by(s.c.nickname)
    if site_type != "all":
        query = query.where(s.c.type == site_type)
    out: dict[str, dict[str, Any]] = {}
    for row in conn.execute(query).mappings():
        data = row["data"]
        out.setdefault(row["siteid"], {
            "sitename": row["siteid"], "nickname": row["nickname"], "cloud": row["cloud"],
            "ddm": data.get("ddm"), "type": row["type"], "gatekeeper": data.get("gatekeeper"),
            "releases": data.get("releases", []), "memory": row["memory"], "maxtime": row["maxtime"],
            "status": row["status"], "space": row["space"], "retry": row["retry"],
            "cmtconfig": data.get("cmtconfig"), "setokens": data.get("setokens"), "tier": row["tier"],
        })  # fmt: skip
    return out


def cloud_specs(conn: Connection) -> dict[str, dict[str, Any]]:
    c = t.cloudconfig
    return {r["name"]: {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
            for r in conn.execute(sa.select(c)).mappings()}  # fmt: skip


def job_statistics_per_site(conn: Connection) -> dict[str, dict[str, int]]:
    """S08 getJobStatisticsPerSite: {site: {jobStatus: count}} over the live tables."""
    out: dict[str, dict[str, int]] = {}
    for name in ("jobsdefined4", "jobswaiting4", "jobsactive4"):
        table = t.JOB_TABLE[name]
        query = sa.select(table.c.computingSite, table.c.jobStatus, sa.func.count()).group_by(
            table.c.computingSite, table.c.jobStatus
        )
        for site, status, count in conn.execute(query):
            out.setdefault(site or "NULL", {})
            out[site or "NULL"][status] = out[site or "NULL"].get(status, 0) + count
    return out
