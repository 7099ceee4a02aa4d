"""LocalDDM: the DDM verbs (panda_server/ddm/interface.py) on the catalog in the `ddm` schema.

Each verb is one short transaction of its own (DDM is a separate service; it never shares the
caller's). Inputs are checked first: names of at most 255 characters, at most MAX_FILES files or
GUIDs per call, adler32 checksums ('ad:<8 hex>'; 'adler32:' and bare hex are normalised), RSEs
known to schedconfig. Transfers are asynchronous: subscribe() only records the request; the agent
(agent.py, `panda-daemon ddm`) moves the files and calls the callback. A database outage surfaces
as panda_server.errors.DBUnavailable, as for every other PanDA transaction; DDM refusals are
DDMError / DatasetNotFound with the dataset, file and reason in the message.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine

from panda_server.db.engine import transaction
from panda_server.ddm.interface import (
    DatasetInfo,
    DatasetState,
    DDMError,
    FileInfo,
    Subscription,
    SubscriptionState,
    adler32_checksum,
)  # fmt: skip
from panda_server.ddm.local import rses as rse_lookup
from panda_server.ddm.local import store
from panda_server.ddm.local import tables as t
from panda_server.ddm.local.rses import RSESource
from panda_server.settings import Settings

log = logging.getLogger(__name__)

MAX_FILES = 10_000  # files (or GUIDs) per call
MAX_NAME = t.NAME_LENGTH
MAX_URL = 2048
_CHECKSUM = re.compile(r"^ad:[0-9a-f]{8}$")
_NAME = re.compile(r"^[^\s\x00-\x1f\x7f]+$")  # no white space or control characters


class LocalDDM:
    """The built-in DDM backend. `rses`: {rse: (endpoint, path)} or a function returning it."""

    def __init__(self, engine: Engine, rses: RSESource) -> None:
        self.engine = engine
        self.rses = rses

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> LocalDDM:
        """The backend with the RSE map read from schedconfig (storage_root for plain SEs) on use."""
        return cls(engine, lambda: read_rse_map(engine, settings.storage_root))

    def get_dataset(self, name: str) -> DatasetInfo | None:
        checked_name(name)
        with transaction(self.engine) as conn:
            row = store.dataset_row(conn, name)
            return None if row is None else store.dataset_info(conn, row)

    def list_files(self, name: str) -> list[FileInfo]:
        checked_name(name)
        with transaction(self.engine) as conn:
            return store.dataset_files(conn, store.require_dataset(conn, name).id)

    def list_replicas(self, guids: Iterable[str]) -> dict[str, frozenset[str]]:
        wanted = list(dict.fromkeys(guids))
        if len(wanted) > MAX_FILES:
            raise DDMError(f"list_replicas: {len(wanted)} GUIDs in one call, at most {MAX_FILES}")
        if not wanted:
            return {}
        with transaction(self.engine) as conn:
            return store.replicas_of(conn, wanted)

    def register_dataset(self, name: str, files: Sequence[FileInfo] = (), *, rse: str | None = None) -> str:
        checked_name(name)
        files = checked_files(files, name)
        if rse is not None:
            self._check_rse(rse, "location RSE")
        with transaction(self.engine) as conn:
            now = store.utcnow()
            row = store.create_dataset(conn, name, rse, now)
            if row is None:  # it exists: fine only if empty with the same location
                row = store.require_dataset(conn, name, lock=True)
                count = store.file_count(conn, row.id)
                if count or row.location != rse:
                    raise DDMError(f"dataset {name} already exists (location {row.location}, {count} files)")
            store.add_files(conn, row, files, now)
            log.info("ddm register_dataset %s files=%d location=%s vuid=%s", name, len(files), rse, row.vuid)
            return row.vuid

    def register_files(self, name: str, files: Sequence[FileInfo], rse: str) -> None:
        checked_name(name)
        files = checked_files(files, name)
        self._check_rse(rse)
        with transaction(self.engine) as conn:
            now = store.utcnow()
            dataset = store.require_dataset(conn, name, lock=True)
            added = store.add_files(conn, dataset, files, now)
            store.record_replicas(conn, [f.guid for f in files], rse, now)
            reopened = store.reopen_done(conn, dataset.id, now) if added else 0
        log.info("ddm register_files %s added=%d of %d at %s reopened_subscriptions=%d",
                 name, len(added), len(files), rse, reopened)  # fmt: skip

    def subscribe(
        self, name: str, rse: str, *, source: str | None = None, callback: str | None = None
    ) -> Subscription:
        checked_name(name)
        self._check_rse(rse, "destination RSE")
        if source is not None:
            self._check_rse(source, "source RSE")
        if callback is not None:
            checked_callback(callback)
        with transaction(self.engine) as conn:
            now = store.utcnow()
            dataset = store.require_dataset(conn, name)
            values = dict(dataset_id=dataset.id, rse=rse, source=source, callback=callback,
                          state=SubscriptionState.queued.value, created=now, modified=now)  # fmt: skip
            stmt = insert(t.subscriptions).values(values)
            created = conn.execute(stmt.on_conflict_do_nothing().returning(t.subscriptions.c.id)).first()
            row = store.subscription_row(conn, name, rse)
            if row is None:  # the dataset was erased meanwhile
                raise DDMError(f"dataset {name} was erased while subscribing it to {rse}")
            if created:
                log.info("ddm subscribe %s → %s source=%s callback=%s", name, rse, source, callback)
            return store.subscription_info(conn, row)

    def subscription(self, name: str, rse: str) -> Subscription | None:
        checked_name(name)
        with transaction(self.engine) as conn:
            row = store.subscription_row(conn, name, rse)
            return None if row is None else store.subscription_info(conn, row)

    def close_dataset(self, name: str) -> None:
        checked_name(name)
        with transaction(self.engine) as conn:
            dataset = store.require_dataset(conn, name, lock=True)
            if dataset.state != DatasetState.closed.value:
                d = t.datasets
                conn.execute(sa.update(d).where(d.c.id == dataset.id).values(
                    state=DatasetState.closed.value, modified=store.utcnow()))  # fmt: skip
                log.info("ddm close_dataset %s", name)

    def erase_dataset(self, name: str) -> None:
        """Delete the dataset, its contents list, subscriptions and their transfers; files and
        replicas stay. Erasing a dataset that does not exist is a no-op (a retried erase)."""
        checked_name(name)
        with transaction(self.engine) as conn:
            erased = conn.execute(sa.delete(t.datasets).where(t.datasets.c.name == name)).rowcount
        log.info("ddm erase_dataset %s%s", name, "" if erased else " (did not exist)")

    def _check_rse(self, rse: str, role: str = "RSE") -> None:
        checked_name(rse, "RSE")
        rse_lookup.check_rse(rse_lookup.current(self.rses), rse, role)


def read_rse_map(engine: Engine, storage_root: str | Path) -> dict[str, tuple[str, str]]:
    """rse_map in a transaction of its own."""
    with transaction(engine) as conn:
        return rse_lookup.rse_map(conn, storage_root)


def checked_name(name: str, what: str = "dataset name") -> str:
    """DDMError unless name is a non-empty string of at most 255 characters without blanks."""
    if not isinstance(name, str) or not name:
        raise DDMError(f"{what} must be a non-empty string, not {name!r}")
    if len(name) > MAX_NAME:
        raise DDMError(f"{what} {name[:60]}… is {len(name)} characters long (at most {MAX_NAME})")
    if not _NAME.match(name):
        raise DDMError(f"{what} {name!r} contains white space or control characters")
    return name


def checked_files(files: Sequence[FileInfo], dataset: str) -> list[FileInfo]:
    """The files with normalised checksums and exact duplicates dropped; DDMError on bad input."""
    if len(files) > MAX_FILES:
        raise DDMError(f"{len(files)} files for dataset {dataset} in one call, at most {MAX_FILES}")
    out: dict[str, FileInfo] = {}
    for f in files:
        g = _checked_file(f, dataset)
        if out.setdefault(g.guid, g) != g:
            raise DDMError(f"GUID {g.guid} is given twice for dataset {dataset} with different attributes")
    return list(out.values())


def _checked_file(f: FileInfo, dataset: str) -> FileInfo:
    if not isinstance(f, FileInfo):
        raise DDMError(f"dataset {dataset}: expected FileInfo, got {type(f).__name__}")
    for field, value in (("guid", f.guid), ("scope", f.scope), ("lfn", f.lfn)):
        checked_name(value, f"{field} of a file of dataset {dataset}")
    if "/" in f.lfn:
        raise DDMError(f"dataset {dataset}: LFN {f.lfn!r} contains '/'")
    if not isinstance(f.fsize, int) or isinstance(f.fsize, bool) or f.fsize < 0:
        raise DDMError(f"dataset {dataset}: file {f.lfn} has size {f.fsize!r}, not a byte count")
    checksum = adler32_checksum(f.checksum)
    if checksum is None or not _CHECKSUM.match(checksum):
        raise DDMError(f"dataset {dataset}: file {f.lfn} has checksum {f.checksum!r}, not ad:<8 hex digits>")
    return dataclasses.replace(f, checksum=checksum)


def checked_callback(url: str) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or len(url) > MAX_URL:
        raise DDMError(f"callback must be an http(s) URL of at most {MAX_URL} characters, not {url!r}")
    return url
