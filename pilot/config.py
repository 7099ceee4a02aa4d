"""PilotConfig: the pilot's options, from the command line, then PILOT_* variables, then defaults.

Site policy comes from queuedata (heartbeat and limits can also come from there); an option
given on the command line or in the environment always wins. `panda-pilot --help` lists every
option with its variable and default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class PilotConfig:
    queue: str
    url: str = "https://localhost:25443"
    proxy: str | None = None
    ca_dir: str | None = None
    prod_source_label: str = ""  # default from the queue type (managed / user / unified)
    workdir: Path = Path(".")
    getjob_requests: int = 2
    getjob_sleep: float = 60.0
    heartbeat: float = 1800.0
    lifetime: float = 324000.0
    queuedata_url: str = ""
    storagedata_url: str = ""
    looping_limit: float | None = None
    check_interval: float = 60.0
    kill_grace: float = 10.0
    transfer_attempts: int = 3
    transfer_backoff: float = 5.0
    transfer_timeout: float | None = None
    update_attempts: int = 10
    update_interval: float = 120.0
    lost_heartbeat: float = 10800.0
    recovery: bool = True
    recovery_age: float | None = None
    recovery_attempts: int = 3
    cleanup: bool = True
    max_jobs: int = 0
    scheduler_id: str = ""
    pilot_id: str = ""
    baseurls: tuple[str, ...] = ()
    trf_dir: str = ""
    conceal_proxy: bool = True  # proxy in memory, pilot and wrappers non-dumpable (pilot.credentials)
    remove_proxy: bool = False
    user_map: str = ""  # grid-mapfile: a root pilot with it always switches identities (pilot.glexec)
    min_free_mb: float = 2048.0
    working_group: str = ""
    resource_type: str = ""
    job_key: str | None = None  # pinned job-signing public key; None: fetched from the server
    unsigned_jobs: str = "refuse"
    debug: bool = False

    @property
    def queuedata_source(self) -> str:
        return self.queuedata_url or f"{self.url}/cache/schedconfig/{{pandaqueue}}.all.json"

    @property
    def storagedata_source(self) -> str:
        return self.storagedata_url or f"{self.url}/cache/ddmendpoints.json"

    @property
    def recovery_min_age(self) -> float:
        """Classic job recovery touches a job dir only after two heartbeat periods of silence."""
        return 2 * self.heartbeat if self.recovery_age is None else self.recovery_age

    @property
    def trf_bases(self) -> tuple[str, ...]:
        """Where a transformation may be downloaded from: the server's /cache/ and --baseurls."""
        return (f"{self.url}/cache/", *self.baseurls)


