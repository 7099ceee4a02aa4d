"""What every copy tool shares: the tool interface, transfer records, the retry policy and local helpers.

A copy tool is one module (like the real pilot's pilot/copytool/*.py) registered in
pilot.copytools.TOOLS. It must define:

    NAME: str                      the name used in queuedata acopytools ("xrdcp")
    SCHEMES_IN: set[str]           URL schemes of stage-in sources it reads ("" = a plain path)
    SCHEMES_OUT: set[str]          URL schemes of stage-out destinations it writes (empty: download only)
    copy(source, destination, *, timeout: float, context: TransferContext,
         fsize: int | None = None, adler32: str | None = None) -> None
        transfer one file within `timeout` s, honouring context.should_abort; fsize and adler32
        are the expected values when known (a tool may use them for a size cap or an end-to-end
        check). Raise
        TransferError(kind, text) on failure; never leave a partial destination under the final name.
    stat(url, *, timeout: float, context: TransferContext) -> tuple[int, str]
        (size, adler32) of the file at url: how stage-out verifies the destination.

and may define copy_in / copy_out with copy's signature when the direction matters (mv links on
stage-in and moves on stage-out). The caller (pilot.copytools.stage_in/stage_out) does the
retries, the back-off and the size/checksum verification; a tool makes exactly one attempt.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pilot.util.checksum import adler32_file

KINDS = frozenset({"timeout", "missing", "checksum", "size", "exists", "nospace", "failed", "aborted"})
CHUNK = 1 << 20  # bytes per step of a local copy (deadline and abort checked between steps)
BACKOFF_CAP = 60.0  # s: the longest wait between two attempts


class TransferError(Exception):
    """One failed transfer attempt: kind (see KINDS) decides the error code, text goes into the diag."""

    def __init__(self, kind: str, text: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown transfer error kind {kind!r}")
        self.kind = kind
        self.text = text
        super().__init__(f"{kind}: {text}")


@dataclass(frozen=True)
class FileTransfer:
    """One file to move: checksum in the job's form ("ad:0a1b2c3d" / "md5:…"), fsize in bytes."""

    lfn: str
    source: str
    destination: str
    fsize: int | None = None
    checksum: str | None = None


@dataclass(frozen=True)
class TransferResult:
    """A verified transfer: the size and adler32 the destination has, which tool did it, total attempts."""

    lfn: str
    source: str
    destination: str
    fsize: int
    adler32: str
    tool: str
    attempts: int


@dataclass(frozen=True)
class TransferPolicy:
    """Attempts per tool, back-off (first wait s, doubling, capped at 60) and the per-file time-out."""

    attempts: int = 3
    backoff: float = 5.0
    timeout_base: float = 300.0
    timeout_max: float = 10800.0
    timeout_fixed: float | None = None

    def timeout(self, size: int | None) -> float:
        """The pilot's get_timeout: min(300 + size/1e6, 10800) s, a 1 MB/s floor (or timeout_fixed)."""
        if self.timeout_fixed is not None:
            return self.timeout_fixed
        return min(self.timeout_base + (size or 0) / 1e6, self.timeout_max)

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based)."""
        return min(self.backoff * 2 ** max(0, attempt - 1), BACKOFF_CAP)


@dataclass(frozen=True)
class TransferContext:
    """Credentials and the abort flag a tool needs: proxy file (cert+key), CA directory, should_abort."""

    proxy: str | None = None
    ca_dir: str | None = None
    should_abort: Callable[[], bool] | None = None

    def aborted(self) -> bool:
        return self.should_abort is not None and bool(self.should_abort())


def scheme_of(url: str) -> str:
    """The URL scheme in lower case; "" for a plain path."""
    if "://" not in url:
        return ""
    return urlsplit(url).scheme.lower()


def local_path(url: str) -> str:
    """The file-system path of a plain path or a file:// URL (file://localhost/… too)."""
    if scheme_of(url) == "":
        return url
    parts = urlsplit(url)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        raise TransferError("failed", f"{url} is not a local path")
    return unquote(parts.path)


def temp_name(path: str) -> str:
    """Where a copy is written before it is renamed to path (same directory, so rename is atomic)."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.part-{os.getpid()}")


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def os_error_kind(exc: OSError) -> str:
    """The TransferError kind of an OSError from a local copy."""
    return {errno.ENOENT: "missing", errno.ENOSPC: "nospace", errno.EDQUOT: "nospace"}.get(
        exc.errno or 0, "failed"
    )


def copy_file(source: str, destination: str, *, timeout: float, context: TransferContext) -> None:
    """Copy a local file in 1 MiB steps into a temp name, then rename: honours the deadline and abort."""
    if not os.path.isfile(source):
        raise TransferError("missing", f"No such file: {source}")
    deadline = time.monotonic() + timeout
    tmp = temp_name(destination)
    try:
        os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(CHUNK):
                if context.aborted():
                    raise TransferError("aborted", "aborted")
                if time.monotonic() > deadline:
                    raise TransferError("timeout", f"local copy timed out after {timeout:g} s")
                dst.write(chunk)
        os.replace(tmp, destination)
    except OSError as exc:
        remove_quietly(tmp)
        raise TransferError(os_error_kind(exc), f"{exc.strerror or exc}: {exc.filename or source}") from exc
    except TransferError:
        remove_quietly(tmp)
        raise


def stat_local(url: str) -> tuple[int, str]:
    """(size, adler32) of a local file; TransferError "missing" when it is not there."""
    path = local_path(url)
    try:
        return os.path.getsize(path), adler32_file(path)
    except FileNotFoundError as exc:
        raise TransferError("missing", f"No such file: {path}") from exc
    except OSError as exc:
        raise TransferError("failed", f"cannot read {path}: {exc.strerror or exc}") from exc
