"""Setupper, destination side (S08 _setupDestination): where outputs go and the `_sub` datasets.

A job's destinationSE is kept when it names a known site; otherwise production outputs go to
the cloud's T1 (they are aggregated there) and analysis outputs stay at the job's site. Per
brokered bunch, each output dataset gets one `<dataset>_sub0<serial>` dataset registered in DDM
at the execution site (serial from subcounter_subid_seq) and a PanDA `datasets` row (output,
defined); the top-level dataset is registered at its destination when DDM does not know it yet.
Build jobs write their library dataset directly (no `_sub`), as in S08.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from panda_server.dataservice import datasets
from panda_server.dataservice.builds import BUILD_LABEL
from panda_server.dataservice.context import DataService
from panda_server.db import tables as t
from panda_server.protocol.jobspec import JobSpec
from panda_server.protocol.states import FileType


def destination_site(job: JobSpec, *, known_sites: set[str], site: str, tier1: str | None) -> str:
    """S08 broker step 8: keep a known destinationSE, else T1 (production) or the site (analysis)."""
    if job.destinationSE and job.destinationSE in known_sites:
        return job.destinationSE
    if job.prodSourceLabel in ("user", BUILD_LABEL) or not tier1:
        return site
    return tier1


def place_outputs(conn: Connection, svc: DataService, jobs: Sequence[JobSpec], *, site_rse: str,
                  dest_rse: dict[str, str], now: dt.datetime) -> None:  # fmt: skip
    """Give each output/log file its `_sub` dataset and destinationSE (jobs' destinationSE set)."""
    subs: dict[str, str] = {}  # top-level name → its _sub for this bunch
    vuids: dict[str, str] = {}  # block name → its DDM vuid
    counts: dict[str, int] = {}
    for job in jobs:
        for f in job.Files:
            if f.type not in (FileType.output.value, FileType.log.value):
                continue
            top = datasets.top_level(f.destinationDBlock or f.dataset or "")
            if not top:
                continue
            if top not in subs:
                subs[top], vuid = _new_block(conn, svc, job, top, site_rse, dest_rse[job.destinationSE])
                vuids[subs[top]] = vuid
            f.destinationDBlock, f.destinationSE = subs[top], job.destinationSE
            counts[subs[top]] = counts.get(subs[top], 0) + 1
    for name, n in counts.items():
        datasets.add(conn, vuid=vuids[name], name=name, type_="output", status="defined", nfiles=n, now=now)


def _new_block(conn: Connection, svc: DataService, job: JobSpec, top: str, site_rse: str,
               dest: str) -> tuple[str, str]:  # fmt: skip
    """(block name, vuid): a build job's library dataset itself, else a new `_sub` of `top`."""
    if job.prodSourceLabel == BUILD_LABEL:
        found = svc.ddm.get_dataset(top)
        return top, found.vuid if found else svc.ddm.register_dataset(top, rse=site_rse)
    if svc.ddm.get_dataset(top) is None:
        svc.ddm.register_dataset(top, rse=dest)
    serial = conn.execute(t.SUBID_SEQ.next_value()).scalar_one()
    name = f"{top}_sub0{serial}"
    return name, svc.ddm.register_dataset(name, rse=site_rse)
