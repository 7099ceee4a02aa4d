"""The classic Client API (S08 userinterface/Client.py), over mutual TLS, JSON on the wire.

Each function returns (status, result) like the classic client: status 0 when the server was
reached and answered, 255 (EC_Failed) otherwise; result is None on failure. Bamboo and the
`pathena`-style tools build on these.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from client.config import ClientConfig
from panda_server.protocol import wire
from panda_server.protocol.jobspec import JobSpec
from panda_server.protocol.transport import PandaSession, TransportError

EC_Failed = 255
log = logging.getLogger(__name__)


def _session(config: ClientConfig | None) -> PandaSession:
    c = config or ClientConfig.from_env()
    return PandaSession(
        url=c.base(c.url), url_ssl=c.base(c.url_ssl), proxy=c.proxy, ca=c.ca_dir, token=c.bearer()
    )


def _call(
    method: str,
    params: dict[str, Any],
    config: ClientConfig | None,
    *,
    secure: bool = True,
    object_hook: Any = None,
) -> tuple[int, Any]:
    session = _session(config)
    try:
        reply = session.legacy(method, params, secure=secure, object_hook=object_hook)
    except TransportError as exc:
        log.error("%s failed: %s", method, exc)
        return EC_Failed, None
    finally:
        session.close()
    if isinstance(reply, dict) and "StatusCode" in reply:  # a refusal: StatusCode + errorDialog
        log.error("%s refused: StatusCode=%s %s", method, reply["StatusCode"], reply.get("errorDialog", ""))
        return EC_Failed, None
    return 0, reply


def submitJobs(jobs: Sequence[JobSpec], config: ClientConfig | None = None) -> tuple[int, Any]:
    """[(PandaID, jobDefinitionID, jobName)] for the submitted jobs (HTTPS)."""
    status, reply = _call("submitJobs", {"jobs": wire.dump_job_states(list(jobs))}, config)
    return status, None if reply is None else [tuple(r) for r in reply]


def getJobStatus(ids: Sequence[int], config: ClientConfig | None = None) -> tuple[int, Any]:
    """[JobSpec or None] for the ids, searched in all four job tables (HTTP, passive)."""
    params = {"ids": json.dumps([int(i) for i in ids])}
    status, reply = _call("getJobStatus", params, config, secure=False, object_hook=wire.decode_special)
    if reply is None:
        return status, None
    return status, [None if s is None else JobSpec.from_state(s) for s in reply]


def killJobs(
    ids: Sequence[int], code: str | None = None, config: ClientConfig | None = None
) -> tuple[int, Any]:
    params = {"ids": json.dumps([int(i) for i in ids])}
    if code is not None:
        params["code"] = str(code)
    return _call("killJobs", params, config)


def reassignJobs(ids: Sequence[int], config: ClientConfig | None = None) -> tuple[int, Any]:
    return _call("reassignJobs", {"ids": json.dumps([int(i) for i in ids])}, config)


def queryPandaIDs(job_definition_ids: Sequence[int], config: ClientConfig | None = None) -> tuple[int, Any]:
    """Newest PandaID of the managed job with each jobDefinitionID (None if unknown)."""
    return _call("queryPandaIDs", {"ids": json.dumps([int(i) for i in job_definition_ids])}, config,
                 secure=False)  # fmt: skip
