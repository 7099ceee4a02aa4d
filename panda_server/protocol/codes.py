"""Numbers with a wire meaning: dispatcher StatusCode and the job error-code families.

The values are frozen by tests/unit/protocol/test_codes.py: pilots and monitors key on them.
"""

from __future__ import annotations

from enum import IntEnum


class StatusCode(IntEnum):
    """jobdispatcher/Protocol.py: the StatusCode of every legacy reply."""

    SUCCESS = 0
    TIMEOUT = 10
    NO_JOBS = 20
    FAILED = 30
    NON_SECURE = 40
    INVALID = 50
    ROLE = 60
    PERMISSION = 70
    MISSING_KEY = 80
    PROXY_ERROR = 90


class JobDispatcherError(IntEnum):
    """jobDispatcherErrorCode (watcher)."""

    LOST_HEARTBEAT = 100
    RECOVERY_FAILED = 101
    SENT_TIMEOUT = 102
    HOLDING_TIMEOUT = 103
    TRANSFERRING_TIMEOUT = 104
    OTHER_TIMEOUT = 105


class TaskBufferError(IntEnum):
    """taskBufferErrorCode (kill, expiry, abort, reassign)."""

    KILLED = 100
    TRANSFER_TIMEOUT = 101
    EXPIRED = 102
    ABORTED = 103
    WAITING_TIMEOUT = 104
    REASSIGNED = 105


class DdmError(IntEnum):
    """ddmErrorCode (setupper, adder)."""

    SETUPPER = 100
    GUID = 101
    LOST_FILE = 110
    ADDER = 200
    SUBSCRIPTION = 201
    LOCATION_REGISTRATION = 203
    MISSING_NEVENTS = 204
    INCONSISTENT_GUID = 205
    WRONG_RSE = 206


class BrokerageError(IntEnum):
    RELEASE_NOT_FOUND = 100
    VOMS = 101


class SupError(IntEnum):
    INVALID_BATCH_ID = 1
    WORKER_DONE = 2


class PilotError(IntEnum):
    """pilotErrorCode values the server itself interprets (pilot3 errorcodes.py numbering)."""

    GENERAL = 1008
    STAGEIN_FAILED = 1099
    STAGEOUT_FAILED = 1137
    PANDA_KILL = 1144
    LOOPING_JOB = 1150
    KILLED_BY_SIGNAL = 1200
    SIGTERM = 1201


# killJobs `code` argument → (taskBufferErrorCode, diag). S08 DBProxy.killJob; other codes = plain kill.
KILL_CODES: dict[str, tuple[TaskBufferError, str]] = {
    "2": (TaskBufferError.EXPIRED, "expired 7 days after submission"),
    "3": (TaskBufferError.ABORTED, "aborted by ExtIF"),
    "4": (TaskBufferError.EXPIRED, "waiting timeout"),
}