# option name → (flags, type, help); the default comes from PilotConfig, the variable is PILOT_<NAME>
_OPTIONS: dict[str, tuple[tuple[str, ...], type, str]] = {
    "url": (("--url",), str, "PanDA server base URL (https for mutual TLS)"),
    "proxy": (("--proxy",), str, "client certificate + key file (grid proxy); also X509_USER_PROXY"),
    "ca_dir": (("--ca-dir",), str, "directory of trusted CA certificates; also X509_CERT_DIR"),
    "prod_source_label": (
        ("-j", "--prod-source-label"),
        str,
        "job label to ask for (managed, user, test, …; default from the queue type)",
    ),
    "workdir": (("-a", "--workdir"), Path, "directory under which the pilot makes its home"),
    "getjob_requests": (
        ("-v", "--getjobrequests"),
        int,
        "getJob calls before giving up when there is no job",
    ),
    "getjob_sleep": (("--getjob-sleep",), float, "seconds to wait after 'no job' before asking again"),
    "heartbeat": (("--heartbeat",), float, "seconds between 'running' heartbeats"),
    "lifetime": (("-l", "--lifetime"), float, "maximum pilot lifetime in seconds"),
    "queuedata_url": (("--queuedata-url",), str, "queuedata URL or file ({pandaqueue} is replaced)"),
    "storagedata_url": (("--storagedata-url",), str, "DDM endpoints URL or file"),
    "looping_limit": (
        ("--looping-limit",),
        float,
        "seconds without any file change before a job is 'looping'",
    ),
    "check_interval": (("--check-interval",), float, "seconds between job monitor checks"),
    "kill_grace": (("--kill-grace",), float, "seconds between SIGTERM and SIGKILL when killing a payload"),
    "transfer_attempts": (("--transfer-attempts",), int, "attempts per file and copy tool"),
    "transfer_backoff": (("--transfer-backoff",), float, "first wait between transfer attempts (doubles)"),
    "transfer_timeout": (("--transfer-timeout",), float, "fixed transfer time-out (default 300 s + 1 s/MB)"),
    "update_attempts": (("--update-attempts",), int, "tries of the final updateJob"),
    "update_interval": (("--update-interval",), float, "seconds between tries of the final updateJob"),
    "lost_heartbeat": (("--lost-heartbeat",), float, "abort the job when no update succeeded for this long"),
    "recovery_age": (("--recovery-age",), float, "age (s) of a left job dir before recovery (2 heartbeats)"),
    "recovery_attempts": (("--recovery-attempts",), int, "recovery attempts before giving up (1158)"),
    "max_jobs": (("--max-jobs",), int, "jobs to run at most (0: as many as the queue's timefloor allows)"),
    "scheduler_id": (("--scheduler-id",), str, "batch scheduler id reported to the server (schedulerID)"),
    "pilot_id": (("--pilot-id",), str, "pilot id reported to the server (pilotID, e.g. the log URL)"),
    "trf_dir": (("--trf-dir",), str, "local directory holding transformation scripts (no download)"),
    "user_map": (
        ("--user-map",),
        str,
        "grid-mapfile ('\"<DN>\" account' lines). A root pilot given it runs every payload as the account "
        "its owner's DN maps to, whatever the queue's glexec says (an unmapped DN fails the job with 1391); "
        "a root pilot without it runs payloads as root (with a warning at start-up). A queue with glexec "
        "needs a root pilot with this map: its jobs fail with 1391 otherwise",
    ),
    "min_free_mb": (("--min-free-mb",), float, "free local disk (MB) needed before asking for a job"),
    "working_group": (("--working-group",), str, "workingGroup sent with getJob"),
    "resource_type": (("--resource-type",), str, "resourceType sent with getJob (SCORE, MCORE, …)"),
    "job_key": (
        ("--job-key",),
        str,
        "PEM file with the server's job-signing public key, to verify every job with (pins the key); "
        "without it the pilot fetches <url>/cache/jobsign-pub.pem once at start-up over its verified "
        "TLS connection",
    ),
    "unsigned_jobs": (
        ("--unsigned-jobs",),
        str,
        "a job without jobSignature is refused (reported failed with 1390 BADJOBSIGNATURE, nothing "
        "runs) or allowed (run with a warning; e.g. jobs stored before the server signed them). A "
        "signature that does not verify is always refused, and so is an unsigned job under identity "
        "switching (a queue with glexec, or a root pilot with --user-map), whatever this option says: "
        "there the payload's account is chosen by prodUserID, which is trusted only when signed",
    ),
}
_CHOICES = {"unsigned_jobs": ("refuse", "allow")}
_METAVARS = {"job_key": "FILE"}
_ALIASES = {"proxy": ("X509_USER_PROXY",), "ca_dir": ("X509_CERT_DIR",)}
_FLAGS = {"recovery": ("--no-recovery", "do not look for job dirs left by earlier pilots"),
          "cleanup": ("--no-cleanup", "keep the pilot's work directories")}  # fmt: skip


