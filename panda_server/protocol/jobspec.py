"""JobSpec and FileSpec: PanDA's job and file records with the classic attribute names.

The attribute order is part of the protocol: panda-client serialises a job as the positional
list of its 126 attribute values followed by the list of file states (S25 JobSpec, identical to
pandaclient/JobSpec.py), and a file as the positional list of its values. Schema evolution only
ever appends, so a state shorter than ours is padded with NULL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

JOB_ATTRIBUTES: tuple[str, ...] = (
    # S08 order (73 attributes)
    "PandaID", "jobDefinitionID", "schedulerID", "pilotID", "creationTime", "creationHost",
    "modificationTime", "modificationHost", "AtlasRelease", "transformation", "homepackage",
    "prodSeriesLabel", "prodSourceLabel", "prodUserID", "assignedPriority", "currentPriority",
    "attemptNr", "maxAttempt", "jobStatus", "jobName", "maxCpuCount", "maxCpuUnit", "maxDiskCount",
    "maxDiskUnit", "ipConnectivity", "minRamCount", "minRamUnit", "startTime", "endTime",
    "cpuConsumptionTime", "cpuConsumptionUnit", "commandToPilot", "transExitCode", "pilotErrorCode",
    "pilotErrorDiag", "exeErrorCode", "exeErrorDiag", "supErrorCode", "supErrorDiag", "ddmErrorCode",
    "ddmErrorDiag", "brokerageErrorCode", "brokerageErrorDiag", "jobDispatcherErrorCode",
    "jobDispatcherErrorDiag", "taskBufferErrorCode", "taskBufferErrorDiag", "computingSite",
    "computingElement", "jobParameters", "metadata", "prodDBlock", "dispatchDBlock",
    "destinationDBlock", "destinationSE", "nEvents", "grid", "cloud", "cpuConversion", "sourceSite",
    "destinationSite", "transferType", "taskID", "cmtConfig", "stateChangeTime", "prodDBUpdateTime",
    "lockedby", "relocationFlag", "jobExecutionID", "VO", "pilotTiming", "workingGroup",
    "processingType",
    # appended later, in this order (S25 / panda-client 2.x)
    "prodUserName", "nInputFiles", "countryGroup", "batchID", "parentID", "specialHandling",
    "jobsetID", "coreCount", "nInputDataFiles", "inputFileType", "inputFileProject",
    "inputFileBytes", "nOutputDataFiles", "outputFileBytes", "jobMetrics", "workQueue_ID",
    "jediTaskID", "jobSubStatus", "actualCoreCount", "reqID", "maxRSS", "maxVMEM", "maxSWAP",
    "maxPSS", "avgRSS", "avgVMEM", "avgSWAP", "avgPSS", "maxWalltime", "nucleus", "eventService",
    "failedAttempt", "hs06sec", "gshare", "hs06", "totRCHAR", "totWCHAR", "totRBYTES", "totWBYTES",
    "rateRCHAR", "rateWCHAR", "rateRBYTES", "rateWBYTES", "resource_type", "diskIO", "memory_leak",
    "memory_leak_x2", "container_name", "job_label", "gco2_regional", "gco2_global",
    "cpu_architecture_level", "outputFileType",
)  # fmt: skip

FILE_ATTRIBUTES: tuple[str, ...] = (
    "rowID", "PandaID", "GUID", "lfn", "type", "dataset", "status", "prodDBlock", "prodDBlockToken",
    "dispatchDBlock", "dispatchDBlockToken", "destinationDBlock", "destinationDBlockToken",
    "destinationSE", "fsize", "md5sum", "checksum", "scope",
    # server-side only; panda-client's FileSpec stops at `scope`
    "jediTaskID", "datasetID", "fileID", "attemptNr",
)  # fmt: skip
CLIENT_FILE_ATTRIBUTE_COUNT = 18

JOB_DATETIME_ATTRIBUTES = frozenset(
    {"creationTime", "modificationTime", "startTime", "endTime", "stateChangeTime", "prodDBUpdateTime"}
)
JOB_FLOAT_ATTRIBUTES = frozenset({"cpuConversion", "memory_leak_x2", "gco2_regional", "gco2_global"})
JOB_INT_ATTRIBUTES = frozenset(
    {
        "PandaID", "jobDefinitionID", "assignedPriority", "currentPriority", "attemptNr", "maxAttempt",
        "maxCpuCount", "maxDiskCount", "minRamCount", "cpuConsumptionTime", "pilotErrorCode",
        "exeErrorCode", "supErrorCode", "ddmErrorCode", "brokerageErrorCode", "jobDispatcherErrorCode",
        "taskBufferErrorCode", "nEvents", "taskID", "relocationFlag", "jobExecutionID", "nInputFiles",
        "parentID", "jobsetID", "coreCount", "nInputDataFiles", "inputFileBytes", "nOutputDataFiles",
        "outputFileBytes", "workQueue_ID", "jediTaskID", "actualCoreCount", "reqID", "maxRSS",
        "maxVMEM", "maxSWAP", "maxPSS", "avgRSS", "avgVMEM", "avgSWAP", "avgPSS", "maxWalltime",
        "eventService", "failedAttempt", "hs06sec", "hs06", "totRCHAR", "totWCHAR", "totRBYTES",
        "totWBYTES", "rateRCHAR", "rateWCHAR", "rateRBYTES", "rateWBYTES", "diskIO", "memory_leak",
    }
)  # fmt: skip
FILE_INT_ATTRIBUTES = frozenset(
    {"rowID", "PandaID", "fsize", "jediTaskID", "datasetID", "fileID", "attemptNr"}
)

# Longest text the DB keeps for a diag column (S25 JobDispatcher truncation; Oracle VARCHAR2 sizes).
DIAG_LIMITS: Mapping[str, int] = {
    "pilotErrorDiag": 500, "exeErrorDiag": 500, "supErrorDiag": 250, "ddmErrorDiag": 500,
    "brokerageErrorDiag": 250, "jobDispatcherErrorDiag": 250, "taskBufferErrorDiag": 300,
}  # fmt: skip

WIRE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
NULL = "NULL"


class SpecError(ValueError):
    """A job or file record that does not fit the schema (names the attribute)."""


def coerce(
    name: str,
    value: Any,
    ints: frozenset[str],
    floats: frozenset[str] = frozenset(),
    times: frozenset[str] = frozenset(),
) -> Any:
    """Turn a wire value into its Python type: "NULL"/""/None → None, numbers, datetimes."""
    if value is None or value == NULL or (value == "" and (name in ints or name in floats or name in times)):
        return None
    try:
        if name in ints:
            if isinstance(value, bool):
                raise SpecError(f"{name}: expected an integer, got {value!r}")
            return int(float(value)) if isinstance(value, str) and "." in value else int(value)
        if name in floats:
            return float(value)
        if name in times:
            return value if isinstance(value, dt.datetime) else parse_time(str(value))
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{name}: cannot use {value!r} ({exc})") from None
    if isinstance(value, (dict, list)):
        raise SpecError(f"{name}: expected a scalar, got {type(value).__name__}")
    return str(value) if not isinstance(value, str) else value


def parse_time(text: str) -> dt.datetime:
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", WIRE_TIME_FORMAT, "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"not a time: {text!r}")


class FileSpec:
    """One input, output or log file of a job (a filesTable4 row)."""

    __slots__ = FILE_ATTRIBUTES

    def __init__(self, **values: Any) -> None:
        for name in FILE_ATTRIBUTES:
            object.__setattr__(self, name, None)
        for name, value in values.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in FILE_ATTRIBUTES:
            raise SpecError(f"FileSpec has no attribute {name!r}")
        object.__setattr__(self, name, coerce(name, value, FILE_INT_ATTRIBUTES))

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FILE_ATTRIBUTES}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FileSpec:
        return cls(**{k: v for k, v in values.items() if k in FILE_ATTRIBUTES})

    @classmethod
    def from_state(cls, state: list[Any]) -> FileSpec:
        """Positional file state as panda-client sends it: the values, then the owner (ignored).

        As in pandaclient's FileSpec.__setstate__ the last item is always the owner; missing
        trailing values are None, values beyond ours are ignored.
        """
        if not isinstance(state, list) or not state:
            raise SpecError("a file state must be a non-empty list (its values, then the owner)")
        return cls(**dict(zip(FILE_ATTRIBUTES, state[:-1], strict=False)))

    def to_state(self) -> list[Any]:
        return [getattr(self, n) for n in FILE_ATTRIBUTES[:CLIENT_FILE_ATTRIBUTE_COUNT]] + [None]

    def __repr__(self) -> str:
        return f"FileSpec(lfn={self.lfn!r}, type={self.type!r}, status={self.status!r})"


class JobSpec:
    """One PanDA job with its files. Unset attributes are None (rendered "NULL" on the wire)."""

    __slots__ = (*JOB_ATTRIBUTES, "Files")

    def __init__(self, **values: Any) -> None:
        for name in JOB_ATTRIBUTES:
            object.__setattr__(self, name, None)
        object.__setattr__(self, "Files", [])
        for name, value in values.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "Files":
            object.__setattr__(self, name, list(value))
            return
        if name not in JOB_ATTRIBUTES:
            raise SpecError(f"JobSpec has no attribute {name!r}")
        object.__setattr__(
            self, name, coerce(name, value, JOB_INT_ATTRIBUTES, JOB_FLOAT_ATTRIBUTES, JOB_DATETIME_ATTRIBUTES)
        )

    def add_file(self, file: FileSpec) -> None:
        self.Files.append(file)

    def files_of_type(self, *types: str) -> list[FileSpec]:
        return [f for f in self.Files if f.type in types]

    def to_dict(self, with_files: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in JOB_ATTRIBUTES}
        if with_files:
            out["Files"] = [f.to_dict() for f in self.Files]
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> JobSpec:
        job = cls(**{k: v for k, v in values.items() if k in JOB_ATTRIBUTES})
        for f in values.get("Files") or ():
            job.add_file(FileSpec.from_dict(f))
        return job

    def to_state(self) -> list[Any]:
        """Positional state: 126 values, then the list of file states (panda-client layout)."""
        return [getattr(self, n) for n in JOB_ATTRIBUTES] + [[f.to_state() for f in self.Files]]

    @classmethod
    def from_state(cls, state: list[Any]) -> JobSpec:
        if not isinstance(state, list) or not state:
            raise SpecError("a job state must be a non-empty list")
        *values, files = state
        if not isinstance(files, list):
            raise SpecError("the last item of a job state must be its list of files")
        if len(values) > len(JOB_ATTRIBUTES):
            raise SpecError(
                f"a job state has {len(values)} attributes, at most {len(JOB_ATTRIBUTES)} are known"
            )
        job = cls(**dict(zip(JOB_ATTRIBUTES, values, strict=False)))
        for item in files:
            job.add_file(FileSpec.from_state(item))
        return job

    def __repr__(self) -> str:
        return f"JobSpec(PandaID={self.PandaID!r}, jobStatus={self.jobStatus!r}, site={self.computingSite!r})"


def wire_value(value: Any) -> str:
    """Render one value the way the classic server did: None → NULL, datetimes without microseconds."""
    if value is None:
        return NULL
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def format_time(value: dt.datetime, *, micro: bool = False) -> str:
    """%Y-%m-%d %H:%M:%S[.%f] with a 4-digit year (strftime drops the padding before year 1000,
    and prodDBUpdateTime of an unreported job is 0001-01-01)."""
    text = f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value:%H:%M:%S}"
    return f"{text}.{value.microsecond:06d}" if micro else text


def comma_join(values: Iterable[Any]) -> str:
    return ",".join(wire_value(v) for v in values)
