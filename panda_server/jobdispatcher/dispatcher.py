"""The pilot's side of the server: getJob, updateJob, getStatus, checkJobStatus.

Parameters in, (reply dict) out; the web layer encodes. Each call is one transaction opened by
the caller. Semantics follow S08/S25 JobDispatcher (reference/panda-server.md §3.3-3.5).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.caller import Caller
from panda_server.db import tables as t
from panda_server.errors import InvalidRequest, RoleRequired, StateConflict
from panda_server.jobdispatcher import updates
from panda_server.protocol import dispatch
from panda_server.protocol.codes import StatusCode
from panda_server.taskbuffer import jobs, rows, sitedata, sites

log = logging.getLogger(__name__)
requests_log = logging.getLogger("panda.PilotRequests")  # S08 panda-PilotRequests.log, for SiteData

MAX_BULK_JOBS = 100


def _number(params: Mapping[str, Any], name: str) -> int:
    raw = params.get(name)
    if raw in (None, "", "NULL"):
        return 0
    try:
        return max(int(float(raw)), 0)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number, got {raw!r}") from None


def get_job(conn: Connection, params: Mapping[str, Any], caller: Caller, now: dt.datetime) -> dict[str, Any]:
    site = params.get("siteName")
    if not site or site == "NULL":
        raise InvalidRequest("siteName is required")
    mem, disk = _number(params, "mem"), _number(params, "diskSpace")
    n_jobs = _number(params, "nJobs") if params.get("nJobs") not in (None, "") else None
    if n_jobs is not None and not 1 <= n_jobs <= MAX_BULK_JOBS:
        raise InvalidRequest(f"nJobs must be between 1 and {MAX_BULK_JOBS}")
    # the policy table lets only pilot/production roles in (S08 let users pull their own jobs);
    # kept as defence in depth should the table ever be loosened
    prod_user = params.get("prodUserID") if caller.pilot else caller.dn
    # not cached: an operator putting a queue into test must take effect on the next getJob
    labels = dispatch.eligible_labels(params.get("prodSourceLabel"), sites.site_status(conn, site))
    node = str(params.get("node") or "")[:128]
    ce = params.get("computingElement")
    ce = str(ce)[:128] if ce and ce != "NULL" else None
    scheduler = str(params["schedulerID"])[:128] if params.get("schedulerID") else None
    requests_log.info("method=getJob,site=%s,node=%s,type=%s", site, node, params.get("prodSourceLabel"))
    sitedata.count(site, "getJob", sitedata.flag_of(params.get("prodSourceLabel")), now)  # a request counts
    claimed = []
    for _ in range(n_jobs or 1):
        row = jobs.claim_for_pilot(conn, site=site, labels=labels, mem=mem, disk=disk, prod_user_id=prod_user,
                                   node=node, computing_element=ce, scheduler_id=scheduler, now=now)  # fmt: skip
        if row is None:
            break
        claimed.append(row)
    if not claimed:
        requests_log.info("method=noJob,site=%s,node=%s,type=%s", site, node, params.get("prodSourceLabel"))
        return {"StatusCode": StatusCode.NO_JOBS, "errorDialog": "no jobs in PanDA"}
    replies = _job_replies(conn, claimed, site, now)
    if n_jobs is None:
        return {"StatusCode": StatusCode.SUCCESS, **replies[0]}
    return {"StatusCode": StatusCode.SUCCESS, "jobs": replies}


def _job_replies(conn: Connection, claimed: list[dict[str, Any]], site: str, now: dt.datetime) -> list[dict]:
    ids = [r["PandaID"] for r in claimed]
    files = rows.files_of(conn, ids)
    params = rows.signed_parameters(conn, ids)
    endpoint = sites.cached("ddm", site, lambda: sites.ddm_endpoint(conn, site))
    n_sent = sites.cached("nsent", site, lambda: _n_sent(conn, site, now), ttl=5)
    out = []
    for row in claimed:
        job = rows.job_from_row(row)
        job_params, signature = params.get(job.PandaID, (None, None))
        object.__setattr__(job, "jobParameters", job_params)
        job.Files = files[job.PandaID]
        out.append(dispatch.job_reply(job, ddm_endpoint=endpoint, n_sent=n_sent, signature=signature))
        log.info("PandaID=%s dispatched site=%s node=%s", job.PandaID, site, row.get("modificationHost"))
    return out


def _n_sent(conn: Connection, site: str, now: dt.datetime) -> int:
    """S08 nSent: jobs of the site sent in the last minute (informational for the pilot)."""
    a = t.jobsactive4
    query = sa.select(sa.func.count()).where(
        a.c.computingSite == site,
        a.c.jobStatus == "sent",
        a.c.modificationTime > now - dt.timedelta(seconds=60),
    )
    return conn.execute(query).scalar_one()


def update_job(
    conn: Connection, params: Mapping[str, Any], caller: Caller, now: dt.datetime
) -> dict[str, Any]:
    """Heartbeat or final report; the reply carries commandToPilot (S08 JobDispatcher.updateJob)."""
    if not caller.pilot:
        raise RoleRequired()
    job_id = params.get("jobId")
    if job_id in (None, ""):
        raise InvalidRequest("jobId is required")
    if job_id == "NULL":
        return {"StatusCode": StatusCode.SUCCESS}
    try:
        panda_id = int(job_id)
    except (TypeError, ValueError):
        raise InvalidRequest(f"jobId must be a PandaID, got {job_id!r}") from None
    state = updates.reported_state(params.get("state"))
    values = updates.columns_from_params(params)
    for _ in range(3):  # a kill or the watcher may move the job under us; bounded
        try:
            command = updates.apply(conn, panda_id, state, values, params, now)
        except StateConflict:
            continue
        return {"StatusCode": StatusCode.SUCCESS, "command": command}
    return {"StatusCode": StatusCode.FAILED, "errorDialog": f"PandaID={panda_id} keeps changing; retry"}


def get_status(conn: Connection, params: Mapping[str, Any]) -> dict[str, Any]:
    """ids (space-separated) → status=a+b&attemptNr=x+y (S08 getStatus; unknown → notfound/0)."""
    ids = _id_list(params.get("ids"))
    found = jobs.status_of(conn, ids)
    statuses = [found[i]["jobStatus"] if i in found else "notfound" for i in ids]
    attempts = [str(found[i]["attemptNr"] or 0) if i in found else "0" for i in ids]
    return {"StatusCode": StatusCode.SUCCESS, "status": "+".join(statuses), "attemptNr": "+".join(attempts)}


def check_job_status(conn: Connection, params: Mapping[str, Any]) -> dict[str, Any]:
    """S25 checkJobStatus: [{status, command}]; an unknown job gets tobekilled."""
    ids = _id_list(params.get("ids"))
    found = jobs.status_of(conn, ids)
    data = []
    for i in ids:
        info = found.get(i)
        if info is None:
            data.append({"status": "notfound", "command": "tobekilled"})
        else:
            data.append({"status": info["jobStatus"], "command": info["commandToPilot"] or "NULL"})
    return {"StatusCode": StatusCode.SUCCESS, "data": data}


def _id_list(raw: Any, limit: int = 5500) -> list[int]:
    if raw in (None, ""):
        raise InvalidRequest("ids is required")
    parts = raw if isinstance(raw, list) else str(raw).replace(",", " ").split()
    try:
        ids = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise InvalidRequest("ids must be PandaIDs separated by spaces") from None
    if len(ids) > limit:
        raise InvalidRequest(f"at most {limit} ids per call")
    return ids
