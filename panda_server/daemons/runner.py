"""panda-daemon NAME [--once]: run one daemon's cycle in a loop (or once), stop on SIGTERM/SIGINT.

Each cycle opens its own short transactions; an error in a cycle is logged and the loop goes
on after the period (the DB may be restarting). Settings come from PANDA_* variables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
import threading

from panda_server.daemons.registry import DAEMONS
from panda_server.db.engine import make_engine
from panda_server.logs import configure_logging
from panda_server.settings import Settings

log = logging.getLogger("panda.daemon")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="panda-daemon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("name", choices=sorted(DAEMONS), help="which daemon")
    parser.add_argument("--once", action="store_true", help="run one cycle and exit")
    parser.add_argument(
        "--interval", type=float, help="seconds between cycles (default: PANDA_<NAME>_INTERVAL)"
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    run_once, period = DAEMONS[args.name]
    interval = args.interval if args.interval is not None else period(settings)
    engine = make_engine(settings.database_url, pool_size=2, max_overflow=2)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("%s starting interval=%.1fs", args.name, interval)
    while not stop.is_set():
        try:
            summary = run_once(engine, settings, dt.datetime.now(dt.UTC).replace(tzinfo=None))
            log.debug("%s cycle: %s", args.name, summary)
        except Exception:
            log.exception("%s cycle failed; retrying in %.1fs", args.name, interval)
            if args.once:
                return 1
        if args.once:
            return 0
        stop.wait(interval)
    log.info("%s stopped", args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
