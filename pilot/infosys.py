"""Queue and storage information: queuedata, DDM endpoints, copy tools per activity, SURLs.

Central configuration by site policy (seed: "pilots can be centrally configured according to
each site policy"): the pilot reads its queue's queuedata from the server
(`/cache/schedconfig/<queue>.all.json`) or a local file, and the DDM endpoints from
`/cache/ddmendpoints.json` or a file (reference/pilot.md §4). Command-line options override.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pilot.errors import PilotFailure

log = logging.getLogger("pilot.infosys")

MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
# Activities the pilot looks up, most specific first (pilot3 names up to and after 3.9.4), then
# the classic schedconfig keys copytoolin/copytool (reference/pilot.md §4, §8).
ACTIVITIES = {
    "in": ("pr", "read_lan", "default"),
    "out": ("pw", "write_lan", "w", "default"),
    "log": ("pl", "write_lan", "w", "default"),
}
CLASSIC_KEY = {"in": "copytoolin", "out": "copytool", "log": "copytool"}
PROTOCOL_ACTIVITY = {"in": "read_lan", "out": "write_lan", "log": "write_lan"}


def load_document(source: str, session: Any = None) -> Any:
    """JSON from a URL (through the pilot's HTTP session) or a local file path."""
    if source.startswith(("http://", "https://")):
        if session is None:
            raise PilotFailure(1116, f"no HTTP session to fetch {source}")
        try:
            response = session.get(source, timeout=60)
        except Exception as exc:  # requests errors, TLS errors
            raise PilotFailure(1116, f"cannot download {source}: {exc}") from None
        if response.status_code != 200:
            raise PilotFailure(
                1116, f"cannot download {source}: HTTP {response.status_code} {response.text[:200]}"
            )
        text = response.text
    else:
        path = Path(source.removeprefix("file://"))
        try:
            if path.stat().st_size > MAX_DOCUMENT_BYTES:
                raise PilotFailure(1117, f"{path} is larger than {MAX_DOCUMENT_BYTES} bytes")
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PilotFailure(1116, f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PilotFailure(1117, f"{source} is not JSON: {exc}") from None


def queuedata(source: str, queue: str, session: Any = None) -> dict[str, Any]:
    """The queue's queuedata; {queue: {...}} documents are unwrapped. Refuses unusable queues."""
    doc = load_document(source.replace("{pandaqueue}", queue), session)
    if isinstance(doc, dict) and queue in doc and isinstance(doc[queue], dict):
        doc = doc[queue]
    if not isinstance(doc, dict) or not doc.get("nickname"):
        raise PilotFailure(1117, f"queuedata from {source} has no 'nickname': not a queue description")
    if doc["nickname"] != queue:
        raise PilotFailure(1117, f"queuedata from {source} describes {doc['nickname']}, not {queue}")
    check_queue(doc)
    return doc


def check_queue(qd: Mapping[str, Any]) -> None:
    """The real pilot refuses a queue whose state is not ACTIVE (1359) or that is offline (1386)."""
    if str(qd.get("state", "ACTIVE")).upper() != "ACTIVE":
        raise PilotFailure(1359, f"queue {qd['nickname']} state is {qd.get('state')}, not ACTIVE")
    if qd.get("status") == "offline":
        raise PilotFailure(1386, f"queue {qd['nickname']} is offline in schedconfig")


def ddmendpoints(source: str, session: Any = None) -> dict[str, dict[str, Any]]:
    doc = load_document(source, session)
    if not isinstance(doc, dict) or not doc:
        raise PilotFailure(1117, f"DDM endpoints from {source} are empty")
    return doc


def copytools(qd: Mapping[str, Any], kind: str) -> list[str]:
    """Copy tool names for stage-in ('in'), outputs ('out') or the log ('log'), in order."""
    acopytools = qd.get("acopytools") or {}
    for activity in ACTIVITIES[kind]:
        tools = acopytools.get(activity)
        if tools:
            return list(tools)
    classic = qd.get(CLASSIC_KEY[kind]) or qd.get("copytool")
    if classic:
        return [classic]
    raise PilotFailure(
        1133, f"queue {qd.get('nickname')} defines no copy tool for {kind} (acopytools/copytool)"
    )


def rucio_path(scope: str, lfn: str) -> str:
    """Deterministic Rucio path: <scope with . → />/<md5(scope:lfn)[0:2]>/<[2:4]>/<lfn>."""
    digest = hashlib.md5(f"{scope}:{lfn}".encode()).hexdigest()
    return f"{scope.replace('.', '/')}/{digest[0:2]}/{digest[2:4]}/{lfn}"


def surl(ddmconf: Mapping[str, Any], ddm: str, scope: str, lfn: str, kind: str) -> str:
    """URL of a file on a DDM endpoint: root://host:port//path/… or file://localhost/path/…."""
    endpoint = ddmconf.get(ddm)
    if endpoint is None:
        raise PilotFailure(
            1133, f"DDM endpoint {ddm!r} is not in the storage data ({', '.join(sorted(ddmconf))})"
        )
    if endpoint.get("is_deterministic") is False:
        raise PilotFailure(1329, f"DDM endpoint {ddm} is not deterministic")
    protocols = (endpoint.get("arprotocols") or {}).get(PROTOCOL_ACTIVITY[kind]) or []
    if not protocols:
        raise PilotFailure(1313, f"DDM endpoint {ddm} has no {PROTOCOL_ACTIVITY[kind]} protocol")
    base, path = protocols[0]["endpoint"].rstrip("/"), protocols[0]["path"].strip("/")
    rel = f"{path}/{rucio_path(scope, lfn)}" if path else rucio_path(scope, lfn)
    # root://host:port//abs/path (XRootD wants the double slash); file://localhost/abs/path
    return f"{base}//{rel}" if base.startswith("root:") else f"{base}/{rel}"


def local_path(url: str) -> str | None:
    """The local path of a file:// URL or plain path; None for remote URLs."""
    if url.startswith("file://"):
        rest = url[len("file://") :]
        return "/" + rest.split("/", 1)[1] if not rest.startswith("/") else rest
    return None if "://" in url else url


def direct_access(qd: Mapping[str, Any]) -> bool:
    return bool(qd.get("direct_access_lan"))


def environ(qd: Mapping[str, Any]) -> dict[str, str]:
    """The queue's `environ` (space-separated k=v) for the payload."""
    out = {}
    for item in str(qd.get("environ") or "").split():
        key, sep, value = item.partition("=")
        if sep and key.isidentifier():
            out[key] = value
    return out


def number(value: Any) -> float:
    """A queuedata number; 0 when unset or not a number (a site's typo must not crash the pilot)."""
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def truthy(value: Any) -> bool:
    """A queuedata flag: true/false, or the classic schedconfig strings 'TRUE'/'FALSE'."""
    return value.strip().upper() not in ("FALSE", "0", "NO", "") if isinstance(value, str) else bool(value)


def first(values: Sequence[str]) -> str:
    return values[0] if values else ""
