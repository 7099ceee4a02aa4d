"""The pilot's copy tools and the two entry points that drive them: stage_in and stage_out.

As in the real pilot, the queue names an ordered list of tools per activity (acopytools); that list
is the fallback chain. Each file goes through the tools whose URL schemes fit, each tool gets
policy.attempts attempts with back-off, and every copy is verified (size and checksum) before it
counts. The first verified copy wins; if none, a PilotFailure with the real pilot's error code and
a diag naming tool, source → destination, attempts and the tool's last error. See
docs/pilot-copytools.md; the tool module interface is in pilot/copytools/base.py.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from pilot.copytools import cp, https, mv, xrdcp
from pilot.copytools.base import (
    FileTransfer,
    TransferContext,
    TransferError,
    TransferPolicy,
    TransferResult,
    local_path,
    os_error_kind,
    remove_quietly,
    scheme_of,
)
from pilot.errors import PilotFailure
from pilot.util.checksum import adler32_file, md5_file, parse_checksum

__all__ = [
    "TOOLS",
    "FileTransfer",
    "TransferContext",
    "TransferError",
    "TransferPolicy",
    "TransferResult",
    "stage_in",
    "stage_out",
]

log = logging.getLogger("pilot.copytools")

TOOLS: dict[str, ModuleType] = {"cp": cp, "mv": mv, "xrdcp": xrdcp, "https": https}

MAX_TEXT = 400  # characters of a tool's error kept in a diag


@dataclass(frozen=True)
class _Direction:
    """What differs between stage-in and stage-out: schemes, copy function, error codes."""

    name: str
    schemes: str  # module attribute listing the schemes of the remote end
    copy: str  # module function preferred over `copy`
    codes: dict[str, int]  # TransferError kind → pilot error code
    default: int  # code of any other failure


_IN = _Direction(
    "stage-in",
    "SCHEMES_IN",
    "copy_in",
    {"timeout": 1151, "checksum": 1171, "missing": 1331, "nospace": 1098},
    1099,
)
_OUT = _Direction(
    "stage-out",
    "SCHEMES_OUT",
    "copy_out",
    {"timeout": 1152, "checksum": 1172, "nospace": 1333, "exists": 1221},
    1137,
)
_GIVE_UP = {"missing"}  # kinds another attempt with the same tool cannot fix (stage-in)
_MD5_MISMATCH = 1145


@dataclass(frozen=True)
class _Expected:
    """What a verified copy must have: size and (algorithm, hex) checksum, each when known."""

    fsize: int | None
    checksum: tuple[str, str] | None

    @property
    def adler32(self) -> str | None:
        return self.checksum[1] if self.checksum and self.checksum[0] == "adler32" else None


# (one attempt: tool module, file, expected values, time-out, context) → (size, adler32) verified
_Attempt = Callable[[ModuleType, FileTransfer, _Expected, float, TransferContext], tuple[int, str]]


def stage_in(
    tools: Sequence[str], files: Sequence[FileTransfer], *, policy: TransferPolicy, context: TransferContext
) -> list[TransferResult]:
    """Fetch each file's source to its local destination, verified against the catalogue size/checksum."""
    modules = _modules(tools)
    results = []
    for f in files:
        try:
            expected = _Expected(f.fsize, parse_checksum(f.checksum))
        except ValueError as exc:
            raise PilotFailure(1314, f"stage-in of {f.lfn}: {exc}") from exc
        results.append(_transfer(_IN, modules, f, expected, policy, context, _attempt_in))
    return results


def stage_out(
    tools: Sequence[str], files: Sequence[FileTransfer], *, policy: TransferPolicy, context: TransferContext
) -> list[TransferResult]:
    """Send each local output to its destination, verified there against the local size/adler32."""
    modules = _modules(tools)
    results = []
    for f in files:
        expected = _local_output(f)
        results.append(_transfer(_OUT, modules, f, expected, policy, context, _attempt_out))
    return results


def _modules(tools: Sequence[str]) -> list[tuple[str, ModuleType]]:
    unknown = [name for name in tools if name not in TOOLS]
    if unknown or not tools:
        raise PilotFailure(1323, f"unknown copy tool(s) {unknown or list(tools)}; known: {sorted(TOOLS)}")
    return [(name, TOOLS[name]) for name in tools]


