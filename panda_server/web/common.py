"""Shared request plumbing: settings/engine of the app, the caller, the clock, policy checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, current_app, g, request
from sqlalchemy.engine import Connection, Engine

from panda_server.caller import Caller
from panda_server.db.engine import transaction
from panda_server.errors import Forbidden, NotSecure, RoleRequired
from panda_server.protocol import wire
from panda_server.settings import Settings
from panda_server.web.auth import caller_from_environ
from panda_server.web.policy import POLICY, Policy


def settings() -> Settings:
    return current_app.config["PANDA_SETTINGS"]


def engine() -> Engine:
    return current_app.config["PANDA_ENGINE"]


def utcnow() -> dt.datetime:
    """PanDA stores naive UTC timestamps."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def caller() -> Caller:
    if "caller" not in g:
        g.caller = caller_from_environ(request.environ, settings())
    return g.caller


def in_transaction(fn: Callable[[Connection, Mapping[str, Any]], Any]) -> Callable[[Mapping[str, Any]], Any]:
    """A handler running `fn(conn, params)` in one short transaction (the caller owns it)."""

    def handler(params: Mapping[str, Any]) -> Any:
        with transaction(engine()) as conn:
            return fn(conn, params)

    return handler


def enforce(key: str) -> Policy:
    """Apply the policy table entry `key` to the current request; raises on refusal."""
    policy = POLICY[key]
    who = caller()
    if policy.secure and not who.secure:
        raise NotSecure(f"{key.rsplit('/', 1)[-1]} needs HTTPS with a client certificate (port "
                        f"{settings().https_port})")  # fmt: skip
    if policy.secure and who.limited_proxy:
        # S25 is_secure: a limited proxy is not secure, whatever its roles (DESIGN §5: refused
        # for every active call, legacy included)
        raise Forbidden("limited proxies cannot make active calls; use a full proxy")
    if policy.role == "pilot" and not who.pilot:
        raise RoleRequired()
    if policy.role == "production" and not who.production:
        raise RoleRequired("production role required")
    return policy


DRAIN_FACTOR = 4  # an oversized body up to this many times the limit is read and dropped


def refuse_oversized_body() -> Response | None:
    """before_request: 413 for a body above Settings.max_body_bytes.

    The body is read and dropped first (up to DRAIN_FACTOR x the limit): a server that answers
    and closes while the client is still sending makes the client see a broken connection (a TLS
    EOF) instead of the 413. Anything larger is cut off unread.
    """
    limit = settings().max_body_bytes
    length = request.content_length
    if length is None or length <= limit:
        return None
    if length <= DRAIN_FACTOR * limit:
        stream, left = request.environ["wsgi.input"], length
        while left > 0:
            chunk = stream.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)
    return Response(wire.v1_envelope(False, f"request body exceeds {limit} bytes"), status=413,
                    mimetype="application/json")  # fmt: skip
