"""panda-autopilot: the pilot factory, and what operators ask of it.

  panda-autopilot [--once | --cycles N] [--queue Q ...] [--dry-run]
        run the factory: every PANDA_AUTOPILOT_INTERVAL seconds (classic 120) follow this
        factory's pilots in their batch systems, ask the server for the jobs per site, decide per
        queue how many pilots to submit (docs/autopilot.md has the table), submit and record them.
        The pilots' logs are served over HTTP on PANDA_AUTOPILOT_LOG_PORT while it runs.
        --dry-run prints the decisions and changes nothing (no submission, no tracking).
  panda-autopilot pilots [--queue Q] [--state S] [--limit N]   the tracked pilots, newest first
  panda-autopilot factories                                    factories, their heartbeat and state
  panda-autopilot tell NAME stop                               stop a factory at its next cycle
  panda-autopilot cancel TPID ... | --all                      remove pilots from their batch system

Settings are PANDA_* variables (`panda-server settings` lists them); the factory needs the
database (PANDA_DATABASE_URL) and the server's passive URL (PANDA_SERVER_NAME, PANDA_HTTP_PORT).
Exit codes: 0 ok, 1 a failure (said on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
import threading
from collections.abc import Sequence

import sqlalchemy as sa

from autopilot import logserver, services, tracking
from autopilot.factory import CycleReport, Factory
from panda_server.db import tables as t
from panda_server.db.engine import make_engine
from panda_server.logs import configure_logging
from panda_server.settings import Settings, mask_password

log = logging.getLogger("panda.autopilot")
COMMANDS = ("pilots", "factories", "tell", "cancel")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings = Settings.from_env()
    try:
        if argv and argv[0] in COMMANDS:
            return _command(argv, settings)
        return _factory(argv, settings)
    except sa.exc.OperationalError as exc:
        print(f"panda-autopilot: cannot use the database {mask_password(settings.database_url)}: "
              f"{str(exc.orig).strip().splitlines()[0] if exc.orig else exc}", file=sys.stderr)  # fmt: skip
        return 1


def _factory(argv: list[str], settings: Settings) -> int:
    parser = factory_parser()
    args = parser.parse_args(argv)
    if args.cycles < 0:
        parser.error("--cycles must be 0 or more")
    configure_logging(settings.log_level)
    engine = make_engine(settings.database_url, pool_size=2, max_overflow=2)
    try:
        return _run(settings, engine, args)
    finally:
        engine.dispose()


def factory_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="panda-autopilot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--once", action="store_true", help="run one cycle and exit")
    parser.add_argument(
        "--cycles", type=int, default=0, help="stop after this many cycles (0: run until stopped)"
    )
    parser.add_argument(
        "--queue", action="append", default=[], metavar="Q", help="only this queue (repeatable)"
    )
    parser.add_argument("--dry-run", action="store_true", help="decide and print, submit and record nothing")
    parser.add_argument("--no-log-server", action="store_true", help="do not serve the pilots' logs")
    return parser


def _run(settings: Settings, engine, args: argparse.Namespace) -> int:
    problem = _settings_problem(settings)
    if problem:
        print(f"panda-autopilot: {problem}", file=sys.stderr)
        return 2
    factory = Factory(settings, engine)
    with engine.connect() as conn:
        known = set(conn.execute(sa.select(t.schedconfig.c.nickname)).scalars())
    unknown = sorted(set(args.queue) - known)
    if unknown:
        print(f"panda-autopilot: no such queue in schedconfig: {', '.join(unknown)}", file=sys.stderr)
        return 2
    if args.dry_run:
        _print(factory.run_cycle(utcnow(), only=args.queue, dry_run=True))
        return 0
    server = None
    if not args.once and not args.no_log_server:  # first: a port in use fails before anything is registered
        server = logserver.serve(factory.logs, settings.host, settings.autopilot_log_port)
    try:
        who = services.me(factory.name, url=settings.autopilot_log_base, config=" ".join(sys.argv),
                          cyclesec=settings.autopilot_interval)  # fmt: skip
        with engine.begin() as conn:
            services.register(conn, who, utcnow())
    except services.AlreadyRunning as exc:
        print(f"panda-autopilot: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None and sys.exc_info()[0] is not None:
            server.shutdown()
    try:
        return _loop(factory, args, engine)
    finally:
        if server is not None:
            server.shutdown()


def _loop(factory: Factory, args: argparse.Namespace, engine) -> int:
    """Cycle until stopped (signal, operator, cycle count); 1 if the last cycle failed."""
    settings, cycles = factory.settings, 1 if args.once else args.cycles
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("factory %s starting: interval %.0fs, logs %s", factory.name, settings.autopilot_interval,
             settings.autopilot_log_base)  # fmt: skip
    message, failed = "stopped", False
    while not stop.is_set():
        try:
            report = factory.run_cycle(utcnow(), only=args.queue)
            message, failed = report.summary(), any(q.error for q in report.queues) or bool(report.problem)
            _print(report) if args.once else log.info("%s", message)  # noqa: B018 (a statement on purpose)
        except Exception as exc:  # the DB or a batch system may be restarting: log, go on
            log.exception("cycle %d failed", factory.cycle)
            message, failed = f"cycle {factory.cycle} failed: {exc}", True
            factory.cycle += 1
        action = _beat(engine, factory, message)
        if action in ("stop", "superseded"):
            message = "stopped by an operator" if action == "stop" else message
            log.info("stopping: %s", "an operator asked (doaction=stop)" if action == "stop" else
                     "another factory of this name took over")  # fmt: skip
            break
        if cycles and factory.cycle >= cycles:
            break
        stop.wait(settings.autopilot_interval)
    try:
        with engine.begin() as conn:
            services.stopped(conn, factory.name, message, utcnow())
    except sa.exc.SQLAlchemyError as exc:
        log.error("could not mark %s stopped: %s", factory.name, exc)
    return 1 if failed else 0


def _beat(engine, factory: Factory, message: str) -> str | None:
    try:
        with engine.begin() as conn:
            return services.beat(conn, factory.name, message, utcnow())
    except sa.exc.SQLAlchemyError as exc:  # the next cycle beats again
        log.error("heartbeat failed: %s", exc)
        return None


def _settings_problem(s: Settings) -> str | None:
    if s.autopilot_interval < 1:
        return f"PANDA_AUTOPILOT_INTERVAL must be at least 1 s (is {s.autopilot_interval})"
    if s.autopilot_max_per_cycle < 0 or s.autopilot_max_pilots < 0 or s.autopilot_lost_grace < 0:
        return "PANDA_AUTOPILOT_MAX_PER_CYCLE, _MAX_PILOTS and _LOST_GRACE must not be negative"
    if s.autopilot_log_days < 1:
        return f"PANDA_AUTOPILOT_LOG_DAYS must be at least 1 (is {s.autopilot_log_days})"
    return None


def _print(report: CycleReport) -> None:
    print(f"{'queue':22} {'system':7} {'activated':>9} {'queued':>6} {'running':>7} {'submit':>6}  reason")
    for q in report.queues:
        v = q.view
        counts = (v.activated, v.inactive, v.active) if v else ("-", "-", "-")
        n = len(q.submitted) if q.submitted or q.error else q.decision.n
        print(f"{q.nickname:22} {q.system:7} {counts[0]:>9} {counts[1]:>6} {counts[2]:>7} {n:>6}  {q.decision.reason}"
              + (f"; ERROR: {q.error}" if q.error else ""))  # fmt: skip
    print(report.summary())


# ---------------------------------------------------------------- operator commands


def _command(argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="panda-autopilot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pilots", help="the tracked pilots, newest first")
    p.add_argument("--queue")
    p.add_argument("--state", choices=t.PILOT_STATES)
    p.add_argument("--limit", type=int, default=50)
    sub.add_parser("factories", help="factories and their heartbeat")
    p = sub.add_parser("tell", help="ask a factory to act at its next cycle")
    p.add_argument("name")
    p.add_argument("action", choices=services.ACTIONS)
    p = sub.add_parser("cancel", help="remove pilots from their batch system")
    p.add_argument("tpid", nargs="*")
    p.add_argument(
        "--all", action="store_true", help="every live pilot of this factory (PANDA_AUTOPILOT_FACTORY)"
    )
    args = parser.parse_args(argv)
    if args.command == "cancel" and bool(args.tpid) == args.all:
        parser.error("cancel: give either pilots' tpids or --all")
    if getattr(args, "limit", 1) < 1 or getattr(args, "limit", 1) > 10000:
        parser.error("--limit must be between 1 and 10000")
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        return {"pilots": _pilots, "factories": _factories, "tell": _tell, "cancel": _cancel}[args.command](
            engine, args, settings
        )
    finally:
        engine.dispose()


def _pilots(engine, args, settings) -> int:
    p = t.pilotqueue
    query = sa.select(p).order_by(p.c.tsubmit.desc(), p.c.tpid.desc()).limit(args.limit)
    if args.queue:
        query = query.where(p.c.nickname == args.queue)
    if args.state:
        query = query.where(p.c.state == args.state)
    with engine.connect() as conn:
        rows = list(conn.execute(query))
    print(
        f"{'tpid':44} {'queue':20} {'system':6} {'batch id':10} {'state':9} {'exit':>4} {'PandaID':>8}  log"
    )
    for r in rows:
        print(f"{r.tpid:44} {r.nickname:20} {r.system:6} {r.jobid:10} {r.state:9} "
              f"{'' if r.errcode is None else r.errcode:>4} {r.pandaid or '':>8}  {r.url}")  # fmt: skip
    return 0


def _factories(engine, args, settings) -> int:
    with engine.connect() as conn:
        rows = services.listing(conn, utcnow())
    print(f"{'factory':24} {'state':8} {'host':16} {'pid':>7} {'heartbeat (UTC)':19}  last cycle")
    for r in rows:
        beat = f"{r['tcheck']:%Y-%m-%d %H:%M:%S}" if r["tcheck"] else "-"
        print(
            f"{r['name']:24} {r['state']:8} {r['host'] or '':16} {r['pid'] or '':>7} {beat:19}  {r['message'] or ''}"
        )
    return 0


def _tell(engine, args, settings) -> int:
    with engine.begin() as conn:
        if not services.tell(conn, args.name, args.action):
            print(f"panda-autopilot: no running factory named {args.name}", file=sys.stderr)
            return 1
    print(f"asked {args.name} to {args.action} at its next cycle")
    return 0


def _cancel(engine, args, settings) -> int:
    factory = Factory(settings, engine)
    p = t.pilotqueue
    with engine.connect() as conn:
        if args.all:
            rows = tracking.live(conn, factory.name)
        else:
            rows = list(conn.execute(sa.select(p).where(p.c.tpid.in_(args.tpid))))
    missing = sorted(set(args.tpid) - {r.tpid for r in rows})
    if missing:
        print(f"panda-autopilot: unknown pilots: {', '.join(missing)}", file=sys.stderr)
        return 1
    live = [r for r in rows if r.state in tracking.LIVE]
    for system in sorted({r.system for r in live}):
        ids = [r.jobid for r in live if r.system == system]
        factory.submitter(system).cancel(ids)
        print(f"cancelled {len(ids)} pilots in {system}: {' '.join(ids)}")
    for r in rows:
        if r.state not in tracking.LIVE:
            print(f"{r.tpid} has already ended ({r.state})")
    if args.all and not live:
        print(f"{factory.name} has no live pilot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
