"""Input resolution (S08 Setupper._correctLFN): fill each input file from DDM or find it missing.

Pure over a DDM: jobs in, per job either the filled files or the LFNs that cannot be resolved.
An input without a GUID is looked up by LFN in its dataset (file `dataset`, else `prodDBlock`,
else the job's prodDBlock) and gets GUID, scope, size and adler32 from DDM; an input DDM has no
replica of anywhere is missing too. The setupper sends jobs with missing inputs to `waiting`,
the waker brings them back when `unresolved` comes out empty. Inputs produced by a build job
still running (`lib_inputs`) are not looked up: they do not exist yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Sequence

from panda_server.ddm.interface import DDM, DatasetNotFound, DDMError, FileInfo, adler32_checksum
from panda_server.protocol.jobspec import FileSpec, JobSpec
from panda_server.protocol.states import FileType


@dataclasses.dataclass
class Resolution:
    changed: set[int] = dataclasses.field(default_factory=set)  # rowIDs whose signed fields were filled
    missing: dict[int, list[str]] = dataclasses.field(default_factory=dict)  # PandaID → why, per LFN
    missing_rows: set[int] = dataclasses.field(default_factory=set)  # rowIDs of the missing files
    replicas: dict[str, frozenset[str]] = dataclasses.field(default_factory=dict)  # GUID → RSEs


def inputs(job: JobSpec) -> list[FileSpec]:
    return [f for f in job.Files if f.type == FileType.input.value]


def source_dataset(job: JobSpec, f: FileSpec) -> str | None:
    return f.dataset or f.prodDBlock or job.prodDBlock


def resolve(ddm: DDM, jobs: Sequence[JobSpec], *, lib_inputs: Collection[int] = ()) -> Resolution:
    """Fill the inputs of `jobs` in place (FileSpec objects); lib_inputs: rowIDs to leave alone."""
    out = Resolution()
    listings: dict[str, dict[str, FileInfo] | None] = {}
    for job in jobs:
        for f in inputs(job):
            if f.rowID in lib_inputs or (f.GUID and f.fsize and f.checksum):
                continue
            problem = _fill(ddm, job, f, listings)
            if problem:
                _miss(out, job, f, problem)
            else:
                out.changed.add(f.rowID)
    guids = [f.GUID for job in jobs for f in inputs(job) if f.GUID and f.rowID not in lib_inputs]
    out.replicas = dict(ddm.list_replicas(guids)) if guids else {}
    for job in jobs:
        for f in inputs(job):
            if f.rowID in lib_inputs or f.rowID in out.missing_rows:
                continue
            if f.GUID and not out.replicas.get(f.GUID):
                _miss(out, job, f, f"{f.lfn} (no replica in DDM)")
    return out


def _miss(out: Resolution, job: JobSpec, f: FileSpec, problem: str) -> None:
    out.missing.setdefault(job.PandaID, []).append(problem)
    out.missing_rows.add(f.rowID)


def _fill(ddm: DDM, job: JobSpec, f: FileSpec, listings: dict[str, dict[str, FileInfo] | None]) -> str | None:
    """Fill one file from its dataset's listing; the problem text if it cannot be."""
    name = source_dataset(job, f)
    if not name:
        return f"{f.lfn} (no dataset to look it up in)"
    if name not in listings:
        try:
            listings[name] = {info.lfn: info for info in ddm.list_files(name)}
        except DatasetNotFound:
            listings[name] = None
    listing = listings[name]
    if listing is None:
        return f"{f.lfn} (dataset {name} does not exist)"
    info = listing.get(f.lfn)
    if info is None:
        return f"{f.lfn} (not in dataset {name})"
    if f.GUID and f.GUID.lower() != info.guid.lower():
        return f"{f.lfn} (GUID {f.GUID} differs from DDM's {info.guid})"
    f.GUID, f.fsize, f.scope = info.guid, info.fsize, f.scope or info.scope
    f.checksum = f.checksum or info.checksum
    return None


def file_info(f: FileSpec) -> FileInfo:
    """The DDM view of a PanDA file row (to register it in a dispatch or `_sub` dataset)."""
    checksum = adler32_checksum(f.checksum)
    if not (f.GUID and f.fsize is not None and checksum):
        raise DDMError(f"{f.lfn}: GUID, size and adler32 are needed to register it (have {f.GUID}, "
                       f"{f.fsize}, {f.checksum})")  # fmt: skip
    return FileInfo(lfn=f.lfn, guid=f.GUID, scope=f.scope or "", fsize=int(f.fsize), checksum=checksum)


def all_guids(jobs: Iterable[JobSpec]) -> list[str]:
    return sorted({f.GUID for job in jobs for f in inputs(job) if f.GUID})
