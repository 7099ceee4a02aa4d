"""Fixtures for the interop tests: the real PyPI panda-pilot against our running server.

The pilot sdist is downloaded once per machine into ``<repo>/var/test-cache/`` (gitignored).
The server here is a private one with gunicorn's access log on, so a test can show the exact
requests the pilot made.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop import realpilot
from tests.interop.bench import PilotBench, make_bench
from tests.support import server as srv

ROOT = Path(__file__).resolve().parent.parent.parent
PILOT_CACHE = ROOT / "var" / "test-cache"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "interop: runs the real PyPI panda-pilot as its own Unix user (needs root and unshare)"
    )


def missing_prerequisite() -> str | None:
    """Why the real pilot cannot run here, or None. Anything else missing is a failure."""
    if os.geteuid() != 0:
        return "the real pilot runs as its own Unix user in its own PID namespace: needs root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is missing: the real pilot must run in its own PID namespace"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing_prerequisite()
    if reason is None:
        return
    if os.environ.get("CI"):  # CI runs as root on a machine it provisions: a skip would hide a gap
        raise pytest.UsageError(f"interop tests cannot run in CI: {reason}")
    for item in items:
        if item.get_closest_marker("interop") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def pilot_source(workdir: Path) -> Path:
    """The unpacked panda-pilot sdist (holds pilot.py), cached in var/test-cache/ and copied into
    the world-traversable session directory: the checkout itself may sit under a directory the
    pilot's user cannot enter (CI clones anywhere)."""
    cached = realpilot.ensure_pilot_source(PILOT_CACHE)
    dest = workdir / cached.name
    if not dest.exists():
        shutil.copytree(cached, dest)
        realpilot.make_world_readable(dest)
    return dest


# gunicorn's default access log format: h l u t "r" s b "f" "a"
_ACCESS = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) \S+ "[^"]*" "(?P<agent>[^"]*)"'
)
# taskbuffer.jobs logs every status change: "PandaID=<id> status <old> -> <new> ..."
_TRANSITION = re.compile(r"PandaID=(?P<id>\d+) status (?P<old>\w+) -> (?P<new>\w+)")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int
    agent: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.status}"


@dataclass
class ServerLog:
    """One gunicorn listener's log: its access lines and the app's log lines, in order."""

    path: Path

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def text_since(self, offset: int) -> str:
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def requests_since(self, offset: int) -> list[Request]:
        """Every request logged after ``offset``, in order."""
        return [Request(m["method"], m["path"], int(m["status"]), m["agent"])
                for m in _ACCESS.finditer(self.text_since(offset))]  # fmt: skip

    def transitions_since(self, offset: int, panda_id: int) -> list[tuple[str, str]]:
        """(old, new) status of every change of job ``panda_id`` logged after ``offset``."""
        return [(m["old"], m["new"]) for m in _TRANSITION.finditer(self.text_since(offset))
                if int(m["id"]) == panda_id]  # fmt: skip


@pytest.fixture(scope="session")
def pilot_server(workdir, db_url, pki, schedconfig_loaded):
    """A running server (HTTPS with client certificates + HTTP) that logs every request."""
    with srv.running_server(workdir / "interop-server", db_url=db_url, pki=pki,
                            extra_env={"PANDA_ACCESS_LOG": "-"}) as s:  # fmt: skip
        yield s


@pytest.fixture(scope="session")
def https_log(pilot_server) -> ServerLog:
    """The HTTPS listener's log (every pilot call goes there)."""
    return ServerLog(pilot_server.logs / "gunicorn-https.log")


@pytest.fixture
def bench(clean_db, pilot_server, pki, workdir, db_url, pilot_source) -> PilotBench:
    """A clean DB, an empty SE directory owned by the pilot user, a run dir, the user's client."""
    return make_bench(clean_db, pilot_server, pki, workdir, db_url, pilot_source)