def _local_output(f: FileTransfer) -> _Expected:
    """Size and adler32 of a local output before stage-out: 1165 if missing, 1350 if empty."""
    try:
        path = local_path(f.source)
    except TransferError as exc:
        raise PilotFailure(
            1137, f"stage-out of {f.lfn}: the source must be a local file ({exc.text})"
        ) from exc
    if not os.path.isfile(path):
        raise PilotFailure(1165, f"stage-out of {f.lfn}: local output file {path} is missing")
    size = os.path.getsize(path)
    if size == 0:
        raise PilotFailure(1350, f"stage-out of {f.lfn}: local output file {path} is empty (0 bytes)")
    return _Expected(size, ("adler32", adler32_file(path)))


def _transfer(
    direction: _Direction,
    modules: list[tuple[str, ModuleType]],
    f: FileTransfer,
    expected: _Expected,
    policy: TransferPolicy,
    context: TransferContext,
    attempt: _Attempt,
) -> TransferResult:
    """Try the fitting tools in order until one copy is verified; raise the last failure as PilotFailure."""
    remote = f.source if direction is _IN else f.destination
    fitting = [(n, m) for n, m in modules if scheme_of(remote) in getattr(m, direction.schemes)]
    if not fitting:
        names = [n for n, _ in modules]
        raise PilotFailure(
            direction.default,
            f"{direction.name} of {f.lfn}: none of the copy tools {names} handles {scheme_of(remote) or 'file'} "
            f"URLs ({remote})",
        )
    failures: list[tuple[str, int, TransferError]] = []
    total = 0
    for name, module in fitting:
        outcome, tries = _with_retries(direction, name, module, f, expected, policy, context, attempt)
        total += tries
        if isinstance(outcome, TransferError):
            failures.append((name, tries, outcome))
            continue
        size, adler = outcome
        return TransferResult(f.lfn, f.source, f.destination, size, adler, name, total)
    raise _failure(direction, f, expected, failures, policy)


def _with_retries(
    direction: _Direction,
    name: str,
    module: ModuleType,
    f: FileTransfer,
    expected: _Expected,
    policy: TransferPolicy,
    context: TransferContext,
    attempt: _Attempt,
) -> tuple[tuple[int, str] | TransferError, int]:
    """Up to policy.attempts attempts with one tool: ((size, adler32) or the last error, attempts made)."""
    timeout = policy.timeout(expected.fsize)
    error = TransferError("failed", "no attempt made")
    for n in range(1, max(1, policy.attempts) + 1):
        if context.aborted():
            _abort(direction, f)
        start = time.monotonic()
        try:
            verified = attempt(module, f, expected, timeout, context)
        except TransferError as exc:
            error = exc
        except OSError as exc:  # a tool's own file handling (mkdir, rename) failed
            error = TransferError(os_error_kind(exc), f"{exc.strerror or exc}: {exc.filename or ''}")
        else:
            _log(direction, f, name, n, policy, start, f"ok {verified[0]} bytes adler32 {verified[1]}")
            return verified, n
        _log(direction, f, name, n, policy, start, f"{error.kind}: {error.text}", level=logging.WARNING)
        if error.kind == "aborted":
            _abort(direction, f)
        if (direction is _IN and error.kind in _GIVE_UP) or n >= policy.attempts:
            return error, n
        if not _pause(policy.delay(n), context):
            _abort(direction, f)
    return error, max(1, policy.attempts)


def _attempt_in(
    module: ModuleType, f: FileTransfer, expected: _Expected, timeout: float, context: TransferContext
) -> tuple[int, str]:
    copy = getattr(module, _IN.copy, module.copy)
    copy(f.source, f.destination, timeout=timeout, context=context, fsize=f.fsize, adler32=expected.adler32)
    destination = local_path(f.destination)
    return _verify_local(destination, expected, removable=not _is_source(destination, f.source))


