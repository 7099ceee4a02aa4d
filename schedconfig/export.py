"""The JSON documents pilots read: `<queue>.all.json` (queuedata) and `ddmendpoints.json`.

Stdlib only. The shapes follow the minimal documents that worked with the real pilot
(panda-pilot 3.7 and pilot3 3.11; reference/pilot.md §4). The server serves them under
`/cache/schedconfig/<queue>.all.json` and `/cache/ddmendpoints.json`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from schedconfig.model import ConfigError, QueueSpec

# Activities the pilot looks up in acopytools/astorages: up to 3.9.3 pr (stage-in), pw/w
# (outputs), pl (log); from 3.9.4 read_lan, write_lan/w, pl. A missing key falls back to
# 'default' and then to 'rucio', so every key is defined.
STAGE_IN_ACTIVITIES = ("pr", "read_lan", "read_wan")
STAGE_OUT_ACTIVITIES = ("pw", "pl", "w", "write_lan", "write_wan")
ACTIVITIES = (*STAGE_IN_ACTIVITIES, *STAGE_OUT_ACTIVITIES, "default")
# arprotocols keys of a DDM endpoint (activity -> protocols)
PROTOCOL_ACTIVITIES = ("read_lan", "read_wan", "write_lan", "write_wan", "third_party_copy_read",
                       "third_party_copy_write", "delete_lan", "delete_wan")  # fmt: skip
# pilot3 has no 'cp' copytool module (pilot/copytool/*.py); its 'mv' module does cp/mv/symlink
# and, with catchall mv_final_destination, writes outputs to the SURL path on the SE. The
# classic keys copytool/copytoolin keep our own names for our pilot.
PILOT3_COPYTOOL = {"cp": "mv"}
MV_FINAL_DESTINATION = "mv_final_destination"


def se_location(q: QueueSpec, *, storage_root: str | Path) -> tuple[str, str]:
    """(endpoint, path) of the queue's storage element.

    `q.se_path` if set, else `<storage_root>/<ddm>`; a root://host:port/path se_path gives
    endpoint root://host:port and path /path; a directory gives file://localhost and the path.
    """
    if q.se_path.startswith("root://"):
        host, _, rest = q.se_path[len("root://") :].partition("/")
        return f"root://{host}", "/" + rest
    directory = q.se_path or os.path.join(os.path.abspath(storage_root), q.ddm)
    return "file://localhost", directory


def pilot_copytool(name: str) -> str:
    """The pilot3 copytool module that implements one of our copy tool names."""
    return PILOT3_COPYTOOL.get(name, name)


def queuedata(q: QueueSpec, *, storage_root: str | Path) -> dict[str, Any]:
    """The flat queuedata dict for one queue (pilot `--queuedata-url`, `<queue>.all.json`)."""
    tool_out, tool_in = pilot_copytool(q.copytool), pilot_copytool(q.copytoolin)
    tools = list(dict.fromkeys((tool_out, tool_in)))
    acopytools = {a: [tool_in] for a in STAGE_IN_ACTIVITIES}
    acopytools.update({a: [tool_out] for a in STAGE_OUT_ACTIVITIES})
    acopytools["default"] = tools
    endpoint, path = se_location(q, storage_root=storage_root)
    return {
        "nickname": q.nickname, "panda_resource": q.siteid, "atlas_site": q.siteid, "siteid": q.siteid,
        "cloud": q.cloud, "tier": q.tier, "state": "ACTIVE", "status": q.status, "type": q.type,
        "copytools": {tool: {"setup": ""} for tool in tools},
        "acopytools": acopytools,
        "astorages": {a: [q.ddm] for a in ACTIVITIES},
        "catchall": MV_FINAL_DESTINATION if tool_out == "mv" else "",
        "maxwdir": q.maxwdir, "maxrss": q.memory, "maxtime": q.maxtime, "maxinputsize": q.maxinputsize,
        "timefloor": 0, "corecount": q.corecount, "params": {}, "environ": q.environ,
        "direct_access_lan": q.direct_access_lan, "direct_access_wan": False,
        "allow_lan": True, "allow_wan": False, "is_cvmfs": False, "pledgedcpu": 0,
        "cmtconfig": q.cmtconfig, "appdir": q.appdir, "container_type": "", "container_options": "",
        "retry": q.retry, "recoverdir": q.recoverdir, "glexec": q.glexec,
        # classic schedconfig keys, for our own pilot
        "ddm": q.ddm, "setokens": q.setokens, "copytool": q.copytool, "copytoolin": q.copytoolin,
        "se": endpoint, "sepath": path, "memory": q.memory, "space": q.space,
    }  # fmt: skip


def ddmendpoints(queues: Sequence[QueueSpec], *, storage_root: str | Path) -> dict[str, dict[str, Any]]:
    """`{ddm name: endpoint}` for every DDM endpoint the queues use (CRIC ddmendpoints.json shape).

    Ids count from 1 in name order. An endpoint's site is the siteid of a production queue
    using it (analysis queues share their site's endpoint), else of the first queue.
    """
    owners: dict[str, list[QueueSpec]] = {}
    for q in sorted(queues, key=lambda q: (q.is_analysis, q.nickname)):
        owners.setdefault(q.ddm, []).append(q)
    out = {}
    for pk, name in enumerate(sorted(owners), start=1):
        locations = {se_location(q, storage_root=storage_root) for q in owners[name]}
        if len(locations) > 1:
            users = ", ".join(q.nickname for q in owners[name])
            raise ConfigError(f"ddm endpoint {name}", "se_path", f"the queues using it disagree ({users})")
        out[name] = _endpoint(name, pk, owners[name][0], *locations.pop())
    return out


def _endpoint(name: str, pk: int, owner: QueueSpec, endpoint: str, path: str) -> dict[str, Any]:
    protocol = {"endpoint": endpoint, "path": path, "flavour": "", "id": pk}
    return {
        "name": name, "id": pk, "type": "DATADISK", "token": owner.setokens.split(",")[0].strip(),
        "is_deterministic": True,  # the pilot refuses non-deterministic endpoints (error 1329)
        "state": "ACTIVE", "site": owner.siteid, "cloud": owner.cloud, "rprotocols": {}, "resource": {},
        "arprotocols": {activity: [dict(protocol)] for activity in PROTOCOL_ACTIVITIES},
    }  # fmt: skip


def export_all(queues: Sequence[QueueSpec], out_dir: str | Path, storage_root: str | Path) -> list[Path]:
    """Write `<nickname>.all.json` per queue, `ddmendpoints.json` and `pandaqueues.json`.

    pandaqueues.json is `{queue: queuedata}`, the shape the pilot accepts from
    LOCAL_AGIS_SCHEDCONF; pointing that at it spares the pilot a slow CRIC lookup.
    Files are replaced atomically, since the server may be serving them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    documents = {q.nickname: queuedata(q, storage_root=storage_root) for q in queues}
    written = [_write_json(out / f"{name}.all.json", doc) for name, doc in documents.items()]
    written.append(_write_json(out / "ddmendpoints.json", ddmendpoints(queues, storage_root=storage_root)))
    written.append(_write_json(out / "pandaqueues.json", documents))
    return written


def _write_json(path: Path, document: Any) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def se_directories(queues: Iterable[QueueSpec], *, storage_root: str | Path) -> dict[str, str]:
    """{ddm name: local directory} of the endpoints that are plain directories (to create them)."""
    out = {}
    for q in queues:
        endpoint, path = se_location(q, storage_root=storage_root)
        if endpoint == "file://localhost":
            out[q.ddm] = path
        # root:// endpoints are served by an XRootD server that owns its directory
    return out
