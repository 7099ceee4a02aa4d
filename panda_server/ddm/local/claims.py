"""The agent's claim step: which transfers to attempt now, leased in one short transaction.

Up to MAX_SUBSCRIPTIONS queued/active subscriptions are locked (FOR UPDATE SKIP LOCKED, the least
recently checked first, so every subscription gets its turn), made active, and given a transfer
row per file of the dataset without an available replica at the destination. Up to MAX_FILES due
transfers (next_try <= now) are leased: attempts + 1, state copying, next_try = end of the lease,
so a second agent leaves them alone and an attempt whose agent died is retried when the lease
runs out. A file whose last attempt never reported back fails its subscription here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine, Row

from panda_server.db.engine import transaction
from panda_server.ddm.interface import SubscriptionState
from panda_server.ddm.local import store, transfer
from panda_server.ddm.local import tables as t
from panda_server.settings import Settings

log = logging.getLogger("panda.ddm.agent")

MAX_SUBSCRIPTIONS = 50  # subscriptions looked at per cycle
MAX_FILES = 200  # copy attempts per cycle
LEASE_MARGIN = 60.0  # s added to a transfer's time-out for its lease
LIVE = (SubscriptionState.queued.value, SubscriptionState.active.value)
ACTIVE = SubscriptionState.active.value
ERROR_LENGTH = 4000  # characters of an error kept in the catalog


@dataclasses.dataclass(frozen=True)
class Work:
    """One leased transfer: a file of a subscription's dataset, the attempt it is, where it is."""

    subscription_id: int
    dataset: str
    rse: str  # destination
    guid: str
    scope: str
    lfn: str
    fsize: int
    adler32: str  # 8 hex digits
    attempt: int
    sources: tuple[str, ...]  # RSEs with an available replica, preferred source first


def claim(engine: Engine, settings: Settings, now: dt.datetime) -> tuple[list[int], list[Work]]:
    """(ids of the subscriptions claimed, the transfers leased for this cycle)."""
    s, d = t.subscriptions, t.datasets
    query = (
        sa.select(s.c.id, s.c.dataset_id, s.c.rse, s.c.source, d.c.name)
        .join(d, d.c.id == s.c.dataset_id)
        .where(s.c.state.in_(LIVE))
        .order_by(s.c.checked.asc().nulls_first(), s.c.id)
        .limit(MAX_SUBSCRIPTIONS)
        .with_for_update(of=s, skip_locked=True)
    )
    with transaction(engine) as conn:
        subs = conn.execute(query).all()
        ids = [sub.id for sub in subs]
        if not ids:
            return [], []
        conn.execute(sa.update(s).where(s.c.id.in_(ids)).values(checked=now))
        conn.execute(
            sa.update(s)
            .where(s.c.id.in_(ids), s.c.state == SubscriptionState.queued.value)
            .values(state=ACTIVE, modified=now)
        )
        _ensure_transfers(conn, ids, now)
        work: list[Work] = []
        for sub in subs:
            if len(work) >= MAX_FILES:
                break
            work += _lease(conn, settings, sub, now, MAX_FILES - len(work))
    return ids, work


def missing_at(rse: sa.ColumnElement, guid: sa.ColumnElement) -> sa.ColumnElement[bool]:
    """No available replica of guid at rse."""
    r = t.replicas
    return ~sa.exists().where(r.c.guid == guid, r.c.rse == rse, r.c.state == store.AVAILABLE)


def _ensure_transfers(conn: Connection, ids: list[int], now: dt.datetime) -> None:
    """A waiting transfer for each file missing at its subscription's destination (a done one
    whose replica went away is made waiting again)."""
    s, df, tr = t.subscriptions, t.dataset_files, t.transfers
    missing = (
        sa.select(
            s.c.id,
            df.c.guid,
            sa.literal("waiting"),
            sa.literal(0),
            sa.literal(now),
            sa.literal(now),
            sa.literal(now),
        )
        .join(df, df.c.dataset_id == s.c.dataset_id)
        .where(s.c.id.in_(ids), missing_at(s.c.rse, df.c.guid))
    )
    columns = ["subscription_id", "guid", "state", "attempts", "next_try", "created", "modified"]
    conn.execute(insert(tr).from_select(columns, missing).on_conflict_do_nothing())
    conn.execute(
        sa.update(tr)
        .where(tr.c.subscription_id == s.c.id, s.c.id.in_(ids), tr.c.state == "done",
               missing_at(s.c.rse, tr.c.guid))
        .values(state="waiting", attempts=0, next_try=now, modified=now)
    )  # fmt: skip


