"""Running batch-system commands: bounded in time, output captured, failures as BatchCommandError."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence

from autopilot.submitters.base import BatchCommandError

log = logging.getLogger("panda.autopilot")

TIMEOUT = 60.0  # seconds any one batch command may take


@dataclasses.dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[..., Completed]


def run(argv: Sequence[str], *, input: str | None = None, env: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT) -> Completed:  # fmt: skip
    """Run a batch command; a missing program or a time-out is a BatchCommandError. A non-zero exit
    is returned, not raised: the caller knows which exits mean what (use `checked`)."""
    if shutil.which(argv[0]) is None:
        raise BatchCommandError(f"{argv[0]}: command not found (is the batch system's client installed?)")
    try:
        proc = subprocess.run(list(argv), input=input, env=dict(env) if env is not None else None,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise BatchCommandError(f"{argv[0]} did not answer within {timeout:.0f} s") from exc
    except OSError as exc:
        raise BatchCommandError(f"{argv[0]}: {exc}") from exc
    log.debug("%s -> %d", " ".join(argv), proc.returncode)
    return Completed(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def checked(result: Completed) -> Completed:
    """The result, or BatchCommandError naming the command, its exit code and what it printed."""
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise BatchCommandError(f"{result.argv[0]} exited with {result.returncode}: {said}")
    return result
