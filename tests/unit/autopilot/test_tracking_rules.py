"""What a pilot's tracking row becomes, from its batch system's word and its wrapper's exit code."""

from __future__ import annotations

import pytest

from autopilot.submitters.base import BatchState, BatchStatus
from autopilot.tracking import Change, next_state

Q, R, D, F = BatchState.queued, BatchState.running, BatchState.done, BatchState.failed

# (case, current state, batch status or None, reported exit, seconds since submission, expected)
TABLE = [
    ("new, not shown yet", "submitted", None, None, 10, None),
    ("unseen past the grace", "submitted", None, None, 400, Change("lost", None, "not known to slurm and no exit code reported")),
    ("running, then gone", "running", None, None, 10, Change("lost", None, "not known to slurm and no exit code reported")),
    ("gone, but reported 0", "running", None, 0, 10, Change("done", 0, "the pilot ran its jobs")),
    ("gone, reported no job", "queued", None, 82, 10, Change("done", 82, "the pilot found no job")),
    ("gone, reported 65", "running", None, 65, 10, Change("failed", 65, "the wrapper exited with 65")),
    ("pending", "submitted", BatchStatus(Q, info="PENDING"), None, 1, Change("queued", None, "PENDING")),
    ("still pending", "queued", BatchStatus(Q, info="PENDING"), None, 1, None),
    ("starts", "queued", BatchStatus(R, workernode="wn1"), None, 1, Change("running", None, None, "wn1")),
    ("straight to running", "submitted", BatchStatus(R), None, 1, Change("running")),
    ("requeued: stays running", "running", BatchStatus(Q, info="REQUEUED"), None, 1, None),
    ("ended 0", "running", BatchStatus(D, 0, "COMPLETED", "wn1"), None, 1, Change("done", 0, "the pilot ran its jobs", "wn1")),
    ("ended 82", "running", BatchStatus(D, 82, "FAILED"), 82, 1, Change("done", 82, "the pilot found no job")),
    ("ended 91", "running", BatchStatus(D, 91, "FAILED"), None, 1, Change("failed", 91, "the wrapper exited with 91")),
    ("ended, code from the file", "running", BatchStatus(D, None, "exited"), 0, 1, Change("done", 0, "the pilot ran its jobs")),
    ("ended, no code at all", "running", BatchStatus(D), None, 1, Change("failed", None, "slurm: ended without an exit code")),
    ("cancelled", "running", BatchStatus(F, None, "CANCELLED"), 143, 1, Change("failed", 143, "slurm: CANCELLED")),
    ("timeout", "running", BatchStatus(F, 0, "TIMEOUT"), None, 1, Change("failed", 0, "slurm: TIMEOUT")),
    ("cancelled while queued", "queued", BatchStatus(F, None, "CANCELLED"), None, 1, Change("failed", None, "slurm: CANCELLED")),
    ("done stays done", "done", None, None, 9999, None),
    ("lost stays lost", "lost", BatchStatus(R), None, 1, None),
    ("failed stays failed", "failed", BatchStatus(D, 0), 0, 1, None),
]  # fmt: skip


@pytest.mark.parametrize("case, current, seen, reported, age, expected", TABLE, ids=[r[0] for r in TABLE])
def test_next_state(case, current, seen, reported, age, expected):
    assert next_state(current, seen, reported, unseen_for=age, grace=300, system="slurm") == expected
