"""AutoPilot in tests: factory settings pointing at the test server, stand-in wrappers, polling."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from autopilot.factory import Factory
from panda_server.db import tables as t
from panda_server.db.localpg import free_port
from panda_server.settings import Settings
from tests.support.pilots import utcnow

# what our pilot gets in tests: quick to give up when there is no job, quick retries
PILOT_ARGS = ("--getjob-sleep 0.2 -v 1 --update-interval 1 --update-attempts 3 --transfer-backoff 0.2 "
              "--min-free-mb 100 --max-jobs 10 --heartbeat 2")  # fmt: skip


def factory_settings(server, db_url: str, base: Path, **overrides) -> Settings:
    values = dict(database_url=db_url, pki_dir=server.pki.root, server_name="127.0.0.1",
                  http_port=server.http_port, https_port=server.https_port, autopilot_dir=base / "autopilot",
                  autopilot_factory="test-factory", autopilot_pilot_args=PILOT_ARGS,
                  autopilot_pilot_workdir=str(base / "workers"), autopilot_log_port=free_port(),
                  autopilot_interval=1.0)  # fmt: skip
    values.update(overrides)
    return Settings(**values)


def sleeper(directory: Path, seconds: int = 120) -> Path:
    """A stand-in wrapper that only sleeps (for counting and cancelling pilots without running jobs)."""
    path = directory / "sleeper.sh"
    path.write_text(f'#!/bin/bash\necho "sleeper $PANDA_TPID"\nsleep {seconds} & wait $!\n')
    path.chmod(0o755)
    return path


def pilots(engine: Engine, factory: str = "test-factory") -> dict[str, sa.Row]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.pilotqueue).where(t.pilotqueue.c.factory == factory))
        return {r.tpid: r for r in rows}


def follow(f: Factory, engine: Engine, done, *, seconds: float, every: float = 0.5) -> dict[str, list[str]]:
    """Poll the factory until `done()` (bounded); returns each pilot's states in the order seen."""
    seen: dict[str, list[str]] = {}

    def note() -> None:
        for tpid, row in pilots(engine, f.name).items():
            states = seen.setdefault(tpid, [])
            if not states or states[-1] != row.state:
                states.append(row.state)

    note()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        f.poll(utcnow())
        note()
        if done():
            return seen
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds} s; pilots seen: {seen}")
