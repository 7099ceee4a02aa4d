"""Every pilot a factory submitted, followed from submission to its end (classic `pilotqueue`).

`next_state` is the pure rule: what a pilot's row becomes given what its batch system says and
what its wrapper reported. The rest reads and writes the rows; the caller owns the transaction.
A row changes only through `change`, which checks the state it read is still the row's state.

States: submitted (recorded, not yet seen by the batch system) → queued → running → done (the
wrapper ended with 0, or 82: the pilot found no job) | failed (any other exit code, or the batch
system ended it) | lost (the batch system no longer knows it and no exit code was reported).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from autopilot.submitters.base import BatchState, BatchStatus, PilotBatch
from panda_server.db import tables as t

LIVE = ("submitted", "queued", "running")
ENDED = ("done", "failed", "lost")
NORMAL_EXITS = {0: "the pilot ran its jobs", 82: "the pilot found no job"}


@dataclasses.dataclass(frozen=True)
class Change:
    state: str
    errcode: int | None = None
    errinfo: str | None = None
    workernode: str | None = None


def next_state(current: str, seen: BatchStatus | None, reported_exit: int | None, *, unseen_for: float,
               grace: float, system: str) -> Change | None:  # fmt: skip
    """The pilot's next state, or None if it stays. `seen` is its batch status (None: unknown to the
    batch system), `reported_exit` the code its wrapper wrote, `unseen_for` seconds since submission."""
    if current in ENDED:
        return None
    if seen is None:
        if reported_exit is not None:
            return _ended(reported_exit, None)
        if current == "submitted" and unseen_for < grace:
            return None  # batch systems may take a moment to show a new job
        return Change("lost", None, f"not known to {system} and no exit code reported")
    node = seen.workernode or None
    code = seen.exit_code if seen.exit_code is not None else reported_exit
    if seen.state is BatchState.failed:
        return Change("failed", code, f"{system}: {seen.info or 'failed'}", node)
    if seen.state is BatchState.done:
        if code is None:
            return Change("failed", None, f"{system}: ended without an exit code", node)
        return _ended(code, node)
    state = "running" if seen.state is BatchState.running else "queued"
    if state == current or (current == "running" and state == "queued"):
        return None
    return Change(state, None, seen.info or None, node)


def _ended(code: int, node: str | None) -> Change:
    if code in NORMAL_EXITS:
        return Change("done", code, NORMAL_EXITS[code], node)
    return Change("failed", code, f"the wrapper exited with {code}", node)


# ---------------------------------------------------------------- rows


def record(conn: Connection, batch: PilotBatch, *, factory: str, system: str, submithost: str, user: str,
           now: dt.datetime) -> None:  # fmt: skip
    """One `submitted` row per pilot of the batch, before it is submitted (batch id still empty)."""
    rows = [dict(tpid=batch.tpid(i), jobid="", factory=factory, nickname=batch.queue.nickname,
                 queueid=batch.queue.siteid, system=system, state="submitted", url=batch.pilot_log_url(i),
                 submithost=submithost, user=user, tsubmit=now, tstate=now)
            for i in range(batch.count)]  # fmt: skip
    conn.execute(sa.insert(t.pilotqueue), rows)


def confirm(conn: Connection, batch: PilotBatch, ids: Sequence[str]) -> None:
    """The batch ids of the pilots that went in (in pilot order); the rows of the others go."""
    p = t.pilotqueue
    for i, batch_id in enumerate(ids):
        conn.execute(sa.update(p).where(p.c.tpid == batch.tpid(i)).values(jobid=batch_id))
    others = [batch.tpid(i) for i in range(len(ids), batch.count)]
    if others:
        conn.execute(sa.delete(p).where(p.c.tpid.in_(others), p.c.jobid == ""))


def oldest_live(conn: Connection, factory: str) -> dt.datetime | None:
    p = t.pilotqueue
    return conn.execute(
        sa.select(sa.func.min(p.c.tsubmit)).where(p.c.factory == factory, p.c.state.in_(LIVE))
    ).scalar()


def live(conn: Connection, factory: str) -> list[sa.Row]:
    """This factory's pilots that have not ended, oldest first."""
    p = t.pilotqueue
    query = sa.select(p).where(p.c.factory == factory, p.c.state.in_(LIVE)).order_by(p.c.tsubmit, p.c.tpid)
    return list(conn.execute(query))


