"""xrdcp: XRootD transfers through the xrdcp/xrdfs command-line clients.

Uploads use -f (a retried upload overwrites the partial file of a failed one), --path (mkdir -p),
--rm-bad-cksum (xrdcp would otherwise leave a file with a wrong checksum on the SE) and, when the
adler32 is known, --cksum adler32:<value> for an end-to-end check. XRD_CONNECTIONRETRY=1 because a
client against a dead server otherwise retries for minutes; our own time-out kills it anyway.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from pilot.copytools.base import TransferContext, TransferError, remove_quietly, scheme_of, temp_name
from pilot.credentials import fd_of
from pilot.util import commands

NAME = "xrdcp"
SCHEMES_IN = frozenset({"root"})
SCHEMES_OUT = frozenset({"root"})
XRDCP = "xrdcp"
XRDFS = "xrdfs"

_RC_NO_SUCH_FILE = 54
_RC_CHECKSUM = 53
_RC_EXISTS = 50


def copy(
    source: str,
    destination: str,
    *,
    timeout: float,
    context: TransferContext,
    fsize: int | None = None,
    adler32: str | None = None,
) -> None:
    """One xrdcp run; download when the source is root://, upload when the destination is."""
    upload = scheme_of(destination) == "root"
    argv = [XRDCP, "--nopbar", "-f"]
    if adler32:
        argv += ["--cksum", f"adler32:{adler32}"]
    if upload:
        argv += ["--path", "--rm-bad-cksum"]
        target = destination
    else:  # download into a temp name: a killed xrdcp leaves its partial file there
        os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
        target = temp_name(destination)
    env = _env(timeout, context)
    result = commands.run([*argv, source, target], timeout=timeout, should_abort=context.should_abort, env=env,
                          pass_fds=_fds(context))  # fmt: skip
    if not result.ok:
        if not upload:
            remove_quietly(target)
        raise _error(result, "", timeout)
    if not upload:
        os.replace(target, destination)


def stat(url: str, *, timeout: float, context: TransferContext) -> tuple[int, str]:
    """(size, adler32) of a file on the SE from `xrdfs stat` and `xrdfs query checksum`."""
    server, path = split_url(url)
    env = _env(timeout, context)
    out = _xrdfs([XRDFS, server, "stat", path], timeout, context, env)
    size = re.search(r"^Size:\s+(\d+)", out, re.M)
    out = _xrdfs([XRDFS, server, "query", "checksum", path], timeout, context, env)
    value = re.search(r"adler32\s+([0-9a-fA-F]{1,8})", out)
    if size is None or value is None:
        raise TransferError("failed", f"xrdfs {server}: cannot read size/adler32 of {path} from {out!r}")
    return int(size.group(1)), value.group(1).lower().zfill(8)


def split_url(url: str) -> tuple[str, str]:
    """("root://host:port", "/path") of root://host:port//path."""
    parts = urlsplit(url)
    if parts.scheme not in ("root", "roots") or not parts.netloc:
        raise TransferError("failed", f"{url} is not a root:// URL")
    return f"{parts.scheme}://{parts.netloc}", "/" + parts.path.lstrip("/")


def _xrdfs(argv: list[str], timeout: float, context: TransferContext, env: dict[str, str]) -> str:
    result = commands.run(
        argv, timeout=timeout, should_abort=context.should_abort, env=env, pass_fds=_fds(context)
    )
    if not result.ok:
        raise _error(result, " ".join(argv[2:4]), timeout)
    return result.stdout_tail


def _env(timeout: float, context: TransferContext) -> dict[str, str]:
    """The XRootD client settings: one connection try, request/stream time-outs from ours, credentials."""
    seconds = str(max(1, int(timeout)))
    env = dict(os.environ)
    env.update(
        XRD_CONNECTIONRETRY="1", XRD_REQUESTTIMEOUT=seconds, XRD_STREAMTIMEOUT=seconds,
        XRD_CONNECTIONWINDOW=str(max(1, min(int(timeout), 120))),
    )  # fmt: skip
    if context.proxy:
        env["X509_USER_PROXY"] = context.proxy
    if context.ca_dir:
        env["X509_CERT_DIR"] = context.ca_dir
    return env


def _fds(context: TransferContext) -> tuple[int, ...]:
    """A proxy held in memory (/proc/self/fd/N) reaches xrdcp as the same descriptor number."""
    fd = fd_of(context.proxy)
    return () if fd is None else (fd,)


def _error(result: commands.CommandResult, label: str, timeout: float) -> TransferError:
    """Map an xrdcp/xrdfs outcome to a TransferError kind (exit codes and [errno] texts of XRootD 5)."""
    last = result.last_error_line()
    prefix = f"{label}: " if label else ""
    if result.aborted:
        return TransferError("aborted", f"{prefix}aborted")
    if result.timed_out:
        return TransferError(
            "timeout", f"{prefix}no result within {timeout:g} s" + (f"; {last}" if last else "")
        )
    text = (result.stderr_tail + result.stdout_tail).lower()
    kind = "failed"
    if result.returncode == _RC_NO_SUCH_FILE or "[3011]" in text or "no such file" in text:
        kind = "missing"
    elif result.returncode == _RC_CHECKSUM or "checksum" in text:
        kind = "checksum"
    elif "no space left" in text or "[3021]" in text:
        kind = "nospace"
    elif result.returncode == _RC_EXISTS and "file exists" in text:
        kind = "exists"
    return TransferError(kind, prefix + (last or f"exit code {result.returncode}"))
