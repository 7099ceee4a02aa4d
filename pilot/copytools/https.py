"""https: download a file over HTTPS (or HTTP) with requests: sites' WebDAV doors, the panda cache.

Download only (no SCHEMES_OUT). The environment is ignored (trust_env False: a stray
REQUESTS_CA_BUNDLE or proxy variable must not change where we connect or whom we trust); the
server is verified against context.ca_dir and the grid proxy is the client certificate. The whole
transfer has a deadline, checked between reads (each read waits at most READ_WAIT s), and a size
cap so a wrong URL cannot fill the disk.
"""

from __future__ import annotations

import os
import re
import time

import requests
import urllib3

from pilot.copytools.base import (
    TransferContext,
    TransferError,
    local_path,
    os_error_kind,
    remove_quietly,
    temp_name,
)

NAME = "https"
SCHEMES_IN = frozenset({"https", "http"})
SCHEMES_OUT: frozenset[str] = frozenset()
MAX_SIZE = 10 * 2**30  # bytes accepted when the expected size is unknown
CHUNK = 1 << 16
READ_WAIT = 20.0  # s: the longest a single socket operation may block


def copy(
    source: str,
    destination: str,
    *,
    timeout: float,
    context: TransferContext,
    fsize: int | None = None,
    adler32: str | None = None,
) -> None:
    """Stream source into a temp file next to destination, then rename it."""
    deadline = time.monotonic() + timeout
    cap = fsize if fsize is not None else MAX_SIZE
    dst = local_path(destination)
    tmp = temp_name(dst)
    what = "GET"
    try:
        with _session(context) as session:
            with session.get(source, stream=True, timeout=_wait(deadline), headers=_IDENTITY) as resp:
                _check_status(resp, what)
                _check_length(resp.headers.get("Content-Length"), cap, what)
                os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
                with open(tmp, "wb") as f:
                    _stream(resp, f, cap=cap, deadline=deadline, context=context, what=what)
        os.replace(tmp, dst)
    except BaseException as exc:
        remove_quietly(tmp)
        if isinstance(exc, TransferError):
            raise
        if isinstance(exc, requests.Timeout | urllib3.exceptions.TimeoutError):
            raise TransferError("timeout", f"{what} timed out: {exc}") from exc
        if isinstance(exc, requests.RequestException | urllib3.exceptions.HTTPError):
            raise TransferError("failed", f"{what}: {exc}") from exc
        if isinstance(exc, OSError):
            raise TransferError(os_error_kind(exc), f"{what}: {exc.strerror or exc}") from exc
        raise


def stat(url: str, *, timeout: float, context: TransferContext) -> tuple[int, str]:
    """(size, adler32) from a HEAD with Want-Digest: adler32 (RFC 3230, as WebDAV storage answers)."""
    deadline = time.monotonic() + timeout
    what = "HEAD"
    try:
        with _session(context) as session:
            resp = session.head(url, timeout=_wait(deadline), headers={"Want-Digest": "adler32", **_IDENTITY})
    except requests.Timeout as exc:
        raise TransferError("timeout", f"{what} timed out: {exc}") from exc
    except requests.RequestException as exc:
        raise TransferError("failed", f"{what}: {exc}") from exc
    _check_status(resp, what)
    digest = re.search(r"adler32=([0-9a-fA-F]{1,8})", resp.headers.get("Digest", ""), re.I)
    length = resp.headers.get("Content-Length", "")
    if digest is None or not length.isdigit():
        raise TransferError("failed", f"{what}: no Content-Length or adler32 Digest in the answer")
    return int(length), digest.group(1).lower().zfill(8)


_IDENTITY = {"Accept-Encoding": "identity"}  # the bytes on disk, not a compressed stream


def _session(context: TransferContext) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = context.ca_dir or True
    if context.proxy:
        session.cert = context.proxy
    return session


def _wait(deadline: float) -> tuple[float, float]:
    """(connect, read) socket time-outs: what is left of the deadline, at most READ_WAIT."""
    left = max(0.5, min(deadline - time.monotonic(), READ_WAIT))
    return left, left


def _check_status(resp: requests.Response, what: str) -> None:
    if resp.status_code < 300:
        return
    status = f"HTTP {resp.status_code} {resp.reason}"
    if resp.status_code in (404, 410):
        raise TransferError("missing", f"{what}: No such file ({status})")
    if resp.status_code == 507:
        raise TransferError("nospace", f"{what}: No space left ({status})")
    raise TransferError("failed", f"{what}: {status}")


def _check_length(header: str | None, cap: int, what: str) -> None:
    if header and header.isdigit() and int(header) > cap:
        raise TransferError("size", f"{what}: server announces {header} bytes, more than the {cap} expected")


def _stream(
    resp: requests.Response, f, *, cap: int, deadline: float, context: TransferContext, what: str
) -> None:
    """Copy the body to f, stopping at the deadline, on abort or past cap bytes."""
    read = getattr(resp.raw, "read1", resp.raw.read)  # read1: return what has arrived, do not fill
    done = 0
    while chunk := read(CHUNK):
        done += len(chunk)
        if done > cap:
            raise TransferError("size", f"{what}: more than the {cap} bytes expected arrived")
        if context.aborted():
            raise TransferError("aborted", f"{what}: aborted")
        if time.monotonic() > deadline:
            raise TransferError("timeout", f"{what}: timed out with {done} bytes received")
        f.write(chunk)
