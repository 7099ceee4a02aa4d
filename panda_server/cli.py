"""panda-server: database and operator commands.

panda-server db upgrade      apply Alembic migrations (idempotent, serialised by an advisory lock)
panda-server db check        exit 1 if the database differs from panda_server/db/tables.py
panda-server db current      print the applied revision
panda-server settings        print the effective PANDA_* settings
panda-server user disable DN / enable DN
panda-server pg init|start|stop --dir D --port P   a private PostgreSQL (make run, tests)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from panda_server.settings import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="panda-server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"The database URL comes from PANDA_DATABASE_URL (default {Settings().database_url}).",
    )  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="schema migrations").add_subparsers(dest="action", required=True)
    for name, text in (("upgrade", "migrate to the newest revision"), ("check", "compare with tables.py"),
                       ("current", "show the applied revision")):  # fmt: skip
        db.add_parser(name, help=text)
    sub.add_parser("settings", help="print the effective settings")
    user = sub.add_parser("user", help="enable or disable a user by DN")
    user.add_argument("action", choices=["enable", "disable"])
    user.add_argument("dn")
    pg = sub.add_parser("pg", help="private PostgreSQL under a directory")
    pg.add_argument("action", choices=["init", "start", "stop"])
    pg.add_argument("--dir", type=Path, required=True, help="cluster directory (data/ inside)")
    pg.add_argument("--port", type=int, default=16432, help="TCP port on 127.0.0.1 (default 16432)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    try:
        if args.command == "db":
            return _db(args.action, settings)
        if args.command == "settings":
            for key, value in settings.describe().items():
                print(f"{key}={value}")
            return 0
        if args.command == "user":
            return _user(args, settings)
        return _pg(args)
    except Exception as exc:  # one clear line for operators; details at DEBUG
        print(f"panda-server {args.command}: {exc}", file=sys.stderr)
        return 2


def _db(action: str, settings: Settings) -> int:
    import sqlalchemy as sa

    from panda_server.db import migrate

    engine = sa.create_engine(settings.database_url)
    if action == "upgrade":
        migrate.upgrade(engine)
        print(f"database at revision {migrate.current(engine)}")
        return 0
    if action == "current":
        print(migrate.current(engine) or "empty")
        return 0
    diffs = migrate.differences(engine)
    for d in diffs:
        print(d)
    print("schema matches panda_server/db/tables.py" if not diffs else f"{len(diffs)} differences")
    return 1 if diffs else 0


def _user(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    import sqlalchemy as sa

    from panda_server.taskbuffer import users

    engine = sa.create_engine(settings.database_url)
    with engine.begin() as conn:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        ok = users.set_status(conn, args.dn, "disabled" if args.action == "disable" else "active", now=now)
    print(f"user {args.dn}: {args.action}d" if ok else f"no user with DN {args.dn}")
    return 0 if ok else 1


def _pg(args: argparse.Namespace) -> int:
    from panda_server.db import localpg

    base = args.dir.resolve()
    if args.action == "init":
        localpg.init(base)
    elif args.action == "start":
        localpg.init(base)
        print(localpg.start(base, args.port, fast=False))
    else:
        localpg.stop(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
