"""Build job → run jobs (pathena): run jobs read the library a build job is still producing.

A build job (prodSourceLabel `panda`) writes the user's compiled library into its output
dataset (e.g. `user.jdoe.test.lib._000123`). A run job lists that library as an input file of
the same dataset. While the build job has not finished, the input does not exist: the setupper
gives it `dispatchDBlock` = the library dataset and status `pending`, puts the run job at the
build job's site, and leaves it `assigned`; the closer activates it when the library dataset
closes (S08 Closer → Activator), or fails it when the build job failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from panda_server.db import tables as t
from panda_server.protocol.jobspec import JobSpec
from panda_server.protocol.states import TERMINAL, FileType

BUILD_LABEL = "panda"


@dataclasses.dataclass(frozen=True)
class LibInput:
    rowID: int
    dataset: str  # the library dataset
    producer: int  # the build job's PandaID


def lib_inputs(conn: Connection, jobs: Sequence[JobSpec]) -> dict[int, LibInput]:
    """{rowID: LibInput} for input files a live (not finished) build job produces."""
    wanted = {f.dataset for j in jobs for f in j.Files if f.type == FileType.input.value and f.dataset}
    if not wanted:
        return {}
    producers = _live_producers(conn, sorted(wanted))
    out = {}
    for j in jobs:
        for f in j.Files:
            if f.type == FileType.input.value and (f.dataset, f.lfn) in producers:
                out[f.rowID] = LibInput(f.rowID, f.dataset, producers[(f.dataset, f.lfn)])
    return out


def _live_producers(conn: Connection, datasets: list[str]) -> dict[tuple[str, str], int]:
    f = t.filestable4
    found = conn.execute(
        sa.select(f.c.dataset, f.c.lfn, f.c.PandaID)
        .where(f.c.type == FileType.output.value, f.c.dataset.in_(datasets))
    ).all()  # fmt: skip
    if not found:
        return {}
    live = {}
    for name in ("jobsdefined4", "jobswaiting4", "jobsactive4"):
        table = t.JOB_TABLE[name]
        query = sa.select(table.c.PandaID).where(
            table.c.PandaID.in_([r.PandaID for r in found]), table.c.prodSourceLabel == BUILD_LABEL,
            table.c.jobStatus.not_in([s.value for s in TERMINAL]),
        )  # fmt: skip
        live.update(dict.fromkeys(conn.execute(query).scalars()))
    return {(r.dataset, r.lfn): r.PandaID for r in found if r.PandaID in live}


def producer_site(conn: Connection, panda_id: int) -> str | None:
    """The build job's computingSite once it has been brokered (None before)."""
    for name in ("jobsdefined4", "jobswaiting4", "jobsactive4"):
        table = t.JOB_TABLE[name]
        row = conn.execute(
            sa.select(table.c.computingSite, table.c.jobStatus).where(table.c.PandaID == panda_id)
        ).first()
        if row is not None:
            return row.computingSite if row.jobStatus != "defined" else None
    return None
