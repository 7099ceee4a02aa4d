"""The pilot's side of the dispatcher protocol: getJob, updateJob, getStatus, queuedata.

Speaks what the real pilot 3.7 speaks (reference/pilot.md §3): POST /server/panda/<method>,
form-urlencoded values, `Accept: application/json`, over mutual TLS with the pilot's proxy as
client certificate, the server verified against X509_CERT_DIR. The encoding lives in
panda_server.protocol.transport; this module adds the pilot's fields, retries and time-outs.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from collections.abc import Mapping
from typing import Any

import requests

from panda_server.protocol.transport import PandaSession, TransportError
from pilot import VERSION

log = logging.getLogger("pilot.server")


class ServerError(RuntimeError):
    """The server could not be reached, or answered with an error StatusCode."""


def node_name() -> str:
    return socket.getfqdn() or platform.node()


def memory_mb() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_mhz() -> float:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("cpu MHz"):
                    return float(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return 0.0


class Server:
    def __init__(self, url: str, *, proxy: str | None, ca_dir: str | None, timeout: float = 120) -> None:
        self.url = url.rstrip("/")
        self.session = PandaSession(url=self.url, url_ssl=self.url, proxy=proxy, ca=ca_dir, timeout=timeout)
        self.session.http.headers["User-Agent"] = (
            f"pilot/{VERSION} (PanDA-WMS; Python {platform.python_version()})"
        )

    @property
    def http(self) -> Any:
        """The keep-alive requests.Session (queuedata, transformation downloads)."""
        return self.session.http

    def call(self, method: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        secure = self.url.startswith("https://")
        try:
            reply = self.session.legacy(
                method, {k: _text(v) for k, v in fields.items()}, secure=secure, as_json=True
            )
        except (TransportError, ValueError) as exc:
            raise ServerError(f"{method}: {exc}") from None
        if not isinstance(reply, dict) or "StatusCode" not in reply:
            raise ServerError(f"{method}: unexpected reply {str(reply)[:200]!r}")
        return reply

    def get_job(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return self.call("getJob", fields)

    def update_job(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        reply = self.call("updateJob", fields)
        if str(reply.get("StatusCode")) != "0":
            raise ServerError(f"updateJob jobId={fields.get('jobId')} refused: StatusCode={reply.get('StatusCode')} "
                              f"{reply.get('errorDialog', '')}")  # fmt: skip
        return reply

    def update_job_retrying(self, fields: Mapping[str, Any], *, attempts: int, interval: float,
                            should_stop: Any = None) -> dict[str, Any] | None:  # fmt: skip
        """The final update, tried `attempts` times `interval` s apart (3.7: 10 × 120 s)."""
        for attempt in range(1, attempts + 1):
            try:
                return self.update_job(fields)
            except ServerError as exc:
                log.warning("final update of PandaID=%s failed (attempt %d/%d): %s",
                            fields.get("jobId"), attempt, attempts, exc)  # fmt: skip
            if should_stop is not None and should_stop():
                break  # the pilot is being ended: the job dir stays for recovery
            if attempt < attempts:
                time.sleep(interval)
        return None

    def job_signing_key(self) -> bytes:
        """The server's job-signing public key (PEM), fetched over the verified TLS connection."""
        url = f"{self.url}/cache/jobsign-pub.pem"
        if not url.startswith("https://"):
            raise ServerError(f"will not fetch the job-signing key over plain HTTP ({url}): anybody on "
                              "the path could replace it; use an https --url")  # fmt: skip
        try:
            response = self.http.get(url, timeout=60)
        except (requests.RequestException, OSError) as exc:
            raise ServerError(f"cannot download {url}: {exc}") from None
        if response.status_code != 200:
            raise ServerError(f"cannot download {url}: HTTP {response.status_code} {response.text[:200]}")
        return response.content

    def get_status(self, panda_id: int) -> tuple[str, int]:
        """(jobStatus, attemptNr) from getStatus; ('notfound', 0) for an unknown job."""
        reply = self.call("getStatus", {"ids": panda_id})
        status = str(reply.get("status", "notfound")).split("+")[0].split(" ")[0]
        attempt = str(reply.get("attemptNr", "0")).split("+")[0].split(" ")[0]
        return status, int(attempt) if attempt.isdigit() else 0

    def close(self) -> None:
        self.session.close()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return "" if value is None else str(value)


def batch_id() -> str:
    """The batch system's id for this pilot, if it runs under one."""
    for key in ("SLURM_JOB_ID", "CONDOR_JOBID", "PBS_JOBID", "PANDA_BATCH_ID"):
        if os.environ.get(key):
            return os.environ[key]
    return ""
