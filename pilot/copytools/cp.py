"""cp: copy between local paths (shared file systems, a local SE directory).

The copy goes to a hidden temp name in the destination directory and is renamed at the end, so a
killed or failed attempt never leaves a truncated file under the final name.
"""

from __future__ import annotations

from pilot.copytools.base import TransferContext, copy_file, local_path, stat_local

NAME = "cp"
SCHEMES_IN = frozenset({"file", ""})
SCHEMES_OUT = frozenset({"file", ""})


def copy(
    source: str,
    destination: str,
    *,
    timeout: float,
    context: TransferContext,
    fsize: int | None = None,
    adler32: str | None = None,
) -> None:
    """Copy source to destination, creating the destination's directories."""
    copy_file(local_path(source), local_path(destination), timeout=timeout, context=context)


def stat(url: str, *, timeout: float, context: TransferContext) -> tuple[int, str]:
    """(size, adler32) of a local file."""
    return stat_local(url)
