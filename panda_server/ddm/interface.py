"""The data service's view of DDM: the few verbs PanDA needs (reference/panda-server.md §5).

The data service (setupper, activator, adder, closer, finisher, waker) talks to DDM only
through `DDM`; `panda_server/ddm/local/` is the built-in asynchronous backend (a catalog in the
PanDA database's `ddm` schema plus a transfer agent); a Rucio backend would implement the same
verbs. Names follow DQ2/Rucio: a storage element is an RSE, named by its DDM endpoint
(schedconfig `ddm`, e.g. CLOUDA_T1_DATADISK). Every verb does its own transaction: DDM is a
separate service and never shares the caller's.

Verbs (DQ2 name → here):
  queryDatasetByName       → get_dataset(name)
  listFilesInDataset       → list_files(name)
  listDatasetReplicas /    → list_replicas(guids)
    file replicas
  registerNewDataset +     → register_dataset(name, files, rse=...)
    registerDatasetLocation
  registerFilesInDatasets  → register_files(name, files, rse)
  registerDatasetSubscription (with the DATASET_COMPLETE_EVENT callback)
                           → subscribe(name, rse, source=..., callback=...)
  listSubscriptions        → subscription(name, rse)
  freezeDataset            → close_dataset(name)
  eraseDataset             → erase_dataset(name)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Protocol


class DDMError(Exception):
    """A DDM verb failed (the message says which dataset/file and why)."""


class DatasetNotFound(DDMError):
    """The dataset does not exist in DDM."""


class DatasetState(StrEnum):
    open = "open"  # files may still be added
    closed = "closed"  # frozen: no more files


class SubscriptionState(StrEnum):
    queued = "queued"  # waiting for the transfer agent
    active = "active"  # transfers in progress (some may be waiting for a retry)
    done = "done"  # every file of the dataset has a verified replica at the destination
    failed = "failed"  # the agent gave up on at least one file (`error` says which and why)


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """One file as DDM knows it. checksum is 'ad:<8 hex>' (adler32) as PanDA's file rows keep it."""

    lfn: str
    guid: str
    scope: str
    fsize: int
    checksum: str


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    vuid: str
    state: DatasetState
    nfiles: int


@dataclasses.dataclass(frozen=True)
class Subscription:
    dataset: str
    rse: str  # destination
    state: SubscriptionState
    files_total: int
    files_done: int  # files with a verified replica at rse
    error: str | None = None  # the last error (for failed: why the agent gave up)


class DDM(Protocol):
    def get_dataset(self, name: str) -> DatasetInfo | None:
        """The dataset, or None if DDM has no dataset of that name."""

    def list_files(self, name: str) -> list[FileInfo]:
        """The files of a dataset, in registration order. DatasetNotFound if there is none."""

    def list_replicas(self, guids: Iterable[str]) -> dict[str, frozenset[str]]:
        """{guid: RSEs holding a verified replica}; GUIDs DDM does not know are left out."""

    def register_dataset(self, name: str, files: Sequence[FileInfo] = (), *, rse: str | None = None) -> str:
        """Create an open dataset with `files` (registered as files if new); returns its vuid.

        `rse`: the dataset's location (registerDatasetLocation); the files get no replica from it.
        Registering an existing name is an error (DDMError) unless it is empty and has the same
        location, which makes a retried setupper idempotent.
        """

    def register_files(self, name: str, files: Sequence[FileInfo], rse: str) -> None:
        """Add files to an open dataset and record their replicas at `rse` (where the pilot wrote them).

        Adding a file already in the dataset is a no-op if its GUID, size and checksum agree, a
        DDMError otherwise. An open subscription of the dataset picks the new files up.
        """

    def subscribe(
        self, name: str, rse: str, *, source: str | None = None, callback: str | None = None
    ) -> Subscription:
        """Ask DDM to bring every file of the dataset to `rse` (asynchronously).

        `source`: the preferred source RSE (any RSE with a replica otherwise). `callback`: URL
        DDM calls (GET, with `vuid=<vuid>&site=<rse>` appended) each time the subscription becomes
        done. Subscribing again to the same (dataset, rse) returns the existing subscription.
        """

    def subscription(self, name: str, rse: str) -> Subscription | None:
        """The subscription's state (the polling fallback for a lost callback)."""

    def close_dataset(self, name: str) -> None:
        """Freeze the dataset (no more files). Closing a closed dataset is a no-op."""

    def erase_dataset(self, name: str) -> None:
        """Delete the dataset and its subscriptions (not the files' replicas)."""


def adler32_checksum(value: str | None) -> str | None:
    """'ad:<hex>' from 'ad:<hex>', 'adler32:<hex>' or a bare 8-digit hex; None for md5 or nothing."""
    if not value:
        return None
    kind, sep, hexpart = value.partition(":")
    if not sep:
        kind, hexpart = "ad", value
    if kind.lower() not in ("ad", "adler32"):
        return None
    return f"ad:{hexpart.lower().zfill(8)}"


RSEMap = Mapping[str, tuple[str, str]]  # {rse: (endpoint, path)}, schedconfig.export.se_location
