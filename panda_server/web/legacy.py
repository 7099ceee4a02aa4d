"""/server/panda/<method>: the classic surface the real pilot and old clients speak.

Params come from the query (GET), form, or JSON body that may be gzipped without a header.
Replies are urlencoded unless Accept asks for JSON (S25 acceptJson). Methods that returned
pickles in 2008 return JSON text instead (we never unpickle). Unknown methods get 403.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, request

from panda_server.dataservice import context as dataservice_context
from panda_server.dataservice import ddmhandler
from panda_server.errors import InvalidRequest, PandaError
from panda_server.jobdispatcher import dispatcher
from panda_server.protocol import wire
from panda_server.taskbuffer import sites
from panda_server.userif import service
from panda_server.web import common

log = logging.getLogger(__name__)
bp = Blueprint("legacy", __name__)
bp.before_request(common.refuse_oversized_body)
Handler = Callable[[Mapping[str, Any]], Any]


class JsonText:
    """A reply that is a JSON document, not a StatusCode dict (the 2008 pickled replies)."""

    def __init__(self, data: Any) -> None:
        self.data = data


def params() -> dict[str, Any]:
    try:
        if request.method == "GET":
            out = request.args.to_dict()
        else:
            out = wire.decode_body(request.get_data(cache=False), request.content_type,
                                   limit=common.settings().max_body_bytes,
                                   content_encoding=request.headers.get("Content-Encoding"))  # fmt: skip
    except wire.BodyError as exc:
        raise InvalidRequest(str(exc)) from None
    return common.checked(out)


def _get_job(conn, p):
    return dispatcher.get_job(conn, p, common.caller(), common.utcnow())


def _update_job(conn, p):
    return dispatcher.update_job(conn, p, common.caller(), common.utcnow())


def _submit_jobs(conn, p):
    s = common.settings()
    try:
        jobs = wire.load_job_states(p["jobs"], max_jobs=s.max_jobs_per_submit) if p.get("jobs") else None
    except wire.BodyError as exc:  # malformed states: a clear answer, not a 500
        raise InvalidRequest(str(exc)) from None
    if not jobs:
        raise InvalidRequest("jobs is required: a JSON list of job states")
    stored = service.submit_jobs(conn, jobs, common.caller(), common.utcnow(),
                                 signing_key=common.settings().jobsign_key)  # fmt: skip
    return JsonText([list(r) for r in stored])


def _job_states(conn, p):
    ids = service.parse_ids(p.get("ids"), common.settings().max_ids_per_query)
    jobs = service.get_jobs(conn, ids)
    return JsonText([None if j is None else j.to_state() for j in jobs])


def _kill_jobs(conn, p):
    ids = service.parse_ids(p.get("ids"), common.settings().max_ids_per_query)
    return JsonText(service.kill_jobs(conn, ids, common.caller(), p.get("code"), common.utcnow()))


def _reassign_jobs(conn, p):
    ids = service.parse_ids(p.get("ids"), common.settings().max_ids_per_query)
    return JsonText(service.reassign_jobs(conn, ids, common.caller(), common.utcnow()))


def _dataset_completed(conn, p):
    """S08 DDMHandler: DDM says a subscription is done; always answers True (what happened is logged)."""
    vuid, site = p.get("vuid"), p.get("site")
    if not vuid or not site:
        raise InvalidRequest("vuid and site are required")
    svc = dataservice_context.make(common.engine(), common.settings())
    ddmhandler.dataset_completed(conn, svc, str(vuid), str(site), common.utcnow())
    return "True"


def _query_panda_ids(conn, p):
    ids = service.parse_ids(p.get("ids"), common.settings().max_ids_per_query)
    return JsonText(service.query_panda_ids(conn, ids))


METHODS: dict[str, Handler] = {
    "isAlive": lambda p: "alive=yes",
    "getServer": lambda p: f"{common.settings().server_name}:{common.settings().https_port}",
    "getJob": common.in_transaction(_get_job),
    "updateJob": common.in_transaction(_update_job),
    "getStatus": common.in_transaction(lambda c, p: dispatcher.get_status(c, p)),
    "checkJobStatus": common.in_transaction(lambda c, p: dispatcher.check_job_status(c, p)),
    "submitJobs": common.in_transaction(_submit_jobs),
    "getJobStatus": common.in_transaction(_job_states),
    "getFullJobStatus": common.in_transaction(_job_states),
    "killJobs": common.in_transaction(_kill_jobs),
    "reassignJobs": common.in_transaction(_reassign_jobs),
    "queryPandaIDs": common.in_transaction(_query_panda_ids),
    "datasetCompleted": common.in_transaction(_dataset_completed),
    "getJobStatisticsPerSite": common.in_transaction(lambda c, p: JsonText(sites.job_statistics_per_site(c))),
    "getSiteSpecs": common.in_transaction(
        lambda c, p: JsonText(sites.site_specs(c, p.get("siteType") or "analysis"))
    ),
    "getCloudSpecs": common.in_transaction(lambda c, p: JsonText(sites.cloud_specs(c))),
}


# S25: getStatus always answers urlencoded, checkJobStatus always JSON, whatever Accept says
FIXED_REPLY_FORMAT: dict[str, bool] = {"getStatus": False, "checkJobStatus": True}


@bp.route("/server/panda/<method>", methods=["GET", "POST"])
def call(method: str) -> Response:
    handler = METHODS.get(method)
    if handler is None:
        return Response(f"ERROR : method {method} is forbidden", status=403, mimetype="text/plain")
    as_json = FIXED_REPLY_FORMAT.get(method, wire.accepts_json(request.headers.get("Accept")))
    try:
        common.enforce(f"/server/panda/{method}")
        result = handler(params())
    except PandaError as exc:
        log.info("%s refused for %s: %s", method, common.caller().name, exc.message)
        return _encode({"StatusCode": exc.status_code, "errorDialog": exc.message}, as_json)
    return _encode(result, as_json)


def _encode(result: Any, as_json: bool) -> Response:
    if isinstance(result, JsonText):
        return Response(json.dumps(result.data, default=wire.wire_value_default), mimetype="application/json")
    if isinstance(result, str):
        return Response(result, mimetype="text/plain")
    body, ctype = wire.encode_reply(result, as_json)
    return Response(body, mimetype=ctype)