def _lease(conn: Connection, settings: Settings, sub: Row, now: dt.datetime, limit: int) -> list[Work]:
    """Lease the subscription's due transfers (at most limit); fail it for a file out of attempts."""
    tr, f, df = t.transfers, t.files, t.dataset_files
    query = (
        sa.select(
            tr.c.guid,
            tr.c.state,
            tr.c.attempts,
            tr.c.source,
            tr.c.last_error,
            f.c.scope,
            f.c.lfn,
            f.c.fsize,
            f.c.checksum,
        )
        .join(f, f.c.guid == tr.c.guid)
        .join(df, sa.and_(df.c.guid == tr.c.guid, df.c.dataset_id == sub.dataset_id))
        .where(
            tr.c.subscription_id == sub.id,
            tr.c.state.in_(["waiting", "copying"]),
            tr.c.next_try <= now,
            missing_at(sa.literal(sub.rse), tr.c.guid),
        )
        .order_by(df.c.position)
        .limit(limit)
    )
    rows = conn.execute(query).all()
    for row in rows:
        if row.attempts >= settings.ddm_max_attempts:  # its last attempt's lease ran out
            give_up(
                conn,
                sub.id,
                row.guid,
                f"{row.scope}:{row.lfn}",
                f"{row.source} → {sub.rse}",
                _error_of(row),
                row.attempts,
                now,
            )
            return []
    return [_lease_one(conn, sub, row, now) for row in rows]


def _error_of(row: Row) -> str | None:
    """The transfer's last error; for one still copying, that its lease ran out."""
    if row.state == "copying":
        return f"attempt {row.attempts} did not report back within its lease (agent stopped?)"
    return row.last_error


def _lease_one(conn: Connection, sub: Row, row: Row, now: dt.datetime) -> Work:
    """Start the next attempt of one transfer: copying until the lease ends."""
    tr = t.transfers
    lease = now + dt.timedelta(seconds=transfer.timeout_for(row.fsize) + LEASE_MARGIN)
    conn.execute(
        sa.update(tr)
        .where(tr.c.subscription_id == sub.id, tr.c.guid == row.guid)
        .values(
            state="copying",
            attempts=row.attempts + 1,
            next_try=lease,
            last_error=_error_of(row),
            modified=now,
        )
    )
    sources = _sources(conn, row.guid, sub.rse, sub.source)
    return Work(
        sub.id,
        sub.name,
        sub.rse,
        row.guid,
        row.scope,
        row.lfn,
        row.fsize,
        row.checksum.removeprefix("ad:"),
        row.attempts + 1,
        sources,
    )


def _sources(conn: Connection, guid: str, destination: str, preferred: str | None) -> tuple[str, ...]:
    r = t.replicas
    rses = (
        conn.execute(
            sa.select(r.c.rse)
            .where(r.c.guid == guid, r.c.state == store.AVAILABLE, r.c.rse != destination)
            .order_by(r.c.rse)
        )
        .scalars()
        .all()
    )
    return tuple(sorted(rses, key=lambda rse: rse != preferred))


def give_up(
    conn: Connection,
    subscription_id: int,
    guid: str,
    name: str,
    route: str,
    error: str | None,
    attempts: int,
    now: dt.datetime,
) -> int:
    """The file failed for good: its transfer and the subscription become failed (1 if it was live)."""
    tr, s = t.transfers, t.subscriptions
    conn.execute(
        sa.update(tr)
        .where(tr.c.subscription_id == subscription_id, tr.c.guid == guid)
        .values(state="failed", last_error=error, modified=now)
    )
    text = f"gave up on {name} ({guid}) {route} after {attempts} attempt(s): {error}"[:ERROR_LENGTH]
    failed = conn.execute(
        sa.update(s)
        .where(s.c.id == subscription_id, s.c.state.in_(LIVE))
        .values(state=SubscriptionState.failed.value, error=text, modified=now)
    ).rowcount
    if failed:
        log.error("ddm subscription %d failed: %s", subscription_id, text)
    return failed
