"""Factories in `servicelist`: registration, the heartbeat, and the operator's remote control.

A factory registers at start, beats once per cycle (tcheck, and what the cycle did), reads back
`doaction` (an operator's `panda-autopilot tell NAME stop`) and marks itself stopped at the end.
A second factory with the same name is refused while the first is alive: both would submit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.db import tables as t

ACTIONS = ("stop",)
_LOCK = 25881  # the advisory-lock class of factory registrations
STALE_CYCLES = 3  # a factory silent for this many cycles is shown as stale


class AlreadyRunning(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Me:
    name: str
    host: str
    pid: int
    userid: str
    url: str
    config: str
    cyclesec: int


def me(name: str, *, url: str, config: str, cyclesec: float) -> Me:
    import getpass

    return Me(name, socket.gethostname(), os.getpid(), getpass.getuser(), url, config, int(cyclesec))


def register(conn: Connection, who: Me, now: dt.datetime) -> None:
    s = t.servicelist
    conn.execute(
        sa.select(sa.func.pg_advisory_xact_lock(_LOCK, sa.func.hashtext(who.name)))
    )  # first starts too
    row = conn.execute(sa.select(s).where(s.c.name == who.name).with_for_update()).first()
    gone = row is not None and row.host == who.host and not _pid_alive(row.pid)  # crashed here: take over
    if row is not None and row.status == "running" and _alive(row, now) and row.pid != who.pid and not gone:
        raise AlreadyRunning(f"factory {who.name} is already running (pid {row.pid} on {row.host}, last heartbeat "
                             f"{row.tcheck:%Y-%m-%d %H:%M:%S} UTC); stop it or set PANDA_AUTOPILOT_FACTORY")  # fmt: skip
    values = dict(type="autopilot", host=who.host, pid=who.pid, userid=who.userid, url=who.url, config=who.config,
                  cyclesec=who.cyclesec, status="running", message="starting", doaction=None, tstart=now,
                  tstop=None, tcheck=now, lastmod=now)  # fmt: skip
    if row is None:
        conn.execute(sa.insert(s).values(name=who.name, **values))
    else:
        conn.execute(sa.update(s).where(s.c.name == who.name).values(**values))


def beat(conn: Connection, name: str, message: str, now: dt.datetime) -> str | None:
    """The heartbeat; returns (and clears) an operator's pending action, or "superseded" when the
    row is no longer this process's (another factory of this name took over while it was silent)."""
    s = t.servicelist
    row = conn.execute(
        sa.select(s.c.doaction, s.c.pid, s.c.host).where(s.c.name == name).with_for_update()
    ).first()
    if row is None or (row.pid, row.host) != (os.getpid(), socket.gethostname()):
        return "superseded"
    conn.execute(
        sa.update(s).where(s.c.name == name).values(tcheck=now, message=message[:2000], doaction=None)
    )
    return row.doaction


def stopped(conn: Connection, name: str, message: str, now: dt.datetime) -> None:
    s = t.servicelist
    conn.execute(sa.update(s).where(s.c.name == name, s.c.pid == os.getpid())
                 .values(status="stopped", tstop=now, lastmod=now, message=message[:2000]))  # fmt: skip


def tell(conn: Connection, name: str, action: str) -> bool:
    """Ask a factory to do `action` at its next cycle; False if no such factory runs."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    s = t.servicelist
    query = sa.update(s).where(s.c.name == name, s.c.status == "running").values(doaction=action)
    return conn.execute(query).rowcount == 1


def listing(conn: Connection, now: dt.datetime) -> list[dict]:
    """Every factory with its state: running, stale (no heartbeat for STALE_CYCLES cycles) or stopped."""
    out = []
    for row in conn.execute(sa.select(t.servicelist).order_by(t.servicelist.c.name)):
        state = row.status if row.status != "running" or _alive(row, now) else "stale"
        out.append({**row._asdict(), "state": state})
    return out


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _alive(row: sa.Row, now: dt.datetime) -> bool:
    return row.tcheck is not None and (now - row.tcheck).total_seconds() < STALE_CYCLES * max(
        row.cyclesec or 0, 10
    )