def _attempt_out(
    module: ModuleType, f: FileTransfer, expected: _Expected, timeout: float, context: TransferContext
) -> tuple[int, str]:
    copy = getattr(module, _OUT.copy, module.copy)
    copy(
        f.source,
        f.destination,
        timeout=timeout,
        context=context,
        fsize=expected.fsize,
        adler32=expected.adler32,
    )
    size, adler = module.stat(f.destination, timeout=timeout, context=context)
    if size != expected.fsize:
        raise TransferError("size", f"destination has {size} bytes, the local file {expected.fsize}")
    if adler != expected.adler32:
        raise TransferError("checksum", f"destination adler32 {adler} != local {expected.adler32}")
    return size, adler


def _is_source(path: str, source: str) -> bool:
    """True when path itself (not a symlink to it) is the local source file: then it must never be removed."""
    if scheme_of(source) not in ("", "file"):
        return False
    try:
        here, there = os.lstat(path), os.stat(local_path(source))
    except (OSError, TransferError):
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _verify_local(path: str, expected: _Expected, *, removable: bool) -> tuple[int, str]:
    """Size and checksum of a fetched file against the catalogue; a bad copy is removed (never its source)."""
    try:
        size, adler = os.path.getsize(path), adler32_file(path)
        if expected.fsize is not None and size != expected.fsize:
            raise TransferError("size", f"local copy has {size} bytes, the catalogue says {expected.fsize}")
        if expected.checksum is not None:
            algo, value = expected.checksum
            got = adler if algo == "adler32" else md5_file(path)
            if got != value:
                raise TransferError(
                    "checksum", f"{algo} of the local copy is {got}, the catalogue says {value}"
                )
    except OSError as exc:
        raise TransferError("failed", f"cannot verify {path}: {exc.strerror or exc}") from exc
    except TransferError:
        if removable:
            remove_quietly(path)
        raise
    return size, adler


def _failure(
    direction: _Direction,
    f: FileTransfer,
    expected: _Expected,
    failures: list[tuple[str, int, TransferError]],
    policy: TransferPolicy,
) -> PilotFailure:
    """The PilotFailure for the last tool's last error, with the earlier tools summarised."""
    name, tries, error = failures[-1]
    code = direction.codes.get(error.kind, direction.default)
    if direction is _IN and error.kind == "checksum" and expected.checksum and expected.checksum[0] == "md5":
        code = _MD5_MISMATCH
    diag = f"{name} {f.source} → {f.destination} {_verb(error.kind)} after {_attempts(tries)}"
    if error.kind == "timeout":
        diag += f" of {policy.timeout(expected.fsize):g} s"
    diag += f" (last: {error.text[-MAX_TEXT:]})"
    earlier = [
        f"{n} {_verb(e.kind)} after {_attempts(t)} (last: {e.text[-MAX_TEXT:]})" for n, t, e in failures[:-1]
    ]
    if earlier:
        diag += "; before that " + "; ".join(earlier)
    return PilotFailure(code, diag)


def _verb(kind: str) -> str:
    return {
        "timeout": "timed out",
        "missing": "failed: source not found",
        "checksum": "failed the checksum check",
        "size": "failed the size check",
        "exists": "failed: destination exists",
        "nospace": "failed: no space left",
    }.get(kind, "failed")


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("" if n == 1 else "s")


def _abort(direction: _Direction, f: FileTransfer) -> None:
    log.warning("%s of %s aborted", direction.name, f.lfn)
    raise PilotFailure(direction.default, f"aborted: {direction.name} of {f.lfn} stopped by the abort flag")


def _pause(seconds: float, context: TransferContext) -> bool:
    """Sleep between attempts, waking for the abort flag: False when aborted."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if context.aborted():
            return False
        time.sleep(min(0.1, left))
    return not context.aborted()


def _log(
    direction: _Direction,
    f: FileTransfer,
    tool: str,
    n: int,
    policy: TransferPolicy,
    start: float,
    outcome: str,
    level: int = logging.INFO,
) -> None:
    """One line per attempt: direction, lfn, tool, attempt, seconds, outcome."""
    seconds = time.monotonic() - start
    log.log(
        level,
        "%s %s: tool=%s attempt=%d/%d %.1fs %s",
        direction.name,
        f.lfn,
        tool,
        n,
        policy.attempts,
        seconds,
        outcome,
    )
