"""Catalog reads and writes on a caller's connection (the caller owns the transaction).

LocalDDM (catalog.py) wraps each verb in one transaction around these; the agent and the CLI use
them too. Inputs are already validated (catalog.checked_files); these only enforce consistency with
what the catalog holds.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Row

from panda_server.ddm.interface import (
    DatasetInfo,
    DatasetNotFound,
    DatasetState,
    DDMError,
    FileInfo,
    Subscription,
    SubscriptionState,
)  # fmt: skip
from panda_server.ddm.local import tables as t

AVAILABLE = "available"
CHUNK = 1000  # rows per multi-row INSERT (PostgreSQL allows 65535 parameters per statement)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def dataset_row(conn: Connection, name: str, *, lock: bool = False) -> Row | None:
    """The dataset's row; `lock` takes it FOR UPDATE (adding files, closing: one at a time)."""
    query = sa.select(t.datasets).where(t.datasets.c.name == name)
    return conn.execute(query.with_for_update() if lock else query).first()


def require_dataset(conn: Connection, name: str, *, lock: bool = False) -> Row:
    row = dataset_row(conn, name, lock=lock)
    if row is None:
        raise DatasetNotFound(f"dataset {name} does not exist in DDM")
    return row


def create_dataset(conn: Connection, name: str, location: str | None, now: dt.datetime) -> Row | None:
    """Insert an open dataset with a new vuid; None if the name exists (a concurrent registration)."""
    values = dict(name=name, vuid=str(uuid.uuid4()), state=DatasetState.open.value, location=location,
                  created=now, modified=now)  # fmt: skip
    stmt = insert(t.datasets).values(values).on_conflict_do_nothing(index_elements=["name"])
    return conn.execute(stmt.returning(*t.datasets.c)).first()


def file_count(conn: Connection, dataset_id: int) -> int:
    df = t.dataset_files
    return conn.execute(sa.select(sa.func.count()).where(df.c.dataset_id == dataset_id)).scalar_one()


def dataset_info(conn: Connection, row: Row) -> DatasetInfo:
    return DatasetInfo(row.name, row.vuid, DatasetState(row.state), file_count(conn, row.id))


def dataset_files(conn: Connection, dataset_id: int) -> list[FileInfo]:
    """The dataset's files in registration order."""
    f, df = t.files, t.dataset_files
    query = (
        sa.select(f.c.lfn, f.c.guid, f.c.scope, f.c.fsize, f.c.checksum)
        .join(df, df.c.guid == f.c.guid)
        .where(df.c.dataset_id == dataset_id)
        .order_by(df.c.position)
    )
    return [FileInfo(*r) for r in conn.execute(query)]


def replicas_of(conn: Connection, guids: Sequence[str]) -> dict[str, frozenset[str]]:
    """{guid: RSEs with an available replica} for the known GUIDs among guids."""
    f, r = t.files, t.replicas
    query = (
        sa.select(f.c.guid, r.c.rse)
        .outerjoin(r, sa.and_(r.c.guid == f.c.guid, r.c.state == AVAILABLE))
        .where(f.c.guid.in_(list(guids)))
    )
    out: dict[str, set[str]] = {}
    for guid, rse in conn.execute(query):
        out.setdefault(guid, set()).update([rse] if rse else [])
    return {guid: frozenset(rses) for guid, rses in out.items()}


def add_files(conn: Connection, dataset: Row, files: Sequence[FileInfo], now: dt.datetime) -> list[str]:
    """Register files (new ones into `files`) and add them to the locked dataset; the GUIDs added.

    A file already in the dataset is skipped if it agrees with the catalog; any disagreement
    (size, checksum, LFN of a GUID, GUID of an LFN) is a DDMError naming both versions.
    """
    if not files:
        return []
    new_rows = [dict(guid=f.guid, scope=f.scope, lfn=f.lfn, fsize=f.fsize, checksum=f.checksum, created=now)
                for f in files]  # fmt: skip
    for i in range(0, len(new_rows), CHUNK):
        conn.execute(insert(t.files).values(new_rows[i : i + CHUNK]).on_conflict_do_nothing())
    _check_agree(conn, files)
    df = t.dataset_files
    present = set(conn.execute(sa.select(df.c.guid).where(
        df.c.dataset_id == dataset.id, df.c.guid.in_([f.guid for f in files]))).scalars())  # fmt: skip
    added = [f.guid for f in files if f.guid not in present]
    if added and dataset.state != DatasetState.open.value:
        raise DDMError(f"dataset {dataset.name} is closed: cannot add {len(added)} file(s), e.g. {added[0]}")
    if added:
        last = conn.execute(sa.select(sa.func.coalesce(sa.func.max(df.c.position), 0)).where(
            df.c.dataset_id == dataset.id)).scalar_one()  # fmt: skip
        rows = [dict(dataset_id=dataset.id, guid=g, position=last + i) for i, g in enumerate(added, start=1)]
        conn.execute(sa.insert(df), rows)
        conn.execute(sa.update(t.datasets).where(t.datasets.c.id == dataset.id).values(modified=now))
    return added


