"""Shared plumbing for the wire tests: set-up through the DB, calls through the real server.

Set-up may write the DB directly (store jobs as a production manager, force a status); every
assertion goes through the HTTP API or reads the DB.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from panda_server.db import tables as t
from panda_server.protocol import wire
from panda_server.protocol.jobspec import FileSpec, JobSpec
from panda_server.protocol.states import TABLE_OF, JobStatus
from panda_server.settings import Settings
from panda_server.taskbuffer import rows, store
from tests.support.jobs import simple_job

USER_DN = "/DC=org/DC=pandawms/OU=Users/CN=Jane Doe"
OTHER_DN = "/DC=org/DC=pandawms/OU=Users/CN=John Smith"
PILOT_DN = "/DC=org/DC=pandawms/OU=Robots/CN=pilot"
TIMEOUT = 30  # seconds per HTTP call; every call is bounded


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# --- set-up through the DB ------------------------------------------------------------------


def snapshot(engine):
    """Everything an active call could change."""
    with engine.connect() as conn:
        jobs = sorted(
            (name, r.PandaID, r.jobStatus, r.commandToPilot, r.modificationTime, r.modificationHost)
            for name, tb in t.JOB_TABLE.items()
            for r in conn.execute(sa.select(tb))
        )
        counts = {
            tb.name: conn.execute(sa.select(sa.func.count()).select_from(tb)).scalar_one()
            for tb in (t.filestable4, t.metatable, t.job_output_report, t.users, t.jobparamstable)
        }
    return jobs, counts


def store_jobs(
    engine: Engine, jobs: Sequence[JobSpec], *, dn: str = USER_DN, production: bool = True
) -> list[int]:
    """Insert jobs as `defined` through the task buffer, as a production manager by default."""
    with engine.begin() as conn:
        stored = store.store_jobs(conn, list(jobs), dn=dn, production=production, host="test", now=utcnow(),
                                  signing_key=Settings.from_env().jobsign_key)  # fmt: skip
    return [pid for pid, _, _ in stored]


def force_status(engine: Engine, panda_id: int, status: str, **columns: Any) -> None:
    """Put a job into `status` (moving it to that status's table) and set extra columns."""
    target = TABLE_OF[JobStatus(status)]
    with engine.begin() as conn:
        found = rows.find_jobs(conn, [panda_id], for_update=True)
        source, row = found[panda_id]
        values = {**row, **columns, "jobStatus": status, "modificationTime": utcnow()}
        if source != target:
            src = t.JOB_TABLE[source]
            conn.execute(sa.delete(src).where(src.c.PandaID == panda_id))
            conn.execute(sa.insert(t.JOB_TABLE[target]).values(**values))
        else:
            table = t.JOB_TABLE[target]
            conn.execute(sa.update(table).where(table.c.PandaID == panda_id).values(**values))


def activated(engine: Engine, jobs: Sequence[JobSpec], **kwargs: Any) -> list[int]:
    """Store jobs and make them `activated` (ready for a pilot)."""
    ids = store_jobs(engine, jobs, **kwargs)
    for pid in ids:
        force_status(engine, pid, "activated")
    return ids


def job_row(engine: Engine, panda_id: int) -> tuple[str, dict[str, Any]] | None:
    """(table, row) of a job, or None."""
    with engine.connect() as conn:
        found = rows.find_jobs(conn, [panda_id])
    if panda_id not in found:
        return None
    table, row = found[panda_id]
    return table, dict(row)


def count_jobs(engine: Engine) -> int:
    with engine.connect() as conn:
        return sum(
            conn.execute(sa.select(sa.func.count()).select_from(tb)).scalar_one()
            for tb in t.JOB_TABLE.values()
        )


def scalar(engine: Engine, query: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(query).scalar()


ANALY_SITE = "ANALY_CLOUDA_T1"


def user_job(**attrs: Any) -> JobSpec:
    """An analysis job of the caller with one output and a log, at ANALY_SITE."""
    return simple_job(ANALY_SITE, label="user", outputs=1, **attrs)


def rich_job(site: str = "CLOUDA_T1", **attrs: Any) -> JobSpec:
    """A job with two inputs, two outputs and a log, every per-file field distinct."""
    job = simple_job(site, with_log=False, **attrs)
    for i in range(2):
        job.add_file(FileSpec(lfn=f"in{i}.root", type="input", GUID=str(uuid.uuid4()), dataset=f"data.in{i}",
                              prodDBlock=f"data.in{i}", dispatchDBlock=f"panda.dis{i}", scope=f"scope_in{i}",
                              fsize=1000 + i, checksum=f"ad:0000000{i}", status="ready"))  # fmt: skip
    for i in range(2):
        job.add_file(FileSpec(lfn=f"out{i}.$PANDAID.root", type="output", dataset=f"data.out{i}",
                              destinationDBlock=f"data.out{i}_sub01", destinationDBlockToken=f"TOKEN{i}",
                              scope=f"scope_out{i}", GUID=str(uuid.uuid4())))  # fmt: skip
    job.add_file(FileSpec(lfn="log.$PANDAID.tgz", type="log", dataset="data.log", destinationDBlock="data.log_sub01",
                          destinationDBlockToken="LOGTOKEN", scope="scope_log", GUID=str(uuid.uuid4())))  # fmt: skip
    return job


# --- calls through the server ---------------------------------------------------------------


def legacy(session: requests.Session, base: str, method: str, *, how: str = "form", accept_json: bool = False,
           **params: Any) -> requests.Response:  # fmt: skip
    """Call /server/panda/<method> with one of the three encodings the pilots use.

    how="form": POST form (pilot 3.7 curl); "get": query string; "gzjson": gzip(JSON) body with
    Content-Type application/json and no Content-Encoding (pilot >= 3.7.3 urllib).
    """
    url = f"{base}/server/panda/{method}"
    headers = {"Accept": "application/json"} if accept_json else {}
    if how == "form":
        return session.post(url, data=params, headers=headers, timeout=TIMEOUT)
    if how == "get":
        return session.get(url, params=params, headers=headers, timeout=TIMEOUT)
    if how == "gzjson":
        body = gzip.compress(json.dumps(params).encode())
        return session.post(url, data=body, headers={**headers, "Content-Type": "application/json"},
                            timeout=TIMEOUT)  # fmt: skip
    raise ValueError(how)


def reply(r: requests.Response) -> dict[str, Any]:
    """A legacy StatusCode reply as a dict (JSON or urlencoded), like the pilot parses it."""
    assert r.status_code == 200, (r.status_code, r.text[:500])
    return wire.decode_reply(r.text)


def urlencoded(r: requests.Response) -> dict[str, str]:
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert not r.text.lstrip().startswith("{"), r.text[:200]
    return dict(urllib.parse.parse_qsl(r.text, keep_blank_values=True))


def json_text(r: requests.Response) -> Any:
    """A 2008-pickle-era reply, now JSON text; datetimes decoded."""
    assert r.status_code == 200, (r.status_code, r.text[:500])
    return json.loads(r.text, object_hook=wire.decode_special)


def states_to_jobs(states: list[Any]) -> list[JobSpec | None]:
    return [None if s is None else JobSpec.from_state(s) for s in states]


def submit(session: requests.Session, base: str, jobs: Sequence[JobSpec]) -> list[list[Any]]:
    r = session.post(f"{base}/server/panda/submitJobs", data={"jobs": wire.dump_job_states(list(jobs))},
                     timeout=TIMEOUT)  # fmt: skip
    out = json_text(r)
    assert isinstance(out, list), out
    return out


def v1(session: requests.Session, base: str, api: str, *, method: str = "POST",
       body: Mapping[str, Any] | None = None, **query: Any) -> requests.Response:  # fmt: skip
    url = f"{base}/api/v1/{api}"
    headers = {"Accept": "application/json"}
    if method == "GET":
        return session.get(url, params=query, headers=headers, timeout=TIMEOUT)
    return session.request(method, url, json=dict(body or {}), headers=headers, timeout=TIMEOUT)


def envelope(r: requests.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("application/json")
    data = r.json()
    assert set(data) == {"success", "message", "data"}, data
    return data
