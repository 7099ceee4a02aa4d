"""updateJob's rules: which parameters become which columns, and how a report moves the job."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.errors import InvalidRequest
from panda_server.protocol.jobspec import JOB_INT_ATTRIBUTES, SpecError, coerce
from panda_server.protocol.states import (
    HEARTBEAT_STATES,
    PILOT_REPORTABLE,
    TERMINAL,
    JobStatus,
    can_move,
)  # fmt: skip
from panda_server.taskbuffer import jobs, reports, sitedata

log = logging.getLogger(__name__)

# updateJob parameter → job column (S08/S25): renamed ones, then those kept as they are.
RENAMED = {"node": "modificationHost", "cpuConversionFactor": "cpuConversion", "coreCount": "actualCoreCount"}
KEPT = frozenset(
    {
        "transExitCode", "pilotErrorCode", "pilotErrorDiag", "exeErrorCode", "exeErrorDiag",
        "cpuConsumptionTime", "cpuConsumptionUnit", "schedulerID", "pilotID", "batchID", "nEvents",
        "nInputFiles", "jobMetrics", "jobSubStatus", "pilotTiming", "computingElement",
        "cpu_architecture_level", "maxRSS", "maxVMEM", "maxSWAP", "maxPSS", "avgRSS", "avgVMEM",
        "avgSWAP", "avgPSS", "totRCHAR", "totWCHAR", "totRBYTES", "totWBYTES", "rateRCHAR",
        "rateWCHAR", "rateRBYTES", "rateWBYTES",
    }
)  # fmt: skip
TIMES = ("startTime", "endTime")
TEXT_LIMIT = 512  # free-text columns the pilot fills (pilotID, jobMetrics, …)
FINAL = frozenset({JobStatus.finished, JobStatus.failed})
COMMAND = ("commandToPilot",)  # all an update needs back from the row


def reported_state(raw: Any) -> JobStatus:
    try:
        state = JobStatus(str(raw))
    except ValueError:
        raise InvalidRequest(
            f"state must be one of {sorted(s.value for s in PILOT_REPORTABLE)}, got {raw!r}"
        ) from None
    if state not in PILOT_REPORTABLE:
        raise InvalidRequest(f"a pilot cannot set state {state.value}")
    return state


def _time(raw: Any) -> dt.datetime | None:
    if raw in (None, "", "NULL"):
        return None
    try:
        return dt.datetime.fromtimestamp(float(raw), dt.UTC).replace(tzinfo=None)
    except (TypeError, ValueError):
        return coerce("t", raw, frozenset(), times=frozenset({"t"}))


def columns_from_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Job columns from updateJob parameters; an unparsable metric is dropped and logged."""
    out: dict[str, Any] = {}
    for key, raw in params.items():
        column = RENAMED.get(key, key if key in KEPT else None)
        if column is None or raw in (None, ""):
            continue
        try:
            value = coerce(column, raw, JOB_INT_ATTRIBUTES)
        except SpecError as exc:
            log.warning("updateJob jobId=%s: ignoring %s (%s)", params.get("jobId"), key, exc)
            continue
        if isinstance(value, str):
            value = value[:TEXT_LIMIT] if not column.endswith("Diag") else value
        out[column] = value
    if isinstance(out.get("pilotErrorCode"), int):
        out["pilotErrorCode"] = abs(out["pilotErrorCode"])  # S25: negative codes stored positive
    for name in TIMES:
        try:
            value = _time(params.get(name))
        except SpecError:
            value = None
        if value is not None:
            out[name] = value
    return out


