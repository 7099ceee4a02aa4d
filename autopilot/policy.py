"""How many pilots a queue gets this cycle: the classic AutoPilot decision table, pure.

`decide` is the nqueue/depthboost table of the 2007-2010 condor_g factory (the SimpleNQueue
scheduler), rule for rule, in its order; `capped` then applies what the classic factory lacked:
it never goes past the queue's pilotlimit (the table only stops once the limit is reached, and
could overshoot it by nqueue), nor past the factory's own caps. Counts are this factory's own
pilots; `inactive` are those not yet running (submitted, queued, held), `active` the running ones.
docs/autopilot.md has the table in prose.
"""

from __future__ import annotations

import dataclasses

DEFAULT_DEPTHBOOST = 2
STOPPED = ("offline", "error")  # queue or cloud statuses that get no pilots


@dataclasses.dataclass(frozen=True)
class QueueView:
    """What one decision sees of a queue: its settings, the server's job counts, this factory's pilots."""

    queue_status: str  # schedconfig status: online, brokeroff, test, offline (error in classic)
    cloud_status: str  # cloudconfig status of the queue's cloud
    nqueue: int
    depthboost: int = DEFAULT_DEPTHBOOST
    idlepilotsuppression: int = 1
    pilotlimit: int = 0  # 0: no limit
    transferringlimit: int = 0  # 0: no limit
    activated: int = 0  # the site's activated jobs (getJobStatisticsPerSite)
    transferring: int = 0  # the site's transferring jobs
    inactive: int = 0  # this factory's pilots at the queue not running yet
    active: int = 0  # ... and running
    cycle: int = 0  # the factory's cycle number (idle-pilot suppression)

    @property
    def total(self) -> int:
        return self.inactive + self.active


@dataclasses.dataclass(frozen=True)
class Decision:
    n: int  # pilots to submit
    reason: str  # why, for the log and schedinstance.errinfo


def decide(v: QueueView) -> Decision:
    """The classic table (reference: client-monitor-bamboo-autopilot.md §4.2), first match wins."""
    if v.cloud_status in STOPPED:
        return Decision(0, f"cloud {v.cloud_status}")
    if v.queue_status in STOPPED:
        return Decision(0, f"queue {v.queue_status}")
    if v.pilotlimit and v.total >= v.pilotlimit:
        return Decision(0, f"pilotlimit {v.pilotlimit} reached ({v.total} pilots)")
    if v.transferringlimit and v.transferring >= v.transferringlimit:
        return Decision(0, f"transferringlimit {v.transferringlimit} reached ({v.transferring} transferring)")
    if "test" in (v.queue_status, v.cloud_status):
        if v.inactive > 0 or v.total > v.nqueue:
            return Decision(0, f"test: {v.inactive} queued, {v.total} pilots")
        return Decision(1, "test: one test pilot")
    if v.activated > 0:
        depth = v.depthboost or DEFAULT_DEPTHBOOST
        if v.inactive < v.nqueue:
            return Decision(v.nqueue, f"{v.activated} activated, {v.inactive} queued < nqueue {v.nqueue}")
        if v.activated > v.inactive and v.inactive < v.nqueue * depth:
            return Decision(v.nqueue, f"{v.activated} activated > {v.inactive} queued < nqueue {v.nqueue} "
                                      f"× depthboost {depth}")  # fmt: skip
        return Decision(0, f"{v.activated} activated, {v.inactive} queued: deep enough")
    if v.inactive < v.nqueue:
        every = max(v.idlepilotsuppression, 1)
        if v.cycle % every != 0:
            return Decision(0, f"no activated job; idle pilot suppressed (cycle {v.cycle} % {every})")
        return Decision(1, "no activated job: one idle pilot")
    return Decision(0, f"no activated job, {v.inactive} queued")


def capped(d: Decision, v: QueueView, *, max_per_cycle: int, factory_room: int | None) -> Decision:
    """The decision within the queue's pilotlimit and the factory's caps (room None = unlimited)."""
    n, notes = d.n, []
    if v.pilotlimit and n > v.pilotlimit - v.total:
        n = max(v.pilotlimit - v.total, 0)
        notes.append(f"pilotlimit {v.pilotlimit}")
    if n > max_per_cycle:
        n = max_per_cycle
        notes.append(f"{max_per_cycle} per cycle")
    if factory_room is not None and n > factory_room:
        n = max(factory_room, 0)
        notes.append("factory's pilot cap")
    if n == d.n:
        return d
    return Decision(n, f"{d.reason}; {d.n} capped to {n} by {', '.join(notes)}")
