"""Read the queue files (`<dir>/<nickname>.json`) and `<dir>/clouds.json`, and check the topology.

Stdlib only. Every error is a ConfigError naming the file and, where there is one, the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from schedconfig.model import CloudSpec, ConfigError, QueueSpec

DEFAULT_DIR = Path(__file__).resolve().parent / "queues"
CLOUDS_FILE = "clouds.json"


def read_json(path: str | Path) -> Any:
    """Parse one JSON file; malformed JSON and duplicate keys are errors naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(path, pairs))
    except json.JSONDecodeError as exc:
        problem = f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise ConfigError(f"{path}:{exc.lineno}", None, problem) from None


def _unique_keys(path: Path, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(str(path), key, "defined twice in the same object")
        out[key] = value
    return out


def load_queue_file(path: str | Path) -> QueueSpec:
    """One queue; the file must be named after the queue (`<nickname>.json`)."""
    path = Path(path)
    queue = QueueSpec.from_dict(read_json(path), source=str(path))
    expected = f"{queue.nickname}.json"
    if path.name != expected:
        problem = (
            f"is '{queue.nickname}' but the file is named '{path.name}'; rename the file to '{expected}'"
        )
        raise ConfigError(str(path), "nickname", problem)
    return queue


def load_queues(directory: str | Path) -> list[QueueSpec]:
    """Every `<dir>/*.json` except clouds.json, sorted by file name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(str(directory), None, "not a directory of queue files")
    return [load_queue_file(p) for p in sorted(directory.glob("*.json")) if p.name != CLOUDS_FILE]


def load_clouds(directory: str | Path) -> list[CloudSpec]:
    """`<dir>/clouds.json`: a list of clouds, or an object {name: cloud} (name may be omitted inside)."""
    path = Path(directory) / CLOUDS_FILE
    if not path.is_file():
        raise ConfigError(str(path), None, "missing; it must list every cloud the queues refer to")
    data = read_json(path)
    if isinstance(data, list):
        return [CloudSpec.from_dict(item, source=_cloud_source(path, item, i)) for i, item in enumerate(data)]
    if isinstance(data, dict):
        return [_cloud_from_entry(path, name, body) for name, body in data.items()]
    raise ConfigError(str(path), None, "expected a list of clouds or an object {name: cloud}")


def _cloud_from_entry(path: Path, name: str, body: Any) -> CloudSpec:
    source = f"{path} (cloud {name})"
    if not isinstance(body, dict):
        raise ConfigError(source, None, "expected a JSON object with the CloudSpec fields")
    if body.get("name", name) != name:
        raise ConfigError(source, "name", f"is {body['name']!r} but the key is {name!r}")
    return CloudSpec.from_dict({**body, "name": name}, source=source)


def _cloud_source(path: Path, item: Any, index: int) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"{path} (cloud {name})" if isinstance(name, str) else f"{path} (cloud #{index + 1})"


def load_topology(directory: str | Path = DEFAULT_DIR) -> tuple[list[QueueSpec], list[CloudSpec]]:
    """Queues and clouds of one directory, checked together (what `panda-schedconfig` uses)."""
    queues, clouds = load_queues(directory), load_clouds(directory)
    validate_topology(queues, clouds, directory=directory)
    return queues, clouds


def validate_topology(queues: Sequence[QueueSpec], clouds: Sequence[CloudSpec],
                      directory: str | Path | None = None) -> None:  # fmt: skip
    """Check the queues and clouds against each other; raise ConfigError on the first problem.

    Files are named by the loader's convention (`<nickname>.json`, `clouds.json`) under
    `directory` when given.
    """
    base = Path(directory) if directory is not None else Path()
    queue_file = {q.nickname: str(base / f"{q.nickname}.json") for q in queues}
    _check_unique((q.nickname for q in queues), lambda n: (queue_file[n], "nickname"))
    _check_unique((c.name for c in clouds), lambda n: (f"{base / CLOUDS_FILE} (cloud {n})", "name"))
    by_name = {c.name: c for c in clouds}
    site_owner: dict[str, QueueSpec] = {}
    ddm_owner: dict[str, QueueSpec] = {}
    for q in queues:
        _check_queue(q, queue_file[q.nickname], by_name)
        _check_consistent(
            q, queue_file[q.nickname], site_owner.setdefault(q.siteid, q), ddm_owner.setdefault(q.ddm, q)
        )
    for c in clouds:
        _check_cloud(c, f"{base / CLOUDS_FILE} (cloud {c.name})", queues)


def _check_unique(names: Iterable[str], where: Callable[[str], tuple[str, str]]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            source, field = where(name)
            raise ConfigError(source, field, f"{name!r} is defined more than once")
        seen.add(name)


def _check_queue(q: QueueSpec, source: str, clouds: dict[str, CloudSpec]) -> None:
    if q.cloud not in clouds:
        known = ", ".join(sorted(clouds)) or "none"
        raise ConfigError(
            source, "cloud", f"cloud {q.cloud!r} is not defined in {CLOUDS_FILE} (defined: {known})"
        )


def _check_consistent(q: QueueSpec, source: str, same_site: QueueSpec, same_ddm: QueueSpec) -> None:
    """A site lies in one cloud; queues sharing a DDM endpoint agree on where it is."""
    if same_site.cloud != q.cloud:
        problem = f"site {q.siteid!r} is in cloud {q.cloud!r} here but in {same_site.cloud!r} for queue {same_site.nickname!r}"
        raise ConfigError(source, "cloud", problem)
    if same_ddm.se_path != q.se_path:
        problem = (f"{q.se_path!r} differs from {same_ddm.se_path!r} of queue {same_ddm.nickname!r}, "
                   f"which uses the same ddm {q.ddm!r}")  # fmt: skip
        raise ConfigError(source, "se_path", problem)


def _check_cloud(c: CloudSpec, source: str, queues: Sequence[QueueSpec]) -> None:
    sites = sorted({q.siteid for q in queues if q.cloud == c.name})
    if c.tier1 not in sites:
        problem = f"{c.tier1!r} is not the siteid of any queue in cloud {c.name!r} (sites: {', '.join(sites) or 'none'})"
        raise ConfigError(source, "tier1", problem)
    endpoints = {q.ddm for q in queues}
    for endpoint in c.tier1SE:
        if endpoint not in endpoints:
            raise ConfigError(source, "tier1SE", f"{endpoint!r} is not the ddm endpoint of any queue")
