"""mv: the real pilot's mv tool, for sites whose storage is a local or shared file system.

Stage-in does not copy: it symlinks the source into the job directory (and copies only when a
link cannot be made). Stage-out moves the output to its destination: a rename on the same file
system, else a copy to a temp name, a rename and the removal of the source.
"""

from __future__ import annotations

import errno
import os

from pilot.copytools.base import (
    TransferContext,
    TransferError,
    copy_file,
    local_path,
    os_error_kind,
    remove_quietly,
    stat_local,
)

NAME = "mv"
SCHEMES_IN = frozenset({"file", ""})
SCHEMES_OUT = frozenset({"file", ""})


def copy_in(
    source: str,
    destination: str,
    *,
    timeout: float,
    context: TransferContext,
    fsize: int | None = None,
    adler32: str | None = None,
) -> None:
    """Symlink the local source at destination; copy when a symlink is impossible."""
    src, dst = os.path.abspath(local_path(source)), local_path(destination)
    if not os.path.isfile(src):
        raise TransferError("missing", f"No such file: {src}")
    if os.path.abspath(dst) == src or (os.path.exists(dst) and os.path.samefile(dst, src)):
        return  # already in place (the source itself, or a link to it): never unlink the source
    try:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        if os.path.lexists(dst):
            os.unlink(dst)
        os.symlink(src, dst)
    except OSError:
        copy_file(src, dst, timeout=timeout, context=context)


def copy_out(
    source: str,
    destination: str,
    *,
    timeout: float,
    context: TransferContext,
    fsize: int | None = None,
    adler32: str | None = None,
) -> None:
    """Move the local source to destination (rename, or copy + unlink across file systems)."""
    src, dst = local_path(source), local_path(destination)
    if not os.path.isfile(src):
        raise TransferError("missing", f"No such file: {src}")
    try:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        os.replace(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise TransferError(os_error_kind(exc), f"mv {src} → {dst}: {exc.strerror or exc}") from exc
    copy_file(src, dst, timeout=timeout, context=context)
    remove_quietly(src)


copy = copy_out  # without a direction, mv moves


def stat(url: str, *, timeout: float, context: TransferContext) -> tuple[int, str]:
    """(size, adler32) of a local file."""
    return stat_local(url)
