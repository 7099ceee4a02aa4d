"""Build the broker's `Snapshot` from the DB (S08 SiteMapper + getJobStatistics + getCurrentSiteData).

`load(conn, now)` reads schedconfig, cloudconfig, the live job tables and `sitedata`; replicas
stay empty: the caller (the setupper) asks DDM about the jobs' inputs and adds them with
`dataclasses.replace(snap, replicas=...)`. The caller owns the transaction; nothing is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.brokerage.model import CloudInfo, PilotStats, SiteInfo, SiteStats, Snapshot
from panda_server.db import tables as t
from panda_server.taskbuffer import sitedata
from schedconfig.model import CloudSpec, QueueSpec
from schedconfig.sync import read_clouds, read_queues

# S08 getJobStatistics: the labels and states the broker's load figures count
STAT_LABELS = ("managed", "user", "panda", "test", "ddm")
STAT_STATES = ("assigned", "activated", "running")
PILOT_WINDOW_HOURS = 3  # S08 getCurrentSiteData: HOURS=3, FLAG='production'


def site_info(q: QueueSpec) -> SiteInfo:
    return SiteInfo(
        siteid=q.siteid, cloud=q.cloud, tier=q.tier, type=q.type, status=q.status, ddm=q.ddm,
        releases=tuple(q.releases), cmtconfigs=tuple(c.strip() for c in q.cmtconfig.split(",") if c.strip()),
        memory=q.memory, maxinputsize=q.maxinputsize, space=q.space,
    )  # fmt: skip


def sites_from_queues(queues: Iterable[QueueSpec]) -> dict[str, SiteInfo]:
    """One SiteInfo per siteid (S08 SiteMapper): the first queue wins, except that an offline
    one is replaced by a later queue that is not offline. Queues come sorted by nickname."""
    out: dict[str, SiteInfo] = {}
    for q in queues:
        known = out.get(q.siteid)
        if known is None or (known.status == "offline" and q.status != "offline"):
            out[q.siteid] = site_info(q)
    return out


def clouds_from_specs(clouds: Iterable[CloudSpec]) -> dict[str, CloudInfo]:
    """cloudconfig rows; a weight of 0 means the classic default T1 weight 2.0."""
    return {c.name: CloudInfo(name=c.name, tier1=c.tier1, weight=float(c.weight) or 2.0, status=c.status)
            for c in clouds}  # fmt: skip


def job_stats(conn: Connection) -> dict[str, SiteStats]:
    """assigned/activated/running per computingSite over jobsdefined4 + jobsactive4."""
    counts: dict[str, dict[str, int]] = {}
    for table in (t.jobsdefined4, t.jobsactive4):
        query = (
            sa.select(table.c.computingSite, table.c.jobStatus, sa.func.count())
            .where(table.c.prodSourceLabel.in_(STAT_LABELS), table.c.jobStatus.in_(STAT_STATES))
            .group_by(table.c.computingSite, table.c.jobStatus)
        )
        for site, status, n in conn.execute(query):
            if site:
                per_site = counts.setdefault(site, {})
                per_site[status] = per_site.get(status, 0) + n
    return {site: SiteStats(**c) for site, c in counts.items()}


def load(conn: Connection, now: dt.datetime) -> Snapshot:
    """The broker's view now; pilots are empty when sitedata has no fresh 3 h rows (rule off)."""
    return Snapshot(
        sites=sites_from_queues(read_queues(conn)),
        clouds=clouds_from_specs(read_clouds(conn)),
        stats=job_stats(conn),
        pilots=pilots_seen(conn, now),
        replicas={},
    )


def pilots_seen(conn: Connection, now: dt.datetime) -> dict[str, PilotStats]:
    """Pilot requests per site over the window, whatever their flag: a site's pilots ask with the
    label of its queue (production, analysis or test), and any of them shows the site is alive."""
    out: dict[str, PilotStats] = {}
    for flag in ("production", "analysis", "test"):
        for site, p in sitedata.pilot_stats(conn, hours=PILOT_WINDOW_HOURS, flag=flag, now=now).items():
            seen = out.get(site, PilotStats())
            out[site] = PilotStats(getJob=seen.getJob + p.getJob, updateJob=seen.updateJob + p.updateJob)
    return out
