"""What the data-service stages share: the DDM backend, the callback URL, the signing key, and
the site → RSE / cloud → T1 lookups they all need."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from panda_server.db import tables as t
from panda_server.ddm.interface import DDM
from panda_server.settings import Settings
from panda_server.taskbuffer import sites

CALLBACK_PATH = "/server/panda/datasetCompleted"


@dataclasses.dataclass(frozen=True)
class DataService:
    ddm: DDM
    callback: str  # the datasetCompleted URL DDM calls when a subscription is done
    signing_key: Path  # to re-sign a job whose signed file fields the setupper filled
    settings: Settings


def make(engine: Engine, settings: Settings) -> DataService:
    from panda_server.ddm.factory import make_ddm

    callback = settings.ddm_callback_url or f"{settings.url_ssl}{CALLBACK_PATH}"
    return DataService(make_ddm(engine, settings), callback, settings.jobsign_key, settings)


def rse_of(conn: Connection, siteid: str | None) -> str:
    """The RSE (DDM endpoint) of a PanDA site; '' if the site is unknown."""
    return sites.ddm_endpoint(conn, siteid) if siteid else ""


def tier1_of(conn: Connection, cloud: str | None) -> str | None:
    """The siteid of a cloud's T1 (cloudconfig tier1)."""
    if not cloud:
        return None
    c = t.cloudconfig
    return conn.execute(sa.select(c.c.tier1).where(c.c.name == cloud)).scalar()


def is_analysis_site(siteid: str | None) -> bool:
    return bool(siteid) and siteid.startswith("ANALY_")
