"""Session fixtures: a private PostgreSQL, a minted PKI, the default schedconfig, and a real
panda server (gunicorn, HTTPS with client certificates + HTTP) started on free ports.

Set TEST_DATABASE_URL to use an existing, empty database instead of a private server.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from panda_server.db import localpg, migrate
from panda_server.db import tables as t
from tests.support import server as srv

ROOT = Path(__file__).resolve().parent.parent


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@pytest.fixture(scope="session")
def workdir():
    """A world-traversable scratch directory (the real pilot runs as another user)."""
    base = Path(tempfile.mkdtemp(prefix="pandatest-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def db_url(workdir):
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    base = workdir / "pg"
    localpg.init(base)
    url = localpg.start(base, localpg.free_port())
    try:
        yield url
    finally:
        localpg.stop(base, mode="immediate")


@pytest.fixture(scope="session")
def engine(db_url, pki):  # pki: jobs written through the engine are signed with its key
    eng = sa.create_engine(db_url, pool_size=10, max_overflow=10)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def pki(workdir):
    from panda_server import ca

    paths = ca.create_pki(workdir / "pki")
    # The test process stores and inserts jobs as the server does, signed with this PKI's
    # job-signing key (the test helpers take it from Settings.from_env().jobsign_key).
    os.environ["PANDA_PKI_DIR"] = str(paths.root)
    return paths


@pytest.fixture(scope="session")
def schedconfig_loaded(engine):
    from schedconfig import loader, sync

    directory = ROOT / "schedconfig" / "queues"
    queues, clouds = loader.load_queues(directory), loader.load_clouds(directory)
    with engine.begin() as conn:
        sync.sync(conn, queues, clouds, utcnow())
    return queues


LIVE_TABLES = ("jobsdefined4", "jobswaiting4", "jobsactive4", "jobsarchived4", "filestable4", "metatable",
               "jobparamstable", "job_output_report", "users", "pandalog", "datasets", "sitedata", "sitedata_bins",
               "pilotqueue", "servicelist", "schedinstance")  # fmt: skip


@pytest.fixture
def clean_db(engine, schedconfig_loaded):
    """Empty job-related tables before a test (schedconfig stays)."""
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE " + ", ".join(LIVE_TABLES)))
    return engine


@pytest.fixture(scope="session")
def server(workdir, engine, db_url, pki, schedconfig_loaded):
    with srv.running_server(workdir / "server", db_url=db_url, pki=pki) as s:
        yield s


@pytest.fixture
def live(server, clean_db):
    """The running server with empty job tables."""
    return server


__all__ = ["t", "utcnow"]


@pytest.fixture(scope="session")
def xrootd(workdir):
    """A real XRootD storage element (tests/support/xrootd.py), stopped at the end of the session."""
    from tests.support.xrootd import running_xrootd

    with running_xrootd(workdir / "xrootd") as server:
        yield server
