"""Job and file states, the table each job state lives in, and the allowed transitions.

Pure data. `panda_server.taskbuffer.jobs.set_status` is the only code that changes a job's
status, and it refuses anything not listed in ALLOWED.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    defined = "defined"
    assigned = "assigned"
    waiting = "waiting"
    activated = "activated"
    sent = "sent"
    starting = "starting"
    running = "running"
    holding = "holding"
    transferring = "transferring"
    finished = "finished"
    failed = "failed"
    cancelled = "cancelled"


S = JobStatus

# The canonical status → table map (S08 OraDBProxy.updateProdDBUpdateTime; cancelled added 2010).
TABLE_OF: dict[JobStatus, str] = {
    S.defined: "jobsdefined4",
    S.assigned: "jobsdefined4",
    S.waiting: "jobswaiting4",
    S.activated: "jobsactive4",
    S.sent: "jobsactive4",
    S.starting: "jobsactive4",
    S.running: "jobsactive4",
    S.holding: "jobsactive4",
    S.transferring: "jobsactive4",
    S.finished: "jobsarchived4",
    S.failed: "jobsarchived4",
    S.cancelled: "jobsarchived4",
}
JOB_TABLES: tuple[str, ...] = ("jobsdefined4", "jobswaiting4", "jobsactive4", "jobsarchived4")

TERMINAL = frozenset({S.finished, S.failed, S.cancelled})
# States in which a pilot holds the job: a kill is delivered as commandToPilot=tobekilled.
WITH_PILOT = frozenset({S.sent, S.starting, S.running})
# States the pilot may report through updateJob (S25 JobDispatcher accepts these; finished and
# failed are stored as holding for the Adder).
PILOT_REPORTABLE = frozenset({S.starting, S.running, S.holding, S.transferring, S.finished, S.failed})

_CANCEL = {S.failed, S.cancelled}
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    # setupper: brokerage done → assigned (inputs to move) or activated; unresolved inputs → waiting
    S.defined: frozenset({S.assigned, S.activated, S.waiting, *_CANCEL}),
    # activator on dispatch-block completion; reassign sends it back to defined
    S.assigned: frozenset({S.activated, S.waiting, S.defined, *_CANCEL}),
    # waker / reassign
    S.waiting: frozenset({S.defined, *_CANCEL}),
    # dispatcher claim; reassign
    S.activated: frozenset({S.sent, S.defined, *_CANCEL}),
    # pilot heartbeats; watcher resets unacknowledged non-managed jobs to activated
    S.sent: frozenset({S.starting, S.running, S.holding, S.activated, S.transferring, *_CANCEL}),
    S.starting: frozenset({S.running, S.holding, S.transferring, *_CANCEL}),
    # analysis retry (S08 retryJob) puts a running job back to activated
    S.running: frozenset({S.holding, S.transferring, S.activated, *_CANCEL}),
    # adder decides; job recovery may re-report holding
    S.holding: frozenset({S.finished, S.transferring, *_CANCEL}),
    # finisher on the output subscription's callback; transfer timeout
    S.transferring: frozenset({S.finished, *_CANCEL}),
    S.finished: frozenset(),
    S.failed: frozenset(),
    S.cancelled: frozenset(),
}

# A heartbeat repeats the current state; these states may be "re-entered" without a transition.
HEARTBEAT_STATES = frozenset({S.starting, S.running, S.holding, S.transferring})


def can_move(old: JobStatus | str, new: JobStatus | str) -> bool:
    return JobStatus(new) in ALLOWED[JobStatus(old)]


def sources_of(new: JobStatus | str) -> frozenset[JobStatus]:
    """Every state from which `new` may be reached."""
    new = JobStatus(new)
    return frozenset(old for old, targets in ALLOWED.items() if new in targets)


class FileStatus(StrEnum):
    unknown = "unknown"
    pending = "pending"
    ready = "ready"
    missing = "missing"
    transferring = "transferring"
    failed = "failed"
    skipped = "skipped"
    cancelled = "cancelled"


class FileType(StrEnum):
    input = "input"
    output = "output"
    log = "log"
