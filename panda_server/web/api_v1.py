"""/api/v1/<module>/<method>: the JSON API of the current panda-client (S25 pandaserver/api/v1).

Envelope {"success", "message", "data"}; datetimes as {"__datetime__": iso}. Bodies: JSON for
POST with Content-Type application/json (gzip accepted with or without Content-Encoding),
else form; GET uses the query string, with repeated keys as lists.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, request

from panda_server.errors import InvalidRequest, PandaError
from panda_server.jobdispatcher import dispatcher
from panda_server.protocol import wire
from panda_server.protocol.codes import StatusCode
from panda_server.taskbuffer import jobs as jobrows
from panda_server.taskbuffer import sites
from panda_server.userif import service
from panda_server.web import common

log = logging.getLogger(__name__)
bp = Blueprint("api_v1", __name__)
bp.before_request(common.refuse_oversized_body)


class Failure(Exception):
    """A use-case answer with success=false but HTTP 200 (e.g. no jobs)."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.data = data


def params() -> dict[str, Any]:
    return common.checked(_params())


def _params() -> dict[str, Any]:
    if request.method == "GET":
        return {k: (v if len(v) > 1 else v[0]) for k, v in request.args.lists()}
    raw = request.get_data(cache=False)
    limit = common.settings().max_body_bytes
    try:
        if (request.content_type or "").startswith("application/json"):
            if raw[:2] == wire.GZIP_MAGIC:
                raw = wire.gunzip_capped(raw, limit)
            data = json.loads(raw or b"{}") if raw.strip() else {}
            if not isinstance(data, dict):
                raise InvalidRequest("the JSON body must be an object of parameters")
            return data
        return wire.decode_body(raw, request.content_type, limit=limit)
    except (wire.BodyError, ValueError) as exc:
        raise InvalidRequest(f"unreadable body: {exc}") from None


def _ids(p: Mapping[str, Any], key: str = "job_ids") -> list[int]:
    return service.parse_ids(p.get(key), common.settings().max_ids_per_query)


def _submit(conn, p):
    text = p.get("jobs")
    if not text:
        raise InvalidRequest("jobs is required: a JSON string with a list of job states")
    if not isinstance(text, str):
        text = json.dumps(text)
    try:
        jobs = wire.load_job_states(text, max_jobs=common.settings().max_jobs_per_submit)
    except wire.BodyError as exc:  # malformed states: a clear answer, not a 500
        raise InvalidRequest(str(exc)) from None
    stored = service.submit_jobs(conn, jobs, common.caller(), common.utcnow(),
                                 signing_key=common.settings().jobsign_key)  # fmt: skip
    by_id = {j.PandaID: j for j in jobs}
    return [[pid, def_id, {"jobsetID": by_id[pid].jobsetID}] for pid, def_id, _ in stored]


def _get_status(conn, p):
    ids = _ids(p)
    found = jobrows.status_of(conn, ids)
    return [
        {"status": found[i]["jobStatus"], "command": found[i]["commandToPilot"] or "NULL"}
        if i in found
        else None
        for i in ids
    ]


def _describe(conn, p, with_archive):
    jobs = service.get_jobs(conn, _ids(p), with_archive=with_archive)
    return [None if j is None else j.to_dict() for j in jobs]


