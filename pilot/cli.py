"""panda-pilot: the command-line entry point (also `python -m pilot`)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence

from pilot import VERSION, config, errors, infosys, lifecycle, probes, workdir
from pilot.context import PilotContext
from pilot.errors import PilotFailure
from pilot.server import Server

log = logging.getLogger("pilot")


def main(argv: Sequence[str] | None = None) -> int:
    cfg = config.parse(argv)
    home = cfg.workdir.resolve() / f"{workdir.PILOT_HOME_PREFIX}{os.getpid()}_{int(time.time())}"
    home.mkdir(parents=True, mode=0o755)
    _logging(home, cfg.debug)
    log.info("PanDA-WMS pilot %s for queue %s, server %s, home %s", VERSION, cfg.queue, cfg.url, home)
    server = Server(cfg.url, proxy=cfg.proxy, ca_dir=cfg.ca_dir)
    try:
        queuedata = infosys.queuedata(cfg.queuedata_source, cfg.queue, server.http)
        ddmconf = infosys.ddmendpoints(cfg.storagedata_source, server.http)
    except PilotFailure as exc:
        print(f"pilot: cannot run for queue {cfg.queue}: {exc}", file=sys.stderr, flush=True)
        return errors.exit_code(exc.code)
    ctx = PilotContext(cfg=cfg, server=server, queuedata=queuedata, ddmconf=ddmconf, home=home)
    lifecycle.install_signal_handlers(ctx)
    try:
        code = lifecycle.run(ctx)
    finally:
        server.close()
        _cleanup(ctx)
    log.info("pilot exits with %d (peak RSS %d kB)", code, probes.peak_rss_kb())
    return code


def _logging(home, debug: bool) -> None:
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for handler in (logging.FileHandler(home / "pilotlog.txt"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _cleanup(ctx: PilotContext) -> None:
    """Remove the pilot's home unless a job dir in it is kept for recovery (or --no-cleanup)."""
    if not ctx.cfg.cleanup or any(ctx.home.glob(f"{workdir.JOB_DIR_PREFIX}*")):
        return
    workdir.remove(ctx.home)
