"""Write the queue and cloud definitions into the `schedconfig` and `cloudconfig` tables.

The caller owns the transaction: nothing here commits. Queues that disappeared from the files
are set offline, never deleted, because job rows keep referring to them (computingSite).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from panda_server.db.tables import cloudconfig, schedconfig
from schedconfig.model import CloudSpec, ConfigError, QueueSpec

MODUSER = "panda-schedconfig"


def queue_row(q: QueueSpec, now: dt.datetime) -> dict[str, Any]:
    """The schedconfig row: classic columns from the spec, the whole definition in `data`."""
    return {
        "nickname": q.nickname, "siteid": q.siteid, "cloud": q.cloud, "status": q.status, "type": q.type,
        "tier": q.tier, "memory": q.memory, "maxtime": q.maxtime, "space": q.space,
        "retry": "TRUE" if q.retry else "FALSE",  # S08 Watcher: 'FALSE' disables job recovery
        "data": q.to_dict(), "lastmod": now,
    }  # fmt: skip


def cloud_row(c: CloudSpec, now: dt.datetime) -> dict[str, Any]:
    return {
        "name": c.name, "description": c.description, "tier1": c.tier1, "tier1SE": ",".join(c.tier1SE),
        "weight": c.weight, "status": c.status, "transtimelo": c.transtimelo, "transtimehi": c.transtimehi,
        "validation": "true" if c.validation else "false", "mcshare": c.mcshare, "countries": c.countries,
        "fasttrack": "true" if c.fasttrack else "false", "moduser": MODUSER, "modtime": now,
    }  # fmt: skip


def sync(conn: Connection, queues: Sequence[QueueSpec], clouds: Sequence[CloudSpec],
         now: dt.datetime) -> dict[str, int]:  # fmt: skip
    """Upsert queues and clouds; set queues (and clouds) missing from the files offline.

    Returns queue counts {"inserted", "updated", "offlined"}. Does not commit.
    """
    existing = set(conn.execute(sa.select(schedconfig.c.nickname)).scalars())
    _upsert(conn, schedconfig, [queue_row(q, now) for q in queues], key="nickname")
    _upsert(conn, cloudconfig, [cloud_row(c, now) for c in clouds], key="name")
    names = {q.nickname for q in queues}
    offlined = _offline_queues(conn, names, now)
    conn.execute(
        sa.update(cloudconfig)
        .where(cloudconfig.c.name.not_in(sorted(c.name for c in clouds)), cloudconfig.c.status != "offline")
        .values(status="offline", moduser=MODUSER, modtime=now)
    )
    return {"inserted": len(names - existing), "updated": len(names & existing), "offlined": offlined}


def _upsert(conn: Connection, table: sa.Table, rows: list[dict[str, Any]], *, key: str) -> None:
    if not rows:
        return
    stmt = insert(table).values(rows)
    # only the columns we write: others (e.g. cloudconfig.space) may be maintained elsewhere
    update = {name: stmt.excluded[name] for name in rows[0] if name != key}
    conn.execute(stmt.on_conflict_do_update(index_elements=[table.c[key]], set_=update))


def _offline_queues(conn: Connection, keep: set[str], now: dt.datetime) -> int:
    gone = conn.execute(
        sa.select(schedconfig.c.nickname, schedconfig.c.data)
        .where(schedconfig.c.nickname.not_in(sorted(keep)), schedconfig.c.status != "offline")
        .with_for_update()
    ).all()
    for nickname, data in gone:
        conn.execute(
            sa.update(schedconfig)
            .where(schedconfig.c.nickname == nickname)
            .values(status="offline", data={**data, "status": "offline"}, lastmod=now)
        )
    return len(gone)


def read_queues(
    conn: Connection, *, on_error: Callable[[ConfigError], None] | None = None
) -> list[QueueSpec]:
    """Every queue in the DB, from `data`; the `status` column wins (operators set it directly).
    A row that is not a valid queue raises ConfigError, or, given `on_error`, is passed to it and left out."""
    rows = conn.execute(
        sa.select(schedconfig.c.nickname, schedconfig.c.status, schedconfig.c.data).order_by(
            schedconfig.c.nickname
        )
    ).all()
    out = []
    for nickname, status, data in rows:
        try:
            out.append(QueueSpec.from_dict({**data, "status": status}, source=f"schedconfig row {nickname}"))
        except ConfigError as exc:
            if on_error is None:
                raise
            on_error(exc)
    return out


def read_clouds(conn: Connection) -> list[CloudSpec]:
    """Every cloud in the DB, from the cloudconfig columns."""
    rows = conn.execute(sa.select(cloudconfig).order_by(cloudconfig.c.name)).mappings().all()
    return [
        CloudSpec(
            name=r["name"],
            tier1=r["tier1"],
            tier1SE=tuple(s for s in (r["tier1SE"] or "").split(",") if s),
            status=r["status"],
            weight=r["weight"] or 0,
            transtimelo=r["transtimelo"] or 0,
            transtimehi=r["transtimehi"] or 0,
            countries=r["countries"] or "",
            description=r["description"] or "",
            validation=(r["validation"] or "").lower() == "true",
            mcshare=r["mcshare"] or 0,
            fasttrack=(r["fasttrack"] or "").lower() == "true",
        )  # fmt: skip
        for r in rows
    ]
