"""The job as the pilot receives it from getJob (reference/pilot.md §3.3–3.4).

List-valued fields are comma-separated strings aligned by position: inFiles[i] ↔ GUID[i] ↔
fsize[i] ↔ checksum[i] ↔ scopeIn[i] ↔ ddmEndPointIn[i]. outFiles includes the log file, with
realDatasets and ddmEndPointOut aligned to it, while scopeOut lists only the non-log outputs
and scopeLog the log's scope. "NULL" and empty entries mean absent.
"""

from __future__ import annotations

import dataclasses
import shlex
import uuid
from collections.abc import Mapping
from typing import Any

from pilot.errors import PilotFailure
from pilot.workdir import RESERVED

NULL = ("", "NULL", "None")
MAX_LFN = 255  # longer LFNs are refused by the real pilot (1190)


@dataclasses.dataclass(frozen=True)
class InFile:
    lfn: str
    guid: str
    fsize: int | None
    checksum: str | None  # "ad:<adler32>" or "md5:<hex>"
    scope: str
    dataset: str
    ddmendpoint: str


@dataclasses.dataclass(frozen=True)
class OutFile:
    lfn: str
    guid: str
    scope: str
    dataset: str
    ddmendpoint: str
    is_log: bool = False


@dataclasses.dataclass(frozen=True)
class Job:
    PandaID: int
    attemptNr: int
    prodSourceLabel: str
    transformation: str
    jobPars: str
    taskID: str
    jobsetID: str
    maxCpuCount: int
    minRamCount: int
    maxWalltime: int
    coreCount: int
    transferType: str
    inputs: tuple[InFile, ...]
    outputs: tuple[OutFile, ...]  # payload outputs, then the log (is_log)
    raw: Mapping[str, str]

    @property
    def log(self) -> OutFile | None:
        return next((f for f in self.outputs if f.is_log), None)

    @property
    def is_analysis(self) -> bool:
        return self.prodSourceLabel in ("user", "panda")

    @property
    def access_mode(self) -> str:
        """'direct' or 'copy' as asked by the job (transferType, or --accessmode in jobPars)."""
        for word in _words(self.jobPars):
            if word in ("--accessmode=direct", "--accessmode=copy"):
                return word.split("=", 1)[1]
            if word == "--useLocalIO":
                return "copy"
        return "direct" if self.transferType == "direct" else "copy"


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _value(d: Mapping[str, Any], key: str, default: str = "") -> str:
    value = d.get(key)
    return default if value is None or str(value) in NULL else str(value)


def _int(d: Mapping[str, Any], key: str, default: int = 0) -> int:
    text = _value(d, key)
    try:
        return int(float(text)) if text else default
    except ValueError:
        raise PilotFailure(1117, f"job field {key}={text!r} is not a number") from None


def _list(d: Mapping[str, Any], key: str) -> list[str]:
    text = _value(d, key)
    return [] if not text else [("" if x.strip() in NULL else x.strip()) for x in text.split(",")]


def _at(items: list[str], i: int, default: str = "") -> str:
    return items[i] if i < len(items) and items[i] else default


def _check_lfn(lfn: str) -> str:
    """A file name inside the job dir: no path, no hidden name, bounded length."""
    if len(lfn) > MAX_LFN:
        raise PilotFailure(1190, f"LFN {lfn[:60]}… is {len(lfn)} characters long (limit {MAX_LFN})")
    if "/" in lfn or "\0" in lfn or lfn.startswith(".") or lfn.isspace():
        raise PilotFailure(1371, f"file name {lfn!r} is not a plain file name")
    if lfn in RESERVED or lfn.startswith("jobState-"):
        raise PilotFailure(1371, f"file name {lfn!r} is reserved for the pilot's own files in the job dir")
    return lfn


def parse(d: Mapping[str, Any]) -> Job:
    """A Job from the getJob dict; refuses file names that would leave the job dir."""
    panda_id = _int(d, "PandaID")
    if panda_id <= 0:
        raise PilotFailure(1302, "getJob reply has no PandaID")
    lfns = [_check_lfn(x) if x else x for x in _list(d, "inFiles")]
    guids, sizes, sums = _list(d, "GUID"), _list(d, "fsize"), _list(d, "checksum")
    scopes, datasets, ddms = _list(d, "scopeIn"), _list(d, "realDatasetsIn"), _list(d, "ddmEndPointIn")
    inputs = []
    for i, lfn in enumerate(lfns):
        if not lfn:
            continue
        size = _at(sizes, i)
        inputs.append(InFile(lfn, _at(guids, i), int(size) if size.isdigit() else None, _at(sums, i) or None,
                             _at(scopes, i), _at(datasets, i), _at(ddms, i)))  # fmt: skip
    return Job(
        PandaID=panda_id, attemptNr=_int(d, "attemptNr", 1), prodSourceLabel=_value(d, "prodSourceLabel"),
        transformation=_value(d, "transformation"), jobPars=_value(d, "jobPars"),
        taskID=_value(d, "taskID"), jobsetID=_value(d, "jobsetID"), maxCpuCount=_int(d, "maxCpuCount"),
        minRamCount=_int(d, "minRamCount"), maxWalltime=_int(d, "maxWalltime"),
        coreCount=_int(d, "coreCount", 1) or 1, transferType=_value(d, "transferType"),
        inputs=tuple(inputs), outputs=tuple(_outputs(d)), raw={k: str(v) for k, v in d.items()},
    )  # fmt: skip


def _outputs(d: Mapping[str, Any]) -> list[OutFile]:
    log_file = _value(d, "logFile")
    lfns, datasets, ddms = _list(d, "outFiles"), _list(d, "realDatasets"), _list(d, "ddmEndPointOut")
    scopes = iter(_list(d, "scopeOut"))
    out = []
    for i, lfn in enumerate(lfns):
        if not lfn:
            continue
        _check_lfn(lfn)
        is_log = lfn == log_file
        if is_log:
            scope, guid = _value(d, "scopeLog"), _value(d, "logGUID") or str(uuid.uuid4())
        else:
            scope, guid = next(scopes, ""), str(uuid.uuid4()).upper()
        out.append(OutFile(lfn, guid, scope, _at(datasets, i), _at(ddms, i), is_log))
    return out
