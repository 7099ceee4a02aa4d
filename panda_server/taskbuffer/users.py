"""The users table: who submitted what, per-user job-definition serials, disabled users."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.errors import Forbidden
from panda_server.protocol.identity import user_name


def lock_user(conn: Connection, dn: str, *, now: dt.datetime) -> dict[str, Any]:
    """The user's row, created on first sight, locked until the end of the transaction."""
    u = t.users
    conn.execute(
        insert(u).values(name=user_name(dn), dn=dn, jobid=0, status="active", lastmod=now)
        .on_conflict_do_nothing(index_elements=[u.c.dn])
    )  # fmt: skip
    row = conn.execute(sa.select(u).where(u.c.dn == dn).with_for_update()).mappings().one()
    if row["status"] == "disabled":
        raise Forbidden(f"user {row['name']} is disabled; ask the PanDA operators")
    return dict(row)


def take_job_definition_id(
    conn: Connection, user: dict[str, Any], requested: int | None, *, now: dt.datetime
) -> int:
    """Per-user jobDefinitionID serial (S08 users.jobid): a new one unless the client brings one."""
    current = int(user["jobid"] or 0)
    value = requested if requested is not None else current + 1
    if value > current:
        conn.execute(sa.update(t.users).where(t.users.c.id == user["id"]).values(jobid=value, lastmod=now))
        user["jobid"] = value
    return value


def is_disabled(conn: Connection, dn: str) -> bool:
    """True if this DN, or the same person under another DN (the name kill ownership compares:
    a renewed certificate, a token), is marked disabled. Unknown users are not."""
    u = t.users
    query = sa.select(sa.func.count()).where(
        u.c.status == "disabled", sa.or_(u.c.dn == dn, u.c.name == user_name(dn))
    )
    return conn.execute(query).scalar_one() > 0


def set_status(conn: Connection, dn: str, status: str, *, now: dt.datetime) -> bool:
    """Operator action: enable/disable a user (panda-server user disable DN)."""
    result = conn.execute(sa.update(t.users).where(t.users.c.dn == dn).values(status=status, lastmod=now))
    return result.rowcount > 0