def change(conn: Connection, row: sa.Row, new: Change, now: dt.datetime) -> bool:
    """Move one pilot from the state it was read in to `new`; False if it moved meanwhile."""
    p = t.pilotqueue
    values: dict = {"state": new.state, "tstate": now, "tcheck": now}
    if new.errcode is not None:
        values["errcode"] = new.errcode
    if new.errinfo is not None:
        values["errinfo"] = new.errinfo[:1000]
    if new.workernode:
        values["workernode"] = new.workernode[:255]
    if new.state == "running":
        values["tstart"] = now
    if new.state in ENDED:
        values["tend"] = now
    query = sa.update(p).where(p.c.tpid == row.tpid, p.c.state == row.state).values(**values)
    return conn.execute(query).rowcount == 1


def checked(conn: Connection, tpids: Sequence[str], now: dt.datetime) -> None:
    """Note that the batch system was asked about these pilots."""
    if tpids:
        conn.execute(sa.update(t.pilotqueue).where(t.pilotqueue.c.tpid.in_(tpids)).values(tcheck=now))


def counts(
    conn: Connection, factory: str, *, ended_since: dt.datetime | None = None
) -> dict[str, dict[str, int]]:
    """{queue: {state: n}} of this factory's live pilots, and of those ended since `ended_since`."""
    p = t.pilotqueue
    wanted = p.c.state.in_(LIVE)
    if ended_since is not None:
        wanted = sa.or_(wanted, sa.and_(p.c.state.in_(ENDED), p.c.tend >= ended_since))
    query = (sa.select(p.c.nickname, p.c.state, sa.func.count()).where(p.c.factory == factory, wanted)
             .group_by(p.c.nickname, p.c.state))  # fmt: skip
    out: dict[str, dict[str, int]] = {}
    for nickname, state, n in conn.execute(query):
        out.setdefault(nickname, {})[state] = n
    return out


def link_jobs(conn: Connection, factory: str, *, since: dt.datetime) -> int:
    """Fill pandaid for this factory's pilots submitted since `since` from the jobs they ran: a pilot
    reports its log URL as the first part of its jobs' pilotID (the latest job wins)."""
    p = t.pilotqueue
    linked = 0
    for table in (t.jobsactive4, t.jobsarchived4):
        pilot = sa.func.split_part(table.c.pilotID, "|", 1)
        latest = (sa.select(pilot.label("url"), sa.func.max(table.c.PandaID).label("pandaid"))
                  .where(pilot.in_(sa.select(p.c.url).where(p.c.factory == factory, p.c.tsubmit >= since)))
                  .group_by(pilot).subquery())  # fmt: skip
        query = (sa.update(p).where(p.c.url == latest.c.url, p.c.factory == factory,
                                    sa.or_(p.c.pandaid.is_(None), p.c.pandaid < latest.c.pandaid))
                 .values(pandaid=latest.c.pandaid))  # fmt: skip
        linked += conn.execute(query).rowcount
    return linked


def note_queue(
    conn: Connection, factory: str, nickname: str, values: Mapping[str, object], now: dt.datetime
) -> None:
    """The queue's schedinstance row: this cycle's counts and decision."""
    s = t.schedinstance
    row = {"name": factory, "nickname": nickname, **values, "lastmod": now}
    stmt = sa.dialects.postgresql.insert(s).values(**row)
    conn.execute(stmt.on_conflict_do_update(index_elements=[s.c.name, s.c.nickname],
                                            set_={k: stmt.excluded[k] for k in row if k not in ("name", "nickname")}))  # fmt: skip
