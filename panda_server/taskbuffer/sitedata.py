"""Pilot statistics (S08 SiteData): getJob/updateJob requests per site, summed over 1 h and 3 h.

The broker skips sites without pilots and divides by the pilot count (reference/panda-server.md
§4.1, §9). S08 read the table but had no writer; from Dec 2009 `add.py` filled it from
panda-PilotRequests.log. Here:

* `count(site, kind, flag)` — the dispatcher, on every getJob (the site asked for, even when no
  job is given) and updateJob (the job's computingSite). In memory, under a lock: no DB write
  per request.
* `flush(engine, now)` — adds the pending counts into `sitedata_bins` (one row per site, flag
  and minute; INSERT … ON CONFLICT DO UPDATE adding) in one short transaction. The web app
  calls it after a response at most every `Settings.sitedata_flush_seconds`, and at exit. The
  lock is never held across DB I/O; on failure the counts go back for the next try (bounded).
* `refresh(conn, now)` — the `sitedata` daemon: recomputes the classic `sitedata` rows (hours 1
  and 3) from the bins and drops bins older than 3 h.
* `pilot_stats(conn, hours=3, flag="production")` — what the broker reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from panda_server.brokerage.model import PilotStats
from panda_server.db import tables as t
from panda_server.db.engine import transaction
from panda_server.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("getJob", "updateJob")
WINDOWS = (1, 3)  # hours; the broker reads 3 (S08 getCurrentSiteData: HOURS=3, FLAG='production')
MAX_PENDING = 20_000  # (site, flag, minute) keys kept in memory; a flood of bogus sites is cut off
SITE_LIMIT = 128  # characters of a site name counted (a pilot may send anything)

Key = tuple[str, str, dt.datetime]  # site, flag, minute bin


def flag_of(label: Any) -> str:
    """prodSourceLabel → sitedata flag: production, analysis or test."""
    if label in (None, "", "NULL", "managed", "unified"):
        return "production"
    return "analysis" if label in ("user", "panda") else "test"


def minute(now: dt.datetime) -> dt.datetime:
    return now.replace(second=0, microsecond=0)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class PilotCounter:
    """Thread-safe pending counts of one process: {(site, flag, minute): [getJob, updateJob]}."""

    def __init__(self, max_keys: int = MAX_PENDING) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Key, list[int]] = {}
        self._max_keys = max_keys
        self._last_flush = time.monotonic()
        self.dropped = 0  # counts refused because the pending map was full

    def count(self, site: str, kind: str, flag: str, now: dt.datetime | None = None) -> None:
        key = (str(site)[:SITE_LIMIT], flag, minute(now or utcnow()))
        column = KINDS.index(kind)
        with self._lock:
            cell = self._pending.get(key)
            if cell is None:
                if len(self._pending) >= self._max_keys:
                    self.dropped += 1
                    return
                cell = self._pending[key] = [0, 0]
            cell[column] += 1

    def pending(self) -> dict[Key, tuple[int, int]]:
        with self._lock:
            return {k: (v[0], v[1]) for k, v in self._pending.items()}

    def due(self, interval: float) -> bool:
        """True (once) if counts are pending and `interval` s passed since the last flush began."""
        with self._lock:
            clock = time.monotonic()
            if not self._pending or clock - self._last_flush < interval:
                return False
            self._last_flush = clock  # claimed: concurrent requests do not flush as well
            return True

    def take(self) -> dict[Key, list[int]]:
        with self._lock:
            taken, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
            return taken

    def restore(self, taken: Mapping[Key, list[int]], now: dt.datetime) -> None:
        """Put counts back after a failed flush: newest first, older than 3 h or beyond the bound dropped."""
        oldest = now - dt.timedelta(hours=max(WINDOWS))
        with self._lock:
            for key in sorted(taken, key=lambda k: k[2], reverse=True):
                if key[2] < oldest:
                    continue
                cell = self._pending.get(key)
                if cell is None:
                    if len(self._pending) >= self._max_keys:
                        self.dropped += 1
                        continue
                    cell = self._pending[key] = [0, 0]
                cell[0] += taken[key][0]
                cell[1] += taken[key][1]

    def flush(self, engine: Engine, now: dt.datetime | None = None) -> int:
        """Add the pending counts to sitedata_bins; returns the rows written (0 on failure)."""
        taken = self.take()
        if not taken:
            return 0
        try:
            with transaction(engine) as conn:
                add_bins(conn, taken)
        except Exception:  # the DB may be away: keep the counts for the next flush
            log.warning("sitedata flush of %d bins failed; kept for the next try", len(taken), exc_info=True)
            self.restore(taken, now or utcnow())
            return 0
        if self.dropped:
            log.warning("sitedata: %d pilot requests not counted (more than %d pending bins)",
                        self.dropped, self._max_keys)  # fmt: skip
            self.dropped = 0
        return len(taken)


def add_bins(conn: Connection, counts: Mapping[Key, list[int] | tuple[int, int]]) -> None:
    """INSERT … ON CONFLICT DO UPDATE adding; rows in key order so concurrent flushers cannot deadlock."""
    b = t.sitedata_bins
    rows = [{"site": s, "flag": f, "bin": m, "getJob": counts[(s, f, m)][0], "updateJob": counts[(s, f, m)][1]}
            for s, f, m in sorted(counts)]  # fmt: skip
    for start in range(0, len(rows), 1000):
        stmt = insert(b).values(rows[start : start + 1000])
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[b.c.site, b.c.flag, b.c.bin],
            set_={"getJob": b.c.getJob + stmt.excluded.getJob, "updateJob": b.c.updateJob + stmt.excluded.updateJob},
        ))  # fmt: skip


# The process's counter: the dispatcher counts into it, the web app flushes it.
COUNTER = PilotCounter()


def count(site: str, kind: str, flag: str, now: dt.datetime | None = None) -> None:
    """Count one pilot request (kind getJob|updateJob, flag from flag_of) of this process."""
    COUNTER.count(site, kind, flag, now)


def count_update(job: Mapping[str, Any], now: dt.datetime | None = None) -> None:
    """Count an updateJob at the job's computingSite, flagged by its prodSourceLabel."""
    COUNTER.count(job["computingSite"] or "NULL", "updateJob", flag_of(job["prodSourceLabel"]), now)


