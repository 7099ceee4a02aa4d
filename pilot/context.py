"""What every part of a running pilot shares: options, server, queue and storage data, home."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from pilot import VERSION, infosys
from pilot.config import PilotConfig
from pilot.credentials import Credential
from pilot.server import Server, batch_id, node_name


@dataclasses.dataclass
class PilotContext:
    cfg: PilotConfig
    server: Server
    queuedata: dict[str, Any]
    ddmconf: dict[str, Any]
    home: Path
    started: float = dataclasses.field(default_factory=time.time)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    stop_reason: tuple[int, str] | None = None  # (pilot error, diag) passed on to the running job
    stop_signal: int = 0
    current_jobdir: Path | None = None
    credential: Credential = dataclasses.field(default_factory=Credential)  # the proxy: file or memfd

    @property
    def site(self) -> str:
        return str(self.queuedata.get("panda_resource") or self.queuedata.get("siteid") or self.cfg.queue)

    @property
    def node(self) -> str:
        return node_name()

    def identity_fields(self) -> dict[str, str]:
        """schedulerID / pilotID / batchID: how the server links jobs to pilots (AutoPilot tracking)."""
        fields = {"pilotID": f"{self.cfg.pilot_id or 'unknown'}|PR|{VERSION}"}
        if self.cfg.scheduler_id:
            fields["schedulerID"] = self.cfg.scheduler_id
        if batch_id():
            fields["batchID"] = batch_id()
        return fields

    def wrapper_config(self, jobdir: Path, mode: str) -> dict[str, Any]:
        """The job wrapper's settings, written to a file: a concealed proxy is not in it, not even its path."""
        cfg = self.cfg
        proxy = None if self.credential.concealed else (self.credential.path or cfg.proxy)
        left = cfg.lifetime - (time.time() - self.started)
        return {
            "mode": mode, "jobdir": str(jobdir), "pilot_home": str(self.home), "debug": cfg.debug,
            "queuedata": self.queuedata, "ddmconf": self.ddmconf, "proxy": proxy, "ca_dir": cfg.ca_dir,
            "transfer_attempts": cfg.transfer_attempts, "transfer_backoff": cfg.transfer_backoff,
            "transfer_timeout": cfg.transfer_timeout, "kill_grace": cfg.kill_grace,
            "check_interval": cfg.check_interval, "looping_limit": cfg.looping_limit,
            "trf_bases": list(cfg.trf_bases), "trf_dir": cfg.trf_dir, "lifetime_left": max(1, int(left)),
            "payload_environ": infosys.environ(self.queuedata), "user_map": cfg.user_map,
        }  # fmt: skip
