"""The payload command: the job's transformation with its parameters (reference/pilot.md §3.4).

A transformation given as a URL is fetched only from an allowed base (the server's /cache/ or
--baseurls), or copied from the local --trf-dir when it holds a script of that name; it is made
executable and run as ./<name> <jobPars> in the job dir (error 1149 when it cannot be had).
A plain name is a command installed at the site (classic production releases): it must resolve
to an executable (1346 otherwise).
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pilot.copytools import TOOLS
from pilot.copytools.base import TransferContext, TransferError
from pilot.errors import PilotFailure
from pilot.job import Job
from pilot.workdir import RESERVED

DOWNLOAD_TIMEOUT = 300.0


def command(job: Job, jobdir: Path, cfg: Mapping[str, Any], job_pars: str, path: str,
            should_abort: Callable[[], bool]) -> str:  # fmt: skip
    trf = job.transformation
    if not trf:
        raise PilotFailure(1346, "the job has no transformation")
    if trf.startswith(("http://", "https://")):
        name = _fetch(trf, jobdir, cfg, should_abort)
        return f"./{shlex.quote(name)} {job_pars}".rstrip()
    found = trf if "/" in trf else shutil.which(trf, path=path)
    if not found or not os.access(found, os.X_OK):
        raise PilotFailure(1346, f"transformation {trf!r} is not an executable on this node (PATH={path})")
    return f"{trf} {job_pars}".rstrip()


def fetched_name(trf: str) -> str:
    """The file a transformation URL is saved as in the job dir; "" for an installed command."""
    return trf.rstrip("/").rsplit("/", 1)[-1] if trf.startswith(("http://", "https://")) else ""


def _fetch(url: str, jobdir: Path, cfg: Mapping[str, Any], should_abort: Callable[[], bool]) -> str:
    name = fetched_name(url)
    if not name or name.startswith(".") or "/" in name or name in RESERVED or name.startswith("jobState-"):
        raise PilotFailure(1149, f"transformation URL {url} names no usable file")
    target = jobdir / name
    local = Path(cfg.get("trf_dir") or "/nonexistent") / name
    # a base is a directory: "https://a.org/trf" must not also allow "https://a.org/trf.evil/…"
    bases = tuple(b if b.endswith("/") else b + "/" for b in cfg.get("trf_bases") or ())
    if not any(url.startswith(base) for base in bases):
        raise PilotFailure(1149, f"transformation {url} is not under an allowed base URL ({', '.join(bases)}); "
                                 "add the base with --baseurls")  # fmt: skip
    if local.is_file():
        shutil.copyfile(local, target)
    else:
        context = TransferContext(proxy=cfg.get("proxy"), ca_dir=cfg.get("ca_dir"), should_abort=should_abort)
        try:
            TOOLS["https"].copy(url, str(target), timeout=DOWNLOAD_TIMEOUT, context=context)
        except TransferError as exc:
            raise PilotFailure(1149, f"cannot download transformation {url}: {exc}") from None
    try:
        target.chmod(0o755)
    except OSError as exc:
        raise PilotFailure(1143, f"cannot make {target} executable: {exc.strerror}") from None
    return name