def apply(
    conn: Connection,
    panda_id: int,
    state: JobStatus,
    values: dict[str, Any],
    params: Mapping[str, Any],
    now: dt.datetime,
) -> str:
    """Store one update; returns the command for the pilot. May raise StateConflict (caller retries)."""
    command = _fast(conn, panda_id, state, values, params, now)
    if command is not None:
        return command
    info = jobs.status_of(conn, [panda_id]).get(panda_id)
    if info is not None:  # pilot statistics at the job's site (a retry after StateConflict counts again)
        sitedata.count_update(info, now)
    if info is None or info["table"] != "jobsactive4":
        return "tobekilled"  # S08: no row in jobsActive4 → tell the pilot to stop
    current = JobStatus(info["jobStatus"])
    attempt = params.get("attemptNr")
    if attempt not in (None, "", "NULL") and str(attempt) != str(info["attemptNr"]):
        log.warning("PandaID=%s update for attempt %s, job is at %s", panda_id, attempt, info["attemptNr"])
        return "tobekilled"  # S25: a stale attempt must stop
    _store_metadata(conn, panda_id, params.get("metaData"), now)
    if state in FINAL:
        return _final(conn, panda_id, current, state, values, params, info, now)
    target = state if state != current and can_move(current, state) else current
    if target == current:
        if current not in HEARTBEAT_STATES and current != JobStatus.sent:
            return info["commandToPilot"] or "NULL"
        row = jobs.update_fields(conn, panda_id, current, values, now=now, returning=COMMAND)
    else:
        if state == JobStatus.holding:
            values = {
                **values,
                "jobDispatcherErrorDiag": f"set to holding by the pilot at {now:%Y-%m-%d %H:%M:%S}",
            }
        row = jobs.set_status(conn, panda_id, target, now=now, expect=[current], values=values,
                              reason="by pilot", returning=COMMAND)  # fmt: skip
    return (row or info).get("commandToPilot") or "NULL"


# The usual reports and the states they may come from: tried first as one guarded statement
# (jobs.advance); anything else (a late heartbeat, a stale attempt, a job that moved on, job
# recovery of a holding job) takes the careful path below, which reads the job first.
FAST_SOURCES = {
    JobStatus.starting: frozenset({JobStatus.sent, JobStatus.starting}),
    JobStatus.running: frozenset({JobStatus.sent, JobStatus.starting, JobStatus.running}),
    JobStatus.holding: frozenset({JobStatus.sent, JobStatus.starting, JobStatus.running}),
}


def _fast(conn: Connection, panda_id: int, state: JobStatus, values: dict[str, Any],
          params: Mapping[str, Any], now: dt.datetime) -> str | None:  # fmt: skip
    target = JobStatus.holding if state in FINAL else state
    if target not in FAST_SOURCES or (state == JobStatus.holding):
        return None
    try:
        attempt = None if params.get("attemptNr") in (None, "", "NULL") else int(params["attemptNr"])
    except (TypeError, ValueError):
        return None
    if state in FINAL:
        values = {**values}
        values.setdefault("endTime", now)
    sources = FAST_SOURCES[target]
    row = jobs.advance(conn, panda_id, target, sources=sources, values=values, now=now, attempt_nr=attempt,
                       returning=("commandToPilot", "attemptNr", "prodSourceLabel", "computingSite"))  # fmt: skip
    if row is None:
        return None
    sitedata.count_update(row, now)  # pilot statistics at the job's site
    _store_metadata(conn, panda_id, params.get("metaData"), now)
    if state in FINAL:
        reports.save(conn, panda_id, pilot_status=state.value, data=params.get("xml"),
                     attempt_nr=row["attemptNr"], label=row["prodSourceLabel"], now=now)  # fmt: skip
    return row["commandToPilot"] or "NULL"


def _final(
    conn: Connection,
    panda_id: int,
    current: JobStatus,
    state: JobStatus,
    values: dict[str, Any],
    params: Mapping[str, Any],
    info: Mapping[str, Any],
    now: dt.datetime,
) -> str:
    """finished/failed are stored as holding with the report queued for the Adder."""
    if current in TERMINAL or (current == JobStatus.holding and reports.exists(conn, panda_id)):
        return "alreadydone"
    values = {**values}
    values.setdefault("endTime", now)
    if current == JobStatus.holding:
        row = jobs.update_fields(conn, panda_id, current, values, now=now, returning=COMMAND)
    else:
        row = jobs.set_status(conn, panda_id, JobStatus.holding, now=now, expect=[current], values=values,
                              reason=f"pilot reported {state.value}", returning=COMMAND)  # fmt: skip
    reports.save(conn, panda_id, pilot_status=state.value, data=params.get("xml"),
                 attempt_nr=info["attemptNr"], label=info["prodSourceLabel"], now=now)  # fmt: skip
    return (row or info).get("commandToPilot") or "NULL"


def _store_metadata(conn: Connection, panda_id: int, text: Any, now: dt.datetime) -> None:
    if text in (None, "", "NULL"):
        return
    m = t.metatable
    stmt = insert(m).values(PandaID=panda_id, modificationTime=now, metaData=str(text))
    conn.execute(stmt.on_conflict_do_update(index_elements=[m.c.PandaID],
                                            set_={"metaData": str(text), "modificationTime": now}))  # fmt: skip
