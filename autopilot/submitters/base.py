"""What every submitter gets and gives: a batch of pilots in, batch ids and batch states out.

A submitter is one module in this package with a class that has `name` and the three methods of
`Submitter`. It only translates: the factory decides how many pilots, names them, and keeps the
tracking rows; the submitter puts the batch's pilots into its batch system and reports what that
system says about them. docs/autopilot.md, "Adding a batch system".
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from schedconfig.model import QueueSpec


class BatchState(enum.StrEnum):
    """A pilot as its batch system sees it (the factory adds submitted and lost)."""

    queued = "queued"  # pending, idle, held: not started yet
    running = "running"
    done = "done"  # the wrapper ended by itself; exit_code says how (the factory judges it)
    failed = "failed"  # the batch system ended it: cancelled, removed, time or memory limit, node failure


@dataclasses.dataclass(frozen=True)
class BatchStatus:
    state: BatchState
    exit_code: int | None = None  # the wrapper's exit code when the batch system knows it
    info: str = ""  # the batch system's own word for the state: PENDING, CANCELLED, JobStatus=5, ...
    workernode: str = ""


class SubmitError(RuntimeError):
    """Submission failed; `submitted` holds the batch ids of the batch's first pilots that did go in."""

    def __init__(self, message: str, submitted: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.submitted = list(submitted)


class BatchCommandError(RuntimeError):
    """A batch command could not run or said it failed (the message has its output)."""


@dataclasses.dataclass(frozen=True)
class PilotBatch:
    """`count` pilots for one queue, as the factory hands them to a submitter.

    Pilot i (0-based) is named `<name>.<i>` (its tpid); its stdout, stderr and exit-code file are
    `<log_dir>/<tpid>.out|.err|.rc` and its log URL (GTAG, which the pilot reports as pilotID) is
    `<log_url>/<tpid>.out`. The per-pilot values take an index that may also be a batch-system
    macro such as HTCondor's "$(Process)", for submitters that send the batch as one submission.
    """

    queue: QueueSpec
    name: str
    count: int
    log_dir: Path
    log_url: str
    executable: Path  # the pilot wrapper
    arguments: tuple[str, ...]  # the wrapper's arguments, the same for every pilot
    environment: Mapping[str, str]  # the same for every pilot (PANDA_JSID, FACTORYQUEUE, ...)
    proxy: Path  # the pilots' X509_USER_PROXY (HTCondor's x509userproxy)

    def tpid(self, index: int | str) -> str:
        return f"{self.name}.{index}"

    def stdout(self, index: int | str) -> Path:
        return self.log_dir / f"{self.tpid(index)}.out"

    def stderr(self, index: int | str) -> Path:
        return self.log_dir / f"{self.tpid(index)}.err"

    def exit_file(self, index: int | str) -> Path:
        return self.log_dir / f"{self.tpid(index)}.rc"

    def pilot_log_url(self, index: int | str) -> str:
        return f"{self.log_url}/{self.tpid(index)}.out"

    def pilot_environment(self, index: int | str) -> dict[str, str]:
        """The whole environment of pilot `index`: the batch's plus its own ids (classic names)."""
        tpid = self.tpid(index)
        own = {"PANDA_TPID": tpid, "APFCID": tpid, "GTAG": self.pilot_log_url(index),
               "PILOT_EXIT_FILE": str(self.exit_file(index))}  # fmt: skip
        return {**self.environment, **own}


# the variables a pilot starts with before its own (nothing of the factory's environment)
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

# what the factory and the wrapper set: a queue's environ may not (it would redirect the pilot
# code, its credentials or its tracking ids)
RESERVED_PREFIXES = ("PANDA_", "PILOT_", "X509_", "APF", "FACTORY")


def queue_environ(queue: QueueSpec) -> dict[str, str]:
    """The queue's schedconfig `environ` ("k=v k2=v2"), read as the pilot reads it (split on
    whitespace); an entry that is not NAME=value is a ValueError naming the queue."""
    out = {}
    for item in queue.environ.split():
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier() or not key.isascii():
            raise ValueError(f"queue {queue.nickname}: schedconfig environ entry {item!r} is not NAME=value")
        if key.startswith(RESERVED_PREFIXES) or key in ("GTAG", "PATH"):
            raise ValueError(f"queue {queue.nickname}: schedconfig environ may not set {key} (the factory's)")
        out[key] = value
    return out


class Submitter(Protocol):
    name: str

    def submit(self, batch: PilotBatch) -> list[str]:
        """Put the batch's pilots in; their batch ids in pilot order (one per pilot). Raises
        SubmitError (with the ids of the pilots that did go in) when not all could be submitted."""
        ...

    def status(self, ids: Sequence[str]) -> dict[str, BatchStatus]:
        """What the batch system says of these pilots; ids it no longer knows are left out.
        Raises BatchCommandError when it cannot be asked (then nothing may be concluded)."""
        ...

    def cancel(self, ids: Sequence[str]) -> None:
        """Remove these pilots from the batch system (queued or running). Raises BatchCommandError."""
        ...