# pilot/update_job snake_case → updateJob parameter names
_UPDATE_NAMES = {
    "job_id": "jobId", "job_status": "state", "job_output_report": "xml", "meta_data": "metaData",
    "pilot_error_code": "pilotErrorCode", "pilot_error_diag": "pilotErrorDiag",
    "trans_exit_code": "transExitCode", "exe_error_code": "exeErrorCode", "exe_error_diag": "exeErrorDiag",
    "cpu_consumption_time": "cpuConsumptionTime", "cpu_consumption_unit": "cpuConsumptionUnit",
    "cpu_conversion_factor": "cpuConversionFactor", "scheduler_id": "schedulerID", "pilot_id": "pilotID",
    "site_name": "siteName", "node": "node", "attempt_nr": "attemptNr", "start_time": "startTime",
    "end_time": "endTime", "n_events": "nEvents", "batch_id": "batchID", "core_count": "coreCount",
    "pilot_timing": "pilotTiming", "job_metrics": "jobMetrics",
}  # fmt: skip
_ACQUIRE_NAMES = {
    "site_name": "siteName", "memory": "mem", "disk_space": "diskSpace", "prod_source_label": "prodSourceLabel",
    "node": "node", "computing_element": "computingElement", "prod_user_id": "prodUserID",
    "n_jobs": "nJobs", "scheduler_id": "schedulerID",
}  # fmt: skip


def _rename(p: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    for key, value in p.items():
        if isinstance(value, bool):
            value = "True" if value else "False"
        out[names.get(key, key)] = value
    return out


def _acquire(conn, p):
    legacy = _rename(p, _ACQUIRE_NAMES)
    legacy.setdefault("nJobs", 1)
    reply = dispatcher.get_job(conn, legacy, common.caller(), common.utcnow())
    if reply["StatusCode"] == StatusCode.NO_JOBS:
        raise Failure("No jobs in PanDA", {"StatusCode": int(StatusCode.NO_JOBS), "jobs": []})
    return {"StatusCode": 0, "jobs": reply["jobs"]}


def _update(conn, p):
    reply = dispatcher.update_job(conn, _rename(p, _UPDATE_NAMES), common.caller(), common.utcnow())
    return {k: int(v) if k == "StatusCode" else v for k, v in reply.items()}


def _pilot_status(conn, p):
    ids = _ids(p)
    found = jobrows.status_of(conn, ids)
    return [
        {"job_id": i, "status": found[i]["jobStatus"] if i in found else "not found",
         "attempt_number": found[i]["attemptNr"] if i in found else 0}
        for i in ids
    ]  # fmt: skip


METHODS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "system/is_alive": lambda p: "alive=yes",
    "metaconfig/get_site_specs": common.in_transaction(
        lambda c, p: sites.site_specs(c, p.get("type") or "all")
    ),
    "job/submit": common.in_transaction(_submit),
    "job/get_status": common.in_transaction(_get_status),
    "job/get_description": common.in_transaction(lambda c, p: _describe(c, p, False)),
    "job/get_description_incl_archive": common.in_transaction(lambda c, p: _describe(c, p, True)),
    "job/kill": common.in_transaction(
        lambda c, p: service.kill_jobs(c, _ids(p), common.caller(), p.get("code"), common.utcnow())
    ),
    "job/reassign": common.in_transaction(
        lambda c, p: service.reassign_jobs(c, _ids(p), common.caller(), common.utcnow())
    ),
    "pilot/acquire_jobs": common.in_transaction(_acquire),
    "pilot/update_job": common.in_transaction(_update),
    "pilot/get_job_status": common.in_transaction(_pilot_status),
}


def _envelope(success: bool, message: str, data: Any, status: int = 200) -> Response:
    return Response(wire.v1_envelope(success, message, data), status=status, mimetype="application/json")


@bp.route("/api/v1/<module>/<method>", methods=["GET", "POST"])
def call(module: str, method: str) -> Response:
    key = f"{module}/{method}"
    handler = METHODS.get(key)
    if handler is None:
        return _envelope(False, f"API {key} is not known", None, 404)
    try:
        policy = common.enforce(f"/api/v1/{key}")
        if request.method not in policy.methods:
            return _envelope(False, f"{key} accepts {', '.join(policy.methods)}", None, 405)
        data = handler(params())
    except Failure as exc:
        return _envelope(False, str(exc), exc.data)
    except PandaError as exc:
        log.info("%s refused for %s: %s", key, common.caller().name, exc.message)
        return _envelope(False, exc.message, None, exc.http_status)
    return _envelope(True, "", data)
