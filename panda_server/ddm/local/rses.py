"""Where each RSE keeps its files: the RSE map from schedconfig and the replica URLs the pilot uses.

An RSE (storage element) is a site's DDM endpoint (schedconfig `ddm`). Its location is what
`schedconfig.export.se_location` says: ("file://localhost", directory) for a directory SE or
("root://host:port", path) for an XRootD SE. A file lives there at the deterministic Rucio path,
exactly where the pilot reads and writes it (`pilot.infosys.surl`, which builds the URL here too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy.engine import Connection

from panda_server.ddm.interface import DDMError, RSEMap
from pilot.errors import PilotFailure
from pilot.infosys import surl
from schedconfig.export import se_location
from schedconfig.model import QueueSpec
from schedconfig.sync import read_queues

RSESource = RSEMap | Callable[[], RSEMap]  # a fixed map, or a function returning the current one


def rse_map(conn: Connection, storage_root: str | Path) -> dict[str, tuple[str, str]]:
    """{rse: (endpoint, path)} of every DDM endpoint the queues in schedconfig use.

    Analysis queues share their site's RSE. When queues using one RSE disagree about its location,
    offline queues are ignored; if the others still disagree, DDMError names them.
    """
    return locations(read_queues(conn), storage_root)


def locations(queues: Iterable[QueueSpec], storage_root: str | Path) -> dict[str, tuple[str, str]]:
    """The RSE map of a list of queues (rse_map without the database)."""
    users: dict[str, list[QueueSpec]] = {}
    for q in queues:
        if q.ddm:
            users.setdefault(q.ddm, []).append(q)
    out = {}
    for rse, queues_of_rse in sorted(users.items()):
        found = {se_location(q, storage_root=storage_root) for q in queues_of_rse}
        if len(found) > 1:
            online = [q for q in queues_of_rse if q.status != "offline"]
            found = {se_location(q, storage_root=storage_root) for q in online} or found
        if len(found) > 1:
            names = ", ".join(sorted(q.nickname for q in queues_of_rse))
            raise DDMError(f"the queues using RSE {rse} disagree about its location ({names})")
        out[rse] = found.pop()
    return out


def current(rses: RSESource) -> RSEMap:
    """The map itself, calling the function of a dynamic source."""
    return rses() if callable(rses) else rses


def check_rse(rses: RSEMap, rse: str, role: str = "RSE") -> None:
    """DDMError unless rse is a known RSE; `role` names it in the message ("destination RSE")."""
    if rse not in rses:
        known = ", ".join(sorted(rses)) or "none"
        raise DDMError(f"unknown {role} {rse!r} (known RSEs: {known})")


def replica_url(location: tuple[str, str], rse: str, scope: str, lfn: str) -> str:
    """The file's URL on the SE: root://host:port//path/<rucio path> or file://localhost/path/<rucio path>."""
    endpoint, path = location
    protocol = {"endpoint": endpoint, "path": path}
    conf = {rse: {"arprotocols": {"read_lan": [protocol], "write_lan": [protocol]}}}
    try:
        return surl(conf, rse, scope, lfn, "in")
    except PilotFailure as exc:  # not reachable with a well-formed location
        raise DDMError(f"no URL for {scope}:{lfn} at {rse}: {exc}") from exc


def is_xrootd(url: str) -> bool:
    return url.startswith(("root://", "roots://"))
