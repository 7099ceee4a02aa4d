"""Fixtures for the data-service tests: the default topology's directory SEs under a private
storage root, the real local DDM on them, input data placed on an SE, and the daemons' cycles
run in-process with an explicit clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from panda_server.dataservice import activator, adder, finisher, setupper, waker
from panda_server.dataservice.context import CALLBACK_PATH, DataService
from panda_server.ddm.interface import FileInfo
from panda_server.ddm.local import LocalDDM
from panda_server.ddm.local import agent as ddm_agent
from panda_server.ddm.local.rses import rse_map
from panda_server.settings import Settings
from pilot.infosys import rucio_path

DDM_TABLES = "ddm.transfers, ddm.subscriptions, ddm.replicas, ddm.dataset_files, ddm.files, ddm.datasets"


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


@dataclasses.dataclass
class Grid:
    """The data service over the default topology, driven cycle by cycle."""

    engine: object
    settings: Settings
    svc: DataService
    storage: Path
    now: dt.datetime

    def tick(self, seconds: float = 60) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now

    def se_file(self, rse: str, scope: str, lfn: str) -> Path:
        return self.storage / rse / rucio_path(scope, lfn)

    def seed(self, dataset: str, rse: str, files: dict[str, bytes], scope: str = "mc") -> dict[str, FileInfo]:
        """Write files onto an SE at their Rucio paths and register them (dataset created if new)."""
        infos = {}
        for lfn, data in files.items():
            path = self.se_file(rse, scope, lfn)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            infos[lfn] = FileInfo(lfn, str(uuid.uuid4()), scope, len(data), f"ad:{adler32(data)}")
        if self.svc.ddm.get_dataset(dataset) is None:
            self.svc.ddm.register_dataset(dataset, rse=rse)
        self.svc.ddm.register_files(dataset, list(infos.values()), rse)
        return infos

    def setupper(self):
        return setupper.run_once(self.engine, self.settings, self.now, svc=self.svc)

    def activator(self):
        return activator.run_once(self.engine, self.settings, self.now, svc=self.svc)

    def adder(self):
        return adder.run_once(self.engine, self.settings, self.now, svc=self.svc)

    def finisher(self):
        return finisher.run_once(self.engine, self.settings, self.now, svc=self.svc)

    def waker(self):
        return waker.run_once(self.engine, self.settings, self.now, svc=self.svc)

    def agent(self, cycles: int = 1):
        out = None
        for _ in range(cycles):
            out = ddm_agent.run_once(self.engine, self.settings, self.now)
        return out


@pytest.fixture
def grid(clean_db, pki, tmp_path) -> Grid:
    """Empty job and DDM tables; default schedconfig; SEs under tmp_path; callbacks to a closed port."""
    with clean_db.begin() as conn:
        conn.execute(sa.text("TRUNCATE " + DDM_TABLES))
    storage = tmp_path / "storage"
    settings = Settings(pki_dir=pki.root, storage_root=storage, ddm_backoff=10.0, ddm_callback_attempts=1)

    def rses():
        with clean_db.connect() as conn:
            return rse_map(conn, storage)

    callback = f"https://127.0.0.1:9{CALLBACK_PATH}"  # nobody listens: only the polls settle
    svc = DataService(LocalDDM(clean_db, rses), callback, settings.jobsign_key, settings)
    return Grid(clean_db, settings, svc, storage, dt.datetime.now(dt.UTC).replace(tzinfo=None))


def payload(n: int = 3000) -> bytes:
    return os.urandom(n)
