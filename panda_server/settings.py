"""Server settings: read once from PANDA_* environment variables, frozen, passed down.

This module is the server's only reader of os.environ. Each field says where its default comes
from; `panda-server settings` prints the effective values (never secrets).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Settings:
    # PostgreSQL URL of the PanDA DB (SQLAlchemy form, psycopg 3 driver)
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:16432/panda"
    # Where panda-ca wrote the PKI: ca/ (hashed CA dir), hostcert.pem, hostkey.pem, *.proxy
    pki_dir: Path = ROOT / "var" / "pki"
    # Classic ports (S08 httpd conf): 25080 http for passive reads, 25443 https for everything
    host: str = "127.0.0.1"
    http_port: int = 25080
    https_port: int = 25443
    # Public base URLs the server advertises (getServer, queuedata); default from host/ports
    server_name: str = "localhost"
    # Sandboxes and other files served under /cache/
    cache_dir: Path = ROOT / "var" / "cache"
    # Root under which each DDM endpoint (storage element) without its own se_path keeps files
    storage_root: Path = ROOT / "var" / "storage"
    # Queue definitions loaded by `panda-schedconfig sync` (one JSON file per queue)
    schedconfig_dir: Path = ROOT / "schedconfig" / "queues"
    # Identity and roles (web/auth.py, README "Security"). VOs authorized for PanDA: with
    # require_vo, every active call needs a verified VOMS attribute (or token group) of one of them.
    vos: tuple[str, ...] = ("atlas",)
    require_vo: bool = True
    # Trusted VOMS servers: <voms_dir>/<vo>/*.pem; empty means <pki_dir>/vomsdir (panda-ca writes it)
    voms_dir: str = ""
    # FQAN regexes granting the pilot role (getJob/updateJob for anybody's jobs; S08 prodManager list)
    # and the production role (managed submission, acting on other users' jobs; S25 has_production_role
    # with working-group production roles)
    pilot_fqans: tuple[str, ...] = (r"^/atlas(/usatlas)?/Role=(pilot|production)$",)
    production_fqans: tuple[str, ...] = (r"^/atlas(/[^/]+)?/Role=production$",)
    # DN regexes whose owners act as pilots (S25 pilot_owners) or production managers (production_dns)
    # whatever their VOMS attributes
    pilot_dns: tuple[str, ...] = ()
    production_dns: tuple[str, ...] = ()
    # WLCG JWT bearer tokens (Authorization: Bearer; S25 panda_request.py), see docs/tokens.md and
    # panda_server/tokens.py. Trusted issuers as ISSUER=PUBLIC_KEY_FILE (PEM key or cert, or a JWKS
    # file; keys read once per process); accepted audiences (empty: url_ssl and "pandaserver"); scopes
    # mapped to FQANs as SCOPE=FQAN (e.g. panda:pilot=/atlas/Role=pilot); clock leeway in seconds
    token_issuers: tuple[str, ...] = ()
    # The VOs each issuer speaks for, ISSUER=VO[,VO]: a token's groups/scopes become FQANs only of
    # its issuer's VOs (as a VOMS server signs only for its own VO); an unbound issuer grants none
    token_issuer_vos: tuple[str, ...] = ()
    token_audiences: tuple[str, ...] = ()
    token_scope_fqans: tuple[str, ...] = ()
    token_leeway: float = 60.0
    # Seconds a user's active/disabled status (users.status) is cached per server process (S25: 600)
    user_status_ttl: float = 60.0
    # Request limits: body bytes after decompression, jobs per submission (S08 Client: 2000),
    # ids per status query (S08 getJobStatus: 2500; v1 get_description: 5500)
    max_body_bytes: int = 16 * 1024 * 1024
    max_jobs_per_submit: int = 2000
    max_ids_per_query: int = 5500
    # getJob: candidates tried per call before answering "no jobs" (S08 getJobs tries 10-11)
    claim_attempts: int = 10
    # Daemon cycle periods in seconds
    setupper_interval: float = 5.0
    adder_interval: float = 5.0
    # Local DDM transfer agent (`panda-daemon ddm`, docs/ddm.md): cycle period; attempts per file
    # before its subscription fails; back-off after failed attempt n: ddm_backoff * 2**(n-1) s (also
    # between callback attempts); callback attempts before giving up (the data service then polls).
    # The agent's credentials for callbacks and XRootD: a proxy file (cert+key) and a hashed CA
    # dir; empty means <pki_dir>/production.proxy and <pki_dir>/ca
    ddm_interval: float = 5.0
    ddm_max_attempts: int = 3
    ddm_backoff: float = 30.0
    ddm_callback_attempts: int = 5
    ddm_proxy: str = ""
    ddm_ca_dir: str = ""
    # Data service (docs/dataservice.md): the DDM backend ("local": panda_server/ddm/local), the
    # datasetCompleted URL DDM calls back (default <url_ssl>/server/panda/datasetCompleted), the
    # polling fallbacks' periods (activator: dispatch datasets, finisher: output transfers and
    # their timeout), the waker's period, and how long a job may wait for its input (S08: 1 day,
    # then failed with taskBufferErrorCode 104)
    ddm_backend: str = "local"
    ddm_callback_url: str = ""
    activator_interval: float = 30.0
    finisher_interval: float = 30.0
    waker_interval: float = 60.0
    waiting_timeout: float = 24 * 3600.0
    # Watcher (S08 jobdispatcher/Watcher.py, run by copyArchive): cycle period, then the seconds
    # without a pilot update after which a `sent` job fails (S08: 30 min, code 102), a
    # starting/running job's heartbeat is lost (S08: 6 h production, 2 h analysis = user/panda;
    # code 100, or holding for job recovery at retry sites), and a holding job without a pilot
    # report fails (S08: 48 h, code 101)
    watcher_interval: float = 60.0
    watcher_sent_timeout: float = 30 * 60.0
    watcher_heartbeat_timeout_production: float = 6 * 3600.0
    watcher_heartbeat_timeout_analysis: float = 2 * 3600.0
    watcher_holding_timeout: float = 48 * 3600.0
    # Pilot statistics (taskbuffer/sitedata.py): the sitedata daemon's period (recomputes the 1 h
    # and 3 h windows the broker reads), and how often a server process adds its in-memory
    # getJob/updateJob counts to the DB (after a response, at most this often; 0 = every response)
    sitedata_interval: float = 60.0
    sitedata_flush_seconds: float = 5.0
    # AutoPilot, the pilot factory (`panda-autopilot`, docs/autopilot.md). Its id (PANDA_JSID, the
    # jobs' schedulerID; default <host>-autopilot), cycle period (classic 120 s), the submitter for
    # every queue (empty: each queue's schedconfig `system`), caps (pilots per queue per cycle; live
    # pilots of the whole factory, 0 = none), seconds a submitted pilot may stay unseen by its batch
    # system before it counts as lost, where it keeps logs and spool (<dir>/logs served over HTTP on
    # log_port, the GTAG links; kept log_days days), the wrapper script, the proxy and extra arguments
    # the pilots get, the python that runs them and their work directory on the worker (empty:
    # this interpreter; $TMPDIR or /tmp), and whether the wrapper fetches the pilot code from the
    # log server (checked by sha256) instead of finding it next to the wrapper
    autopilot_factory: str = ""
    autopilot_interval: float = 120.0
    autopilot_submitter: str = ""
    autopilot_max_per_cycle: int = 10
    autopilot_max_pilots: int = 0
    autopilot_lost_grace: float = 300.0
    autopilot_dir: Path = ROOT / "var" / "autopilot"
    autopilot_log_port: int = 25881
    autopilot_log_url: str = ""
    autopilot_log_days: int = 7
    autopilot_wrapper: str = ""
    autopilot_pilot_proxy: str = ""
    autopilot_pilot_args: str = "--max-jobs 20 -v 1"
    autopilot_pilot_python: str = ""
    autopilot_pilot_workdir: str = ""
    autopilot_fetch_pilot: bool = False
    # gunicorn: gthread workers × threads (TLS needs keep-alive, hence gthread). On 2 cores 2×2..2×4
    # gave the best lifecycle rate (docs/benchmarks.md); idle keep-alive connections need no thread.
    workers: int = 2
    threads: int = 4
    log_level: str = "INFO"

    @property
    def ca_dir(self) -> Path:
        return self.pki_dir / "ca"

    @property
    def hostcert(self) -> Path:
        return self.pki_dir / "hostcert.pem"

    @property
    def hostkey(self) -> Path:
        return self.pki_dir / "hostkey.pem"

    @property
    def jobsign_key(self) -> Path:
        """The key that signs job specifications at submission (panda-ca init makes it)."""
        return self.pki_dir / "private" / "jobsign-key.pem"

    @property
    def jobsign_pub(self) -> Path:
        """Its public half, served at /cache/jobsign-pub.pem for pilots to verify jobs with."""
        return self.pki_dir / "jobsign-pub.pem"

    @property
    def ddm_proxy_path(self) -> Path:
        """The proxy the DDM agent presents (callbacks, XRootD): ddm_proxy or the production proxy."""
        return Path(self.ddm_proxy) if self.ddm_proxy else self.pki_dir / "production.proxy"

    @property
    def ddm_ca_path(self) -> Path:
        """The CA directory the DDM agent trusts: ddm_ca_dir or the PKI's."""
        return Path(self.ddm_ca_dir) if self.ddm_ca_dir else self.ca_dir

    @property
    def autopilot_id(self) -> str:
        """The factory's id: PANDA_JSID in its pilots' environment, the schedulerID of their jobs."""
        return self.autopilot_factory or f"{socket.gethostname().split('.')[0]}-autopilot"

    @property
    def autopilot_log_base(self) -> str:
        """The URL under which the factory's log server serves <autopilot_dir>/logs."""
        return (self.autopilot_log_url or f"http://{self.server_name}:{self.autopilot_log_port}").rstrip("/")

    @property
    def autopilot_proxy_path(self) -> Path:
        """The proxy the pilots get (X509_USER_PROXY): autopilot_pilot_proxy or the PKI's pilot proxy."""
        return (
            Path(self.autopilot_pilot_proxy) if self.autopilot_pilot_proxy else self.pki_dir / "pilot.proxy"
        )

    @property
    def vomsdir(self) -> Path:
        return Path(self.voms_dir) if self.voms_dir else self.pki_dir / "vomsdir"

    @property
    def url(self) -> str:
        return f"http://{self.server_name}:{self.http_port}"

    @property
    def url_ssl(self) -> str:
        return f"https://{self.server_name}:{self.https_port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            key = "PANDA_" + field.name.upper()
            if key in env:
                values[field.name] = _convert(field, env[key])
        values.update(overrides)
        return cls(**values)

    def describe(self) -> dict[str, str]:
        """Effective settings for display (the DB password, if any, is masked)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "database_url":
                value = mask_password(str(value))
            out["PANDA_" + field.name.upper()] = str(value)
        return out


def mask_password(url: str) -> str:
    """postgresql+psycopg://user:secret@host/db → postgresql+psycopg://user:***@host/db."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, host = rest.rsplit("@", 1)
    if ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def _convert(field: dataclasses.Field, text: str) -> Any:
    default = field.default
    if isinstance(default, bool):
        return text.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, Path):
        return Path(text)
    if isinstance(default, tuple):
        return tuple(p for p in (s.strip() for s in text.split(";")) if p)
    return text
