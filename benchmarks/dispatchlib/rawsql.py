"""The raw-SQL baseline: the four statements of a lifecycle, four commits, psycopg directly.

claim (FOR UPDATE SKIP LOCKED, activated → sent), starting, running, final (holding + output report).
The WHERE clauses are the server's; the updates return only what the pilot needs (commandToPilot).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from .common import CPU_UNIT, MAX_CONSECUTIVE_ERRORS, PILOT_ID, utcnow
from .workers import WorkerRun

RAW_CLAIM = """
UPDATE jobsactive4 SET "modificationHost" = %(node)s, "computingElement" = %(site)s,
       "schedulerID" = 'unknown', "jobStatus" = 'sent', "modificationTime" = %(now)s,
       "stateChangeTime" = %(now)s, "startTime" = %(now)s
 WHERE "PandaID" = (SELECT "PandaID" FROM jobsactive4
                     WHERE "jobStatus" = 'activated' AND "computingSite" = %(site)s
                       AND "commandToPilot" IS NULL AND "prodSourceLabel" = ANY(%(labels)s)
                       AND ("minRamCount" IS NULL OR "minRamCount" = 0 OR "minRamCount" <= %(mem)s)
                       AND ("maxDiskCount" IS NULL OR "maxDiskCount" = 0 OR "maxDiskCount" <= %(disk)s)
                     ORDER BY "currentPriority" DESC NULLS LAST, "PandaID"
                     LIMIT 1 FOR UPDATE SKIP LOCKED)
   AND "jobStatus" = 'activated'
RETURNING *"""
RAW_STEP = """
UPDATE jobsactive4 SET "jobStatus" = %(new)s, "modificationTime" = %(now)s, "stateChangeTime" = %(now)s,
       "modificationHost" = %(node)s, "schedulerID" = 'unknown', "pilotID" = %(pilot_id)s,
       "actualCoreCount" = 1, "cpuConsumptionUnit" = %(unit)s, "cpuConsumptionTime" = %(cpu)s,
       "cpu_architecture_level" = 'x86-64-v3'
 WHERE "PandaID" = %(id)s AND "jobStatus" = %(old)s
RETURNING "commandToPilot" """
RAW_FINAL = """
UPDATE jobsactive4 SET "jobStatus" = 'holding', "modificationTime" = %(now)s, "stateChangeTime" = %(now)s,
       "endTime" = %(now)s, "pilotTiming" = '0|0|1|0|1|0', "transExitCode" = '0', "pilotErrorCode" = 0,
       "pilotErrorDiag" = '', "exeErrorCode" = 0, "exeErrorDiag" = '', "nEvents" = 10,
       "cpuConsumptionTime" = 2, "jobMetrics" = 'coreCount=1 nEvents=10 workDirSize=4096'
 WHERE "PandaID" = %(id)s AND "jobStatus" = 'running'
RETURNING "commandToPilot" """
RAW_REPORT = """
INSERT INTO job_output_report ("PandaID", "jobStatus", data, "attemptNr", "prodSourceLabel", "timeStamp",
                               "lockedBy", "lockedTime")
VALUES (%(id)s, 'finished', %(xml)s, %(attempt)s, %(label)s, %(now)s, NULL, NULL)
ON CONFLICT ("PandaID") DO UPDATE SET "jobStatus" = excluded."jobStatus", data = excluded.data,
       "attemptNr" = excluded."attemptNr", "prodSourceLabel" = excluded."prodSourceLabel",
       "timeStamp" = excluded."timeStamp", "lockedBy" = NULL, "lockedTime" = NULL"""


def raw_config(db_url: str, site: str, duration: float, jobs: int) -> dict[str, Any]:
    """What each raw-SQL worker needs: a libpq conninfo instead of the SQLAlchemy URL."""
    import sqlalchemy.engine.url as sa_url

    from panda_server.protocol import dispatch

    u = sa_url.make_url(db_url)
    conninfo = u.set(drivername="postgresql").render_as_string(hide_password=False)
    return {"conninfo": conninfo, "site": site, "duration": duration, "max_lifecycles": jobs + 1,
            "labels": list(dispatch.eligible_labels("managed"))}  # fmt: skip


def _lifecycle(conn, cfg: dict[str, Any], node: str) -> bool:
    """Claim a job and take it to holding with its report; False when there is none left to claim."""
    now = utcnow()
    row = conn.execute(RAW_CLAIM, {"node": node, "site": cfg["site"], "now": now, "mem": 24105,
                                   "disk": 20000, "labels": cfg["labels"]}).fetchone()  # fmt: skip
    conn.commit()
    if row is None:
        return False
    panda_id = row[0]
    step = {"id": panda_id, "node": node, "pilot_id": PILOT_ID, "unit": CPU_UNIT}
    for old, new, cpu in (("sent", "starting", None), ("starting", "running", 1)):
        got = conn.execute(RAW_STEP, {**step, "old": old, "new": new, "cpu": cpu,
                                      "now": utcnow()}).fetchone()  # fmt: skip
        conn.commit()
        if got is None:
            raise RuntimeError(f"PandaID={panda_id} not in {old}")
    now = utcnow()
    if conn.execute(RAW_FINAL, {"id": panda_id, "now": now}).fetchone() is None:
        raise RuntimeError(f"PandaID={panda_id} not running")
    xml = json.dumps({f"log.{panda_id}.job.log.tgz": {"guid": str(uuid.uuid4()), "fsize": 8035,
                                                      "adler32": "eabec616"}})  # fmt: skip
    conn.execute(RAW_REPORT, {"id": panda_id, "xml": xml, "attempt": 1, "label": "managed", "now": now})
    conn.commit()
    return True


def _step(conn, run: WorkerRun, node: str) -> bool:
    """One lifecycle in the timed loop; False to stop (no job left, or too many errors)."""
    try:
        if not _lifecycle(conn, run.cfg, node):
            return False
        run.result["lifecycles"] += 1
    except Exception as exc:  # noqa: BLE001 - counted and reported
        with contextlib.suppress(Exception):
            conn.rollback()
        run.error(f"{type(exc).__name__}: {exc}")
        if run.result["errors"] >= MAX_CONSECUTIVE_ERRORS:
            return False
    return True


def raw_worker(cfg: dict[str, Any], index: int, barrier: Any, out: Any, release: Any) -> None:
    """One psycopg worker; puts one result dict on `out`. Runs in a thread or a process."""
    import psycopg

    run = WorkerRun(cfg, index, "raw")
    node = f"rawnode-{index:03d}"
    sent = False
    try:
        with psycopg.connect(cfg["conninfo"], application_name="panda-bench-raw") as conn:
            run.timed_loop(barrier, lambda: _step(conn, run, node))
            # Report, then keep the connection (and so its backend's CPU counters) until the
            # main process has read the postgres CPU times
            out.put(run.result)
            sent = True
            release.wait(timeout=120)
    except Exception as exc:  # noqa: BLE001 - reported, never hangs the run
        if not sent:
            run.count_error(f"raw {index} crashed: {type(exc).__name__}: {exc}", bounded=False)
        run.release_others(barrier)
    finally:
        if not sent:
            out.put(run.result)
