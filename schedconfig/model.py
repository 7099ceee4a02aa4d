"""Queue and cloud definitions: classic `schedconfig` and `cloudconfig` rows as frozen dataclasses.

Stdlib only: the pilot, AutoPilot and the broker import this module. Every field has a default
and is checked on construction; `from_dict` also refuses unknown fields, so a typo in a queue
file is an error that names the file and the field instead of a silently ignored key.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from typing import Any, TypeVar

TIERS = ("T1", "T2", "T3")
QUEUE_TYPES = ("production", "analysis", "unified")
# S08 schedconfig.status: brokeroff = no new brokerage but pilots are still served; test = test jobs only
QUEUE_STATUSES = ("online", "offline", "brokeroff", "test")
CLOUD_STATUSES = ("online", "offline")
# Batch systems AutoPilot can submit pilots to
BATCH_SYSTEMS = ("local", "slurm", "condor")
# Stage-in/out tools: ours ("cp") and the real pilot3 copytool modules (pilot/copytool/*.py)
COPYTOOLS = ("cp", "mv", "xrdcp", "rucio", "gfal", "gfalcopy", "lsm", "objectstore", "s3", "gs")
ANALYSIS_PREFIX = "ANALY_"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_TYPE_NAMES = {
    "str": "a string",
    "int": "an integer",
    "bool": "true or false",
    "tuple[str, ...]": "a list of strings",
}


class ConfigError(ValueError):
    """A queue or cloud definition is wrong; the message names the file (source) and the field."""

    def __init__(self, source: str, field: str | None, problem: str) -> None:
        self.source, self.field, self.problem = source, field, problem
        where = f"{source}: field '{field}'" if field else source
        super().__init__(f"{where}: {problem}")

    def with_source(self, source: str) -> ConfigError:
        return ConfigError(source, self.field, self.problem)


def _enum(default: str, choices: tuple[str, ...]) -> Any:
    return dataclasses.field(default=default, metadata={"choices": choices})


@dataclasses.dataclass(frozen=True)
class QueueSpec:
    """One PanDA queue (S08 schedconfig row, PK nickname). Empty derived fields are filled in."""

    nickname: str  # queue name = the pilot's computingElement
    cloud: str
    siteid: str = ""  # PanDA site = computingSite = queuedata panda_resource; default nickname
    tier: str = _enum("T2", TIERS)
    type: str = _enum("", QUEUE_TYPES)  # default: analysis for ANALY_*, else production
    status: str = _enum("online", QUEUE_STATUSES)
    gatekeeper: str = "localhost"
    system: str = _enum("local", BATCH_SYSTEMS)  # batch system AutoPilot submits to
    queue: str = ""  # batch queue / partition
    localqueue: str = ""
    jobmanager: str = ""  # grid CE flavour for the condor submitter: "" = vanilla, htcondor-ce, gt2, arc
    nqueue: int = 2  # pilots AutoPilot keeps queued
    depthboost: int = 2  # AutoPilot tops up while queued pilots < nqueue × depthboost and activated jobs wait
    idlepilotsuppression: int = 1  # with no activated job, one idle pilot every this many factory cycles
    pilotlimit: int = (
        0  # AutoPilot submits nothing while this factory has this many live pilots; 0 = no limit
    )
    transferringlimit: int = 0  # ... nor while the site has this many transferring jobs; 0 = no limit
    jdladd: str = ""  # extra HTCondor submit-description lines ("key = value", one per line)
    memory: int = 0  # MB per job slot, 0 = no limit
    maxtime: int = 0  # walltime limit, s, 0 = no limit
    maxwdir: int = 20000  # work dir size limit, MB
    space: int = 1000  # free space on the SE, GB
    maxinputsize: int = 10000  # MB
    corecount: int = 1
    retry: bool = True  # lost-heartbeat job recovery by the Watcher (S08 retry != 'FALSE')
    ddm: str = ""  # the site's DDM endpoint; default <siteid>_DATADISK
    setokens: str = ""  # comma list of space tokens, positional with ddm
    se_path: str = ""  # SE directory or root://host:port/path; default <storage_root>/<ddm>
    copytool: str = _enum("cp", COPYTOOLS)  # stage-out
    copytoolin: str = _enum("", COPYTOOLS)  # stage-in; default copytool
    releases: tuple[str, ...] = ()  # installed releases, empty = any
    cmtconfig: str = ""
    environ: str = ""  # "k=v k2=v2" exported to the payload
    appdir: str = ""
    recoverdir: str = ""
    priorityoffset: str = ""  # "group:offset,..."
    allowedgroups: str = ""  # comma list of FQAN groups allowed to submit
    defaulttoken: str = ""
    direct_access_lan: bool = False
    glexec: bool = False  # a root pilot runs payloads as their owner's mapped account (pilot --user-map)
    comment: str = ""

    def __post_init__(self) -> None:
        _normalise_lists(self)
        _check_types(self)
        if not self.siteid:
            object.__setattr__(self, "siteid", self.nickname)
        if not self.type:
            kind = "analysis" if self.nickname.startswith(ANALYSIS_PREFIX) else "production"
            object.__setattr__(self, "type", kind)
        if not self.ddm:
            object.__setattr__(self, "ddm", f"{self.siteid}_DATADISK")
        if not self.copytoolin:
            object.__setattr__(self, "copytoolin", self.copytool)
        _check_choices(self)
        _check_names(self, ("nickname", "siteid", "cloud", "ddm"))
        _check_ranges(self, minimum={"corecount": 1})
        if self.se_path and not self.se_path.startswith(("/", "root://")):
            raise ConfigError(
                "QueueSpec", "se_path", f"{self.se_path!r} must be an absolute path or a root:// URL"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<dict>") -> QueueSpec:
        return _from_dict(cls, d, source)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @property
    def is_analysis(self) -> bool:
        return self.type == "analysis"


@dataclasses.dataclass(frozen=True)
class CloudSpec:
    """One cloud (S08 cloudconfig row, PK name): a T1 site and the T2s attached to it."""

    name: str
    tier1: str  # siteid of the T1
    tier1SE: tuple[str, ...] = ()  # DDM endpoints of the T1
    status: str = _enum("online", CLOUD_STATUSES)
    weight: int = 0  # T1 weight for many-input jobs
    transtimelo: int = 2  # transfer timeout, days, normal priority
    transtimehi: int = 1  # transfer timeout, days, priority >= 900
    countries: str = ""
    description: str = ""
    validation: bool = False  # true allows validation tasks
    mcshare: int = 0
    fasttrack: bool = False

    def __post_init__(self) -> None:
        _normalise_lists(self)
        _check_types(self)
        _check_choices(self)
        _check_names(self, ("name", "tier1"))
        _check_ranges(self, minimum={})
        for endpoint in self.tier1SE:
            if not _NAME_RE.match(endpoint):
                raise ConfigError("CloudSpec", "tier1SE", f"{endpoint!r} is not a valid DDM endpoint name")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<dict>") -> CloudSpec:
        return _from_dict(cls, d, source)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


Spec = TypeVar("Spec", QueueSpec, CloudSpec)


def _from_dict(cls: type[Spec], d: Mapping[str, Any], source: str) -> Spec:
    if not isinstance(d, Mapping):
        raise ConfigError(
            source, None, f"expected a JSON object with the {cls.__name__} fields, got {_json_type(d)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in d:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see schedconfig/README.md for the fields"
            raise ConfigError(source, str(key), f"unknown field; {hint}")
    for name, f in fields.items():
        if name not in d and f.default is dataclasses.MISSING:
            raise ConfigError(source, name, "missing; this field is required")
    try:
        return cls(**d)
    except ConfigError as exc:
        raise exc.with_source(source) from None


def _to_dict(spec: QueueSpec | CloudSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _normalise_lists(spec: QueueSpec | CloudSpec) -> None:
    # JSON gives lists; the frozen spec keeps tuples so it stays hashable
    for f in dataclasses.fields(spec):
        if f.type == "tuple[str, ...]" and isinstance(getattr(spec, f.name), list):
            object.__setattr__(spec, f.name, tuple(getattr(spec, f.name)))


def _check_types(spec: QueueSpec | CloudSpec) -> None:
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if f.type == "str":
            ok = isinstance(value, str)
        elif f.type == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif f.type == "bool":
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
        if not ok:
            problem = f"expected {_TYPE_NAMES[f.type]}, got {_json_type(value)} {value!r}"
            raise ConfigError(type(spec).__name__, f.name, problem)


def _check_choices(spec: QueueSpec | CloudSpec) -> None:
    for f in dataclasses.fields(spec):
        choices = f.metadata.get("choices")
        if choices and getattr(spec, f.name) not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(
                type(spec).__name__, f.name, f"{getattr(spec, f.name)!r} is not one of {allowed}"
            )


def _check_names(spec: QueueSpec | CloudSpec, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(spec, name)
        if not _NAME_RE.match(value):
            problem = f"{value!r} is not a valid name (letters, digits, '_', '-', '.'; not empty)"
            raise ConfigError(type(spec).__name__, name, problem)


def _check_ranges(spec: QueueSpec | CloudSpec, *, minimum: Mapping[str, int]) -> None:
    for f in dataclasses.fields(spec):
        if f.type == "int":
            low = minimum.get(f.name, 0)
            if getattr(spec, f.name) < low:
                raise ConfigError(type(spec).__name__, f.name, f"{getattr(spec, f.name)} is below {low}")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return "null" if value is None else type(value).__name__