def _check_agree(conn: Connection, files: Sequence[FileInfo]) -> None:
    """DDMError unless the catalog holds every file exactly as given (after the insert)."""
    f = t.files
    by_guid = {r.guid: r for r in conn.execute(sa.select(f).where(f.c.guid.in_([x.guid for x in files])))}
    for x in files:
        row = by_guid.get(x.guid)
        if row is None:  # nothing inserted for this GUID: its scope:lfn belongs to another GUID
            other = conn.execute(sa.select(f.c.guid).where(f.c.scope == x.scope, f.c.lfn == x.lfn)).scalar()
            raise DDMError(f"file {x.scope}:{x.lfn} is registered with GUID {other}, not {x.guid}")
        if (row.scope, row.lfn, row.fsize, row.checksum) != (x.scope, x.lfn, x.fsize, x.checksum):
            raise DDMError(
                f"file {x.guid} is registered as {row.scope}:{row.lfn} ({row.fsize} bytes, {row.checksum}); "
                f"refusing {x.scope}:{x.lfn} ({x.fsize} bytes, {x.checksum})"
            )


def record_replicas(conn: Connection, guids: Sequence[str], rse: str, now: dt.datetime) -> None:
    """Mark the files' replicas at rse available (verified by whoever wrote them)."""
    if not guids:
        return
    rows = [dict(guid=g, rse=rse, state=AVAILABLE, created=now) for g in dict.fromkeys(guids)]
    for i in range(0, len(rows), CHUNK):
        stmt = insert(t.replicas).values(rows[i : i + CHUNK])
        conn.execute(stmt.on_conflict_do_update(index_elements=["guid", "rse"], set_={"state": AVAILABLE}))


def reopen_done(conn: Connection, dataset_id: int, now: dt.datetime) -> int:
    """Put the dataset's done subscriptions back to queued (new files to move, a new callback)."""
    s = t.subscriptions
    stmt = (
        sa.update(s)
        .where(s.c.dataset_id == dataset_id, s.c.state == SubscriptionState.done.value)
        .values(state=SubscriptionState.queued.value, modified=now, callback_pending=False,
                callback_attempts=0, callback_next_try=None, callback_error=None)
    )  # fmt: skip
    return conn.execute(stmt).rowcount


def subscription_row(conn: Connection, name: str, rse: str) -> Row | None:
    """The subscription (with its dataset's name and vuid) of dataset `name` to `rse`."""
    s, d = t.subscriptions, t.datasets
    query = (
        sa.select(s, d.c.name.label("dataset"), d.c.vuid)
        .join(d, d.c.id == s.c.dataset_id)
        .where(d.c.name == name, s.c.rse == rse)
    )
    return conn.execute(query).first()


def subscription_info(conn: Connection, row: Row) -> Subscription:
    """The Subscription of a row from subscription_row/subscriptions_listing, with file counts."""
    df, r = t.dataset_files, t.replicas
    total = file_count(conn, row.dataset_id)
    done = conn.execute(
        sa.select(sa.func.count())
        .select_from(df.join(r, r.c.guid == df.c.guid))
        .where(df.c.dataset_id == row.dataset_id, r.c.rse == row.rse, r.c.state == AVAILABLE)
    ).scalar_one()
    return Subscription(row.dataset, row.rse, SubscriptionState(row.state), total, done, row.error)


def subscriptions_listing(conn: Connection, state: str | None, limit: int) -> list[Row]:
    """Subscriptions (newest first) with their dataset's name, optionally of one state."""
    s, d = t.subscriptions, t.datasets
    query = sa.select(s, d.c.name.label("dataset"), d.c.vuid).join(d, d.c.id == s.c.dataset_id)
    if state:
        query = query.where(s.c.state == state)
    return list(conn.execute(query.order_by(s.c.id.desc()).limit(limit)))


def datasets_listing(conn: Connection, limit: int) -> list[tuple[Row, int]]:
    """(dataset row, number of files), newest first."""
    d, df = t.datasets, t.dataset_files
    nfiles = sa.select(sa.func.count()).where(df.c.dataset_id == d.c.id).scalar_subquery()
    return [(r, r.nfiles) for r in conn.execute(
        sa.select(d, nfiles.label("nfiles")).order_by(d.c.id.desc()).limit(limit))]  # fmt: skip


def guids_of(conn: Connection, scope: str, lfns: Sequence[str]) -> dict[str, str]:
    """{lfn: guid} of the files of `scope` the catalog already knows among lfns."""
    f = t.files
    query = sa.select(f.c.lfn, f.c.guid).where(f.c.scope == scope, f.c.lfn.in_(list(lfns)))
    return {lfn: guid for lfn, guid in conn.execute(query)}
