"""What the factory asks the PanDA server, over its passive HTTP port, as classic AutoPilot did:
the jobs per site and state (getJobStatisticsPerSite) and the clouds' status (getCloudSpecs)."""

from __future__ import annotations

import dataclasses
from typing import Any

from panda_server.protocol.transport import PandaSession, TransportError


class PandaUnavailable(RuntimeError):
    """The server could not be asked; the factory then submits nothing this cycle."""


@dataclasses.dataclass(frozen=True)
class PandaState:
    jobs: dict[str, dict[str, int]]  # {site: {jobStatus: n}}; a site absent counts as all zeros
    clouds: dict[str, str]  # {cloud: status}

    def count(self, site: str, status: str) -> int:
        return int(self.jobs.get(site, {}).get(status, 0))


def fetch(url: str, *, timeout: float = 30) -> PandaState:
    session = PandaSession(url=url, url_ssl=url, proxy=None, ca=None, timeout=timeout)
    try:
        jobs = _jobs(session.legacy("getJobStatisticsPerSite", {}, secure=False, as_json=True))
        clouds = _clouds(session.legacy("getCloudSpecs", {}, secure=False, as_json=True))
    except (
        TransportError,
        ValueError,
        TypeError,
        AttributeError,
    ) as exc:  # unreachable, or not the documents
        raise PandaUnavailable(str(exc)) from exc
    finally:
        session.close()
    return PandaState(jobs=jobs, clouds=clouds)


def _jobs(doc: Any) -> dict[str, dict[str, int]]:
    if not isinstance(doc, dict):
        raise PandaUnavailable(f"getJobStatisticsPerSite: not a JSON object: {str(doc)[:200]}")
    return {str(site): {str(k): int(v) for k, v in states.items()} for site, states in doc.items()
            if isinstance(states, dict)}  # fmt: skip


def _clouds(doc: Any) -> dict[str, str]:
    if not isinstance(doc, dict):
        raise PandaUnavailable(f"getCloudSpecs: not a JSON object: {str(doc)[:200]}")
    return {
        str(name): str(spec.get("status", "online")) for name, spec in doc.items() if isinstance(spec, dict)
    }
