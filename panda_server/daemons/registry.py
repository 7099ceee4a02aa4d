"""The daemons `panda-daemon NAME` can run: name → run_once(engine, settings, now), period."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from panda_server.dataservice import adder, setupper
from panda_server.jobdispatcher import watcher
from panda_server.settings import Settings

RunOnce = Callable[..., Any]

DAEMONS: dict[str, tuple[RunOnce, Callable[[Settings], float]]] = {
    "setupper": (setupper.run_once, lambda s: s.setupper_interval),
    "adder": (adder.run_once, lambda s: s.adder_interval),
    "watcher": (watcher.run_once, lambda s: s.watcher_interval),
}
