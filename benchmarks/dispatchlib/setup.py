"""Set-up that is not timed: the database, schedconfig, the server's settings, the jobs and the check."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import ROOT, utcnow

JOB_TABLES = ("jobsactive4", "jobsarchived4", "jobsdefined4", "jobswaiting4", "filestable4",
              "jobparamstable", "metatable", "job_output_report")  # fmt: skip
VACUUM_TABLES = ("jobsactive4", "filestable4", "jobparamstable", "job_output_report")


@contextlib.contextmanager
def database(db_url: str | None, base: Path) -> Iterator[tuple[str, Path | None]]:
    """(SQLAlchemy URL, private cluster dir or None): `db_url` as given, or a private cluster under `base`."""
    if db_url:
        yield db_url, None
        return
    from panda_server.db import localpg

    pg = base / "pg"
    localpg.init(pg)
    try:
        url = localpg.start(pg, localpg.free_port())
        yield url, pg
    finally:
        localpg.stop(pg, mode="immediate")


def server_settings(args) -> dict[str, Any]:
    """The server's size and log level (the options, else `Settings`), as the report shows them."""
    from panda_server.settings import Settings

    s = Settings()
    threads = args.threads or s.threads
    return {"workers": args.workers or s.workers, "threads": threads, "worker_class": "gthread",
            "keepalive_s": 30, "db_pool_size": threads, "log_level": args.log_level or s.log_level,
            "claim_attempts": s.claim_attempts,
            "tls": "mTLS, CERT_OPTIONAL + VERIFY_ALLOW_PROXY_CERTS, RSA-2048 host key, keep-alive"}  # fmt: skip


def prepare_db(engine, site: str) -> None:
    """Migrate, and load the default schedconfig unless the site is already defined."""
    import sqlalchemy as sa

    from panda_server.db import migrate
    from panda_server.db import tables as t
    from schedconfig import loader, sync

    migrate.upgrade(engine)
    with engine.begin() as conn:
        known = conn.execute(sa.select(t.schedconfig.c.siteid).where(t.schedconfig.c.siteid == site)).first()
        if known is None:
            directory = ROOT / "schedconfig" / "queues"
            sync.sync(conn, loader.load_queues(directory), loader.load_clouds(directory), utcnow())
        status = conn.execute(
            sa.select(t.schedconfig.c.status).where(t.schedconfig.c.siteid == site)
        ).scalar()
    if status is None:
        raise SystemExit(f"site {site} is not in schedconfig (default queues: schedconfig/queues/)")
    if status not in ("online", "test", "brokeroff"):
        print(f"warning: site {site} has status {status!r}", file=sys.stderr)


def _next_ids(conn, sequence: str, n: int) -> list[int]:
    import sqlalchemy as sa

    query = sa.text(f"SELECT nextval('{sequence}') FROM generate_series(1, :n)")
    return conn.execute(query, {"n": n}).scalars().all()


def insert_jobs(engine, n: int, site: str, tag: str) -> list[int]:
    """n activated jobs for `site` (with a log file and parameters), in one transaction.

    Each is signed as store_jobs signs jobs, with the key of PANDA_PKI_DIR (the run's PKI)."""
    from panda_server.db import tables as t
    from panda_server.settings import Settings
    from panda_server.taskbuffer import rows, store
    from tests.support.jobs import simple_job

    if n <= 0:
        return []
    now = utcnow()
    key = Settings.from_env().jobsign_key
    template = simple_job(site, label="managed", priority=100, params="bench run")
    template.prodUserID = "/DC=org/DC=pandawms/OU=Users/CN=Jane Doe"
    base = rows.job_values(template)
    log_tpl = template.Files[0].to_dict()
    with engine.begin() as conn:
        ids = _next_ids(conn, "jobsdefined4_pandaid_seq", n)
        row_ids = _next_ids(conn, "filestable4_row_id_seq", n)
        jobs, params, files = [], [], []
        for panda_id, row_id in zip(ids, row_ids, strict=True):
            jobs.append({**base, "PandaID": panda_id, "jobName": f"bench.{tag}.{panda_id}", "jobDefinitionID": 1,
                         "jobStatus": "activated", "creationTime": now, "modificationTime": now,
                         "stateChangeTime": now, "attemptNr": 1, "creationHost": "benchmark"})  # fmt: skip
            lfn, guid = f"log.{panda_id:05d}.job.log.tgz", str(uuid.uuid4())
            # each job is signed with its own log file, as store_jobs would sign it
            template.PandaID, template.Files[0].lfn, template.Files[0].GUID = panda_id, lfn, guid
            params.append({"PandaID": panda_id, "modificationTime": now, "jobParameters": "bench run",
                           "jobSignature": store.job_signature(template, key)})  # fmt: skip
            files.append({**log_tpl, "rowID": row_id, "PandaID": panda_id, "lfn": lfn, "GUID": guid,
                          "status": "unknown", "modificationTime": now})  # fmt: skip
        conn.execute(t.jobsactive4.insert(), jobs)
        conn.execute(t.jobparamstable.insert(), params)
        conn.execute(t.filestable4.insert(), files)
    return list(ids)


def delete_jobs(engine, ids: list[int], *, only_activated: bool = False) -> int:
    """Delete these jobs' rows from every job table (with only_activated: of the jobs still activated)."""
    import sqlalchemy as sa

    from panda_server.db import tables as t

    if not ids:
        return 0
    with engine.begin() as conn:
        if only_activated:
            gone = conn.execute(sa.text('DELETE FROM jobsactive4 WHERE "PandaID" = ANY(:ids) AND '
                                        "\"jobStatus\" = 'activated' RETURNING \"PandaID\""),
                                {"ids": ids}).scalars().all()  # fmt: skip
            ids = list(gone)
            if not ids:
                return 0
        n = 0
        for table in JOB_TABLES:
            tb = t.metadata.tables[table]
            n += conn.execute(sa.delete(tb).where(tb.c.PandaID.in_(ids))).rowcount
        return n


def verify(engine, ids: list[int], expected: int) -> dict[str, Any]:
    """Did every completed lifecycle leave its job in holding with the pilot's report (for the Adder)?"""
    import sqlalchemy as sa

    with engine.connect() as conn:
        states = dict(conn.execute(sa.text('SELECT "jobStatus", count(*) FROM jobsactive4 WHERE "PandaID" = ANY(:ids) '
                                           'GROUP BY "jobStatus"'), {"ids": ids}).all())  # fmt: skip
        reports = conn.execute(sa.text('SELECT count(*) FROM job_output_report WHERE "PandaID" = ANY(:ids) '
                                       "AND \"jobStatus\" = 'finished'"), {"ids": ids}).scalar_one()  # fmt: skip
    ok = states.get("holding", 0) == expected and reports == expected
    return {"ok": ok, "expected": expected, "holding": states.get("holding", 0), "reports": reports,
            "job_states": states}  # fmt: skip


def vacuum(engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in VACUUM_TABLES:
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
