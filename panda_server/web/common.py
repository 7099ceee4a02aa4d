"""Shared request plumbing: settings/engine of the app, the caller, the clock, policy checks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app, g, request
from sqlalchemy.engine import Engine

from panda_server.caller import Caller
from panda_server.errors import NotSecure, RoleRequired
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


def enforce(key: str) -> Policy:
    """Apply the policy table entry `key` to the current request; raises on refusal."""
    policy = POLICY[key]
    who = caller()
    if policy.secure and not who.secure:
        raise NotSecure(f"{key.rsplit('/', 1)[-1]} needs HTTPS with a client certificate (port "
                        f"{settings().https_port})")  # fmt: skip
    if policy.role == "pilot" and not who.pilot:
        raise RoleRequired()
    if policy.role == "production" and not who.production:
        raise RoleRequired("production role required")
    return policy


def bool_param(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")
