"""What the broker decides from, and what it decides (pure data; no DB, no I/O).

The setupper builds a `Snapshot` from schedconfig, cloudconfig, the job counts, `sitedata` and
DDM replica lookups, hands it with the jobs to `brokerage.broker.schedule`, and applies the
returned `Assignment`s. reference/panda-server.md §4 describes the classic algorithm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class SiteInfo:
    """One PanDA site (schedconfig, by siteid)."""

    siteid: str
    cloud: str
    tier: str  # T1, T2, T3
    type: str  # production or analysis (ANALY_*)
    status: str  # online, offline, brokeroff, test
    ddm: str  # the site's RSE (DDM endpoint)
    releases: tuple[str, ...] = ()  # installed releases; empty = any
    cmtconfigs: tuple[str, ...] = ()  # empty = any
    memory: int = 0  # MB per slot; 0 = no limit
    maxinputsize: int = 0  # MB; 0 = no limit
    space: int = 0  # free GB on the SE; 0 = unknown (not checked)


@dataclasses.dataclass(frozen=True)
class CloudInfo:
    name: str
    tier1: str  # siteid of the T1
    weight: float = 2.0  # cloudT1Weight: the T1's bonus for jobs with many inputs
    status: str = "online"


@dataclasses.dataclass(frozen=True)
class SiteStats:
    """Jobs per state at a site (S08 getJobStatistics: defined+active tables)."""

    assigned: int = 0
    activated: int = 0
    running: int = 0


@dataclasses.dataclass(frozen=True)
class PilotStats:
    """Pilot requests at a site over the broker's window (sitedata, 3 h, flag production)."""

    getJob: int = 0
    updateJob: int = 0


@dataclasses.dataclass(frozen=True)
class BrokerJob:
    PandaID: int
    prodSourceLabel: str
    computingSite: str | None = None  # preset: kept (relocationFlag jobs, analysis jobs sent to a site)
    cloud: str | None = None
    prodDBlock: str | None = None
    AtlasRelease: str | None = None  # "Atlas-14.2.20" or several lines
    cmtConfig: str | None = None
    minRamCount: int = 0  # MB
    maxDiskCount: int = 0  # MB
    inputs: tuple[str, ...] = ()  # GUIDs of the input files (keys of Snapshot.replicas)
    input_bytes: int = 0

    @property
    def is_analysis(self) -> bool:
        return self.prodSourceLabel in ("user", "panda")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    sites: Mapping[str, SiteInfo]
    clouds: Mapping[str, CloudInfo]
    stats: Mapping[str, SiteStats]  # missing site = no jobs
    pilots: Mapping[str, PilotStats]  # empty mapping = no sitedata at all: the no-pilot rule is off
    replicas: Mapping[str, frozenset[str]]  # {guid: RSEs with a replica}


@dataclasses.dataclass(frozen=True)
class Assignment:
    PandaID: int
    site: str | None  # None: the job cannot be brokered (error says why)
    bunch: int  # jobs with the same bunch number share one dispatch block
    reason: str  # one line: the choice and why, which sites were skipped and why
    error_code: int | None = None  # brokerageErrorCode when site is None
    error_diag: str | None = None
    cloud: str | None = None  # the site's cloud (or the cloud brokered in); for jobs without one