# on/off options with a variable: name → (help); --<name> / --no-<name>, PILOT_<NAME>=true|false
_SWITCHES = {
    "conceal_proxy": "keep the proxy in memory and the pilot and its job wrappers non-dumpable, so that "
    "the payload cannot read the credential from them, their environment or any file the pilot writes. A "
    "payload of the pilot's uid that knows the proxy file's path can still read that file: use "
    "--remove-proxy or identity switching (--user-map, as root) to close that; pass the proxy through X509_USER_PROXY "
    "rather than --proxy, as a command line is public",
    "remove_proxy": "delete the proxy file once it is in memory (for factories that give each pilot its "
    "own copy); needs --conceal-proxy",
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="panda-pilot",
        description="PanDA-WMS pilot: asks the PanDA server for a job, runs it in a job wrapper "
        "(stage-in, payload, stage-out, log), heartbeats, obeys kill commands and recovers jobs left "
        "by earlier pilots. Before anything of a job runs, its specification (transformation, "
        "parameters, input files) is verified against the signature the server made at submission "
        "(--job-key, --unsigned-jobs). Exit codes: 0 ok, 1 job failed, 69 no local space, "
        "71/72 queuedata, 78 queue not active, 79 server unreachable, 82 no jobs in PanDA, 83 queue offline.",
    )
    parser.add_argument("-q", "--queue", required=True, help="PanDA queue (schedconfig nickname)")
    defaults = PilotConfig(queue="")
    for name, (flags, kind, text) in _OPTIONS.items():
        variables = ("PILOT_" + name.upper(), *_ALIASES.get(name, ()))
        default = getattr(defaults, name)
        parser.add_argument(*flags, dest=name, type=kind, default=None, choices=_CHOICES.get(name),
                            metavar=_METAVARS.get(name),
                            help=f"{text} [{' / '.join(variables)}; default {default!r}]")  # fmt: skip
    parser.add_argument(
        "--baseurls", default=None, help="comma list of extra allowed transformation base URLs"
    )
    for name, (flag, text) in _FLAGS.items():
        parser.add_argument(flag, dest=name, action="store_false", default=None, help=text)
    for name, text in _SWITCHES.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, action=argparse.BooleanOptionalAction,
                            default=None, help=f"{text} [PILOT_{name.upper()}; default {getattr(defaults, name)}]")  # fmt: skip
    parser.add_argument("-d", "--debug", action="store_true", help="debug logging")
    return parser


def from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> PilotConfig:
    env = os.environ if environ is None else environ
    values: dict[str, object] = {"queue": args.queue, "debug": args.debug}
    for name, (_flags, kind, _text) in _OPTIONS.items():
        given = getattr(args, name)
        if given is None:
            for variable in ("PILOT_" + name.upper(), *_ALIASES.get(name, ())):
                if env.get(variable):
                    given = kind(env[variable])
                    break
        if given is not None:
            if name in _CHOICES and given not in _CHOICES[name]:
                raise SystemExit(f"panda-pilot: error: PILOT_{name.upper()} must be one of "
                                 f"{', '.join(_CHOICES[name])}, not {given!r}")  # fmt: skip
            values[name] = given
    for name in _FLAGS:
        if getattr(args, name) is False:
            values[name] = False
    for name in _SWITCHES:
        switch, text = getattr(args, name), env.get("PILOT_" + name.upper(), "").strip().lower()
        if switch is None and text:
            if text not in (*_TRUE, *_FALSE):
                raise SystemExit(
                    f"panda-pilot: error: PILOT_{name.upper()} must be true or false, not {text!r}"
                )
            switch = text in _TRUE
        if switch is not None:
            values[name] = switch
    if values.get("remove_proxy") and values.get("conceal_proxy") is False:
        raise SystemExit(
            "panda-pilot: error: --remove-proxy needs --conceal-proxy (the proxy must be kept in memory)"
        )
    if args.baseurls:
        values["baseurls"] = tuple(u.strip() for u in args.baseurls.split(",") if u.strip())
    if "url" in values:
        values["url"] = str(values["url"]).rstrip("/")
    return PilotConfig(**values)


def parse(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> PilotConfig:
    return from_args(build_parser().parse_args(argv), environ)
