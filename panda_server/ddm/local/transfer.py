"""One verified file copy between two storage elements, with the pilot's copy tools.

The server side imports `pilot.copytools` on purpose: the agent moves files exactly as the pilot
does (cp between directories, xrdcp when either end is root://: temp names, --path,
--rm-bad-cksum, --cksum adler32:<expected>, bounded time-outs, process-group kills). A tool makes
one attempt (pilot/copytools/base.py); the agent keeps the retries and back-off across cycles.

After the tool returns, the destination itself is read back — `xrdfs stat` + `query checksum` on an
XRootD SE, size and adler32 of the file on a directory SE — and must match the catalog's size and
adler32; a copy that does not is removed and the attempt fails.
"""

from __future__ import annotations

import dataclasses
import os
import time
from types import ModuleType

from panda_server.ddm.local.rses import is_xrootd
from pilot.copytools import cp, xrdcp
from pilot.copytools.base import TransferContext, TransferError, TransferPolicy, local_path, os_error_kind
from pilot.util import commands

_POLICY = TransferPolicy()  # only for the pilot's per-file time-out: min(300 + size/1e6, 10800) s
REMOVE_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Copy:
    """One file to copy: URLs from rses.replica_url, expected size and adler32 (8 hex digits)."""

    lfn: str
    source: str
    destination: str
    fsize: int
    adler32: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one attempt did: error None on a verified copy; tool, bytes (verified size), seconds."""

    tool: str
    seconds: float
    nbytes: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def timeout_for(fsize: int) -> float:
    """Seconds one copy may take (the pilot's formula); also the agent's lease per file."""
    return _POLICY.timeout(fsize)


def tool_for(source: str, destination: str) -> ModuleType:
    """xrdcp when either end is XRootD, else cp (directory to directory)."""
    return xrdcp if is_xrootd(source) or is_xrootd(destination) else cp


def copy_verified(item: Copy, context: TransferContext) -> Outcome:
    """Copy item.source → item.destination and check the destination: never raises."""
    tool = tool_for(item.source, item.destination)
    timeout = timeout_for(item.fsize)
    start = time.monotonic()
    try:
        tool.copy(_tool_form(item.source), _tool_form(item.destination), timeout=timeout, context=context,
                  fsize=item.fsize, adler32=item.adler32)  # fmt: skip
        size = _verify(item, timeout, context)
    except TransferError as exc:
        return Outcome(tool.NAME, time.monotonic() - start, error=f"{tool.NAME} {exc.kind}: {exc.text}")
    except OSError as exc:  # a tool's own file handling (mkdir, rename)
        kind = os_error_kind(exc)
        return Outcome(tool.NAME, time.monotonic() - start,
                       error=f"{tool.NAME} {kind}: {exc.strerror or exc}: {exc.filename or ''}")  # fmt: skip
    return Outcome(tool.NAME, time.monotonic() - start, nbytes=size)


def _tool_form(url: str) -> str:
    """A local end as a plain path (xrdcp takes local files as paths), an XRootD URL as it is."""
    return url if is_xrootd(url) else local_path(url)


def _verify(item: Copy, timeout: float, context: TransferContext) -> int:
    """The destination's size and adler32 against the catalog; a bad copy is removed."""
    reader = xrdcp if is_xrootd(item.destination) else cp
    size, adler = reader.stat(item.destination, timeout=timeout, context=context)
    problem = None
    if size != item.fsize:
        problem = TransferError("size", f"destination has {size} bytes, the catalog says {item.fsize}")
    elif adler != item.adler32:
        problem = TransferError("checksum", f"destination adler32 {adler}, the catalog says {item.adler32}")
    if problem is not None:
        remove(item.destination, context)
        raise problem
    return size


def remove(url: str, context: TransferContext) -> None:
    """Delete a file from a directory SE or (xrdfs rm) an XRootD SE; errors are ignored."""
    if not is_xrootd(url):
        try:
            os.unlink(local_path(url))
        except (OSError, TransferError):
            pass
        return
    server, path = xrdcp.split_url(url)
    env = {**os.environ, "XRD_CONNECTIONRETRY": "1", "XRD_REQUESTTIMEOUT": str(int(REMOVE_TIMEOUT))}
    if context.proxy:
        env["X509_USER_PROXY"] = context.proxy
    if context.ca_dir:
        env["X509_CERT_DIR"] = context.ca_dir
    commands.run([xrdcp.XRDFS, server, "rm", path], timeout=REMOVE_TIMEOUT, env=env)
