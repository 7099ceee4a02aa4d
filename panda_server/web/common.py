"""Shared request plumbing: settings/engine of the app, the caller, the clock, policy checks."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, current_app, g, has_request_context, request
from sqlalchemy.engine import Connection, Engine

from panda_server.caller import Caller
from panda_server.db.engine import transaction
from panda_server.errors import Forbidden, InvalidRequest, NotSecure, RoleRequired
from panda_server.protocol import identity, wire
from panda_server.settings import Settings
from panda_server.taskbuffer import users
from panda_server.web.auth import caller_from_environ
from panda_server.web.policy import POLICY, Policy

log = logging.getLogger("panda.access")  # one line per accepted active call, with its caller


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


def current_user_name() -> str | None:
    """The DN of the current request's caller, for log lines (None outside a request)."""
    if not has_request_context():
        return None
    who = g.get("caller")
    return who.dn if who is not None else None


def checked(params: dict[str, Any]) -> dict[str, Any]:
    """Request parameters after the bounds every endpoint shares (protocol/wire.check_params)."""
    try:
        wire.check_params(params)
    except wire.BodyError as exc:
        raise InvalidRequest(str(exc)) from None
    return params


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
    name = key.rsplit("/", 1)[-1]
    if not policy.secure:
        return policy
    if not who.secure:
        raise NotSecure(f"{name} needs HTTPS with a client certificate (port {settings().https_port})")
    if who.limited_proxy:
        # S25 is_secure: a limited proxy is not secure, whatever its roles (DESIGN §5: refused
        # for every active call, legacy included)
        raise Forbidden("limited proxies cannot make active calls; use a full proxy")
    if who.credential_error:
        raise Forbidden(who.credential_error)
    if settings().require_vo and not who.vo_member:
        vos = ", ".join(settings().vos)
        raise Forbidden(f"no VOMS attributes of a VO authorized for PanDA ({vos}); make the proxy with "
                        f"voms-proxy-init -voms {settings().vos[0]}")  # fmt: skip
    if user_disabled(who.dn):
        raise Forbidden(f"user {identity.user_name(who.dn or '')} is disabled; ask the PanDA operators")
    if policy.role == "pilot" and not who.pilot:
        raise RoleRequired(
            f"{name} needs the pilot or production role; your FQANs: {', '.join(who.fqans) or 'none'}"
        )
    if policy.role == "production" and not who.production:
        raise RoleRequired(f"{name} needs the production role; your FQANs: {', '.join(who.fqans) or 'none'}")
    log.info("%s from %s fqans=%s", name, who.host, ",".join(who.fqans) or "-")
    return policy


# DN → (disabled?, when looked up): the users table asked at most once per user_status_ttl seconds
_user_status: dict[str, tuple[bool, float]] = {}


def user_disabled(dn: str | None) -> bool:
    """S25 get_ban_users: is the caller marked disabled in the users table (cached per process)?"""
    if not dn:
        return False
    now = time.monotonic()
    cached = _user_status.get(dn)
    if cached is not None and now - cached[1] < settings().user_status_ttl:
        return cached[0]
    with transaction(engine()) as conn:
        disabled = users.is_disabled(conn, dn)
    if len(_user_status) > 10000:  # bounded
        _user_status.clear()
    _user_status[dn] = (disabled, now)
    return disabled


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