def flush(engine: Engine, now: dt.datetime | None = None) -> int:
    return COUNTER.flush(engine, now)


def refresh(conn: Connection, now: dt.datetime) -> dict[str, int]:
    """Recompute sitedata (hours 1 and 3: getJob, updateJob, lastmod) from the bins; prune old bins."""
    b, s = t.sitedata_bins, t.sitedata
    pruned = conn.execute(sa.delete(b).where(b.c.bin < now - dt.timedelta(hours=max(WINDOWS)))).rowcount
    conn.execute(sa.delete(s).where(s.c.hours.in_(WINDOWS)))
    written = 0
    for hours in WINDOWS:
        sums = sa.select(b.c.site, b.c.flag, sa.func.sum(b.c.getJob), sa.func.sum(b.c.updateJob)).where(
            b.c.bin >= now - dt.timedelta(hours=hours)
        )
        rows = [{"site": site, "flag": flag, "hours": hours, "getJob": int(g), "updateJob": int(u), "lastmod": now}
                for site, flag, g, u in conn.execute(sums.group_by(b.c.site, b.c.flag))]  # fmt: skip
        if rows:
            stmt = insert(s).values(rows)
            conn.execute(stmt.on_conflict_do_update(  # a concurrent refresh wrote them first
                index_elements=[s.c.site, s.c.flag, s.c.hours],
                set_={"getJob": stmt.excluded.getJob, "updateJob": stmt.excluded.updateJob, "lastmod": now},
            ))  # fmt: skip
        written += len(rows)
    return {"rows": written, "pruned_bins": pruned}


def pilot_stats(conn: Connection, hours: int = 3, flag: str = "production",
                now: dt.datetime | None = None) -> dict[str, PilotStats]:  # fmt: skip
    """{site: PilotStats} from sitedata; with `now`, rows not refreshed within `hours` are ignored
    (a stopped sitedata daemon must not leave the broker with pilot counts from long ago)."""
    s = t.sitedata
    query = sa.select(s.c.site, s.c.getJob, s.c.updateJob).where(s.c.hours == hours, s.c.flag == flag)
    if now is not None:
        query = query.where(s.c.lastmod >= now - dt.timedelta(hours=hours))
    return {site: PilotStats(getJob=g or 0, updateJob=u or 0) for site, g, u in conn.execute(query)}


@dataclasses.dataclass
class Summary:
    rows: int = 0
    pruned_bins: int = 0


def run_once(engine: Engine, settings: Settings, now: dt.datetime) -> Summary:
    """The sitedata daemon's cycle: one short transaction."""
    with transaction(engine) as conn:
        return Summary(**refresh(conn, now))
