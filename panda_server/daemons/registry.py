"""The daemons `panda-daemon NAME` can run: name → run_once(engine, settings, now), period."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from panda_server.dataservice import activator, adder, finisher, setupper, waker
from panda_server.ddm.local import agent as ddm_agent
from panda_server.jobdispatcher import watcher
from panda_server.settings import Settings
from panda_server.taskbuffer import sitedata

RunOnce = Callable[..., Any]

DAEMONS: dict[str, tuple[RunOnce, Callable[[Settings], float]]] = {
    "setupper": (setupper.run_once, lambda s: s.setupper_interval),
    "adder": (adder.run_once, lambda s: s.adder_interval),
    "activator": (activator.run_once, lambda s: s.activator_interval),  # polls dispatch datasets
    "finisher": (finisher.run_once, lambda s: s.finisher_interval),  # polls output transfers, timeouts
    "waker": (waker.run_once, lambda s: s.waker_interval),
    "watcher": (watcher.run_once, lambda s: s.watcher_interval),
    "ddm": (ddm_agent.run_once, lambda s: s.ddm_interval),  # local DDM transfer agent (docs/ddm.md)
    "sitedata": (sitedata.run_once, lambda s: s.sitedata_interval),
}
