"""`panda-schedconfig`: validate the queue files, export the pilots' JSON, sync into the DB."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from panda_server.settings import Settings
from schedconfig.loader import load_topology
from schedconfig.model import CloudSpec, ConfigError, QueueSpec

DESCRIPTION = """\
Queue (site) configuration: one JSON file per queue, <nickname>.json, plus clouds.json.
See schedconfig/README.md for the fields.

commands:
  validate  load and check every queue and cloud; print one line per queue
  export    write <queue>.all.json, ddmendpoints.json and pandaqueues.json for pilots
  sync      upsert queues into the schedconfig table and clouds into cloudconfig, in one
            transaction; queues no longer in the files are set offline, never deleted

environment (current value in brackets):
  PANDA_SCHEDCONFIG_DIR  default --dir [{schedconfig_dir}]
  PANDA_STORAGE_ROOT     default --storage-root of export [{storage_root}]
  PANDA_DATABASE_URL     database for sync [{database_url}]

exit status: 0 ok, 2 invalid configuration (the message names the file and field)
"""


def _storage_root(settings: Settings) -> Path:
    # Settings.storage_root (PANDA_STORAGE_ROOT); var/storage in the repository if absent
    return Path(getattr(settings, "storage_root", Path(__file__).resolve().parent.parent / "var" / "storage"))


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    described = settings.describe()
    text = DESCRIPTION.format(schedconfig_dir=settings.schedconfig_dir, storage_root=_storage_root(settings),
                              database_url=described.get("PANDA_DATABASE_URL", ""))  # fmt: skip
    parser = argparse.ArgumentParser(prog="panda-schedconfig", description=text,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="{validate,export,sync}")
    dir_help = f"directory of queue files and clouds.json (env PANDA_SCHEDCONFIG_DIR; default {settings.schedconfig_dir})"
    p = sub.add_parser("validate", help="check the queue files and print one line per queue")
    p.add_argument("--dir", type=Path, default=settings.schedconfig_dir, help=dir_help)
    p = sub.add_parser("export", help="write the queuedata and ddmendpoints JSON the pilots read")
    p.add_argument("--dir", type=Path, default=settings.schedconfig_dir, help=dir_help)
    p.add_argument("--out", type=Path, required=True, help="output directory, e.g. <cache_dir>/schedconfig")
    p.add_argument("--storage-root", type=Path, default=_storage_root(settings),
                   help="parent of the SE directories <root>/<ddm> of queues without se_path "
                   f"(env PANDA_STORAGE_ROOT; default {_storage_root(settings)})")  # fmt: skip
    p = sub.add_parser("sync", help="upsert the queues and clouds into the DB (env PANDA_DATABASE_URL)")
    p.add_argument("--dir", type=Path, default=settings.schedconfig_dir, help=dir_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    try:
        queues, clouds = load_topology(args.dir)
        if args.command == "validate":
            _print_queues(queues)
            print(f"{len(queues)} queues, {len(clouds)} clouds in {args.dir}: OK")
        elif args.command == "export":
            from schedconfig.export import export_all

            written = export_all(queues, args.out, args.storage_root)
            print(f"wrote {len(written)} files to {args.out}")
        else:
            counts = _sync(settings, queues, clouds)
            print(", ".join(f"{k} {v}" for k, v in counts.items()) + f" queues; {len(clouds)} clouds")
    except ConfigError as exc:
        print(f"panda-schedconfig: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _print_queues(queues: Sequence[QueueSpec]) -> None:
    for q in queues:
        print(f"{q.nickname:<24} site={q.siteid:<20} cloud={q.cloud:<8} {q.tier} {q.type:<10} "
              f"{q.status:<9} ddm={q.ddm} copytool={q.copytool}/{q.copytoolin}")  # fmt: skip


def _sync(settings: Settings, queues: Sequence[QueueSpec], clouds: Sequence[CloudSpec]) -> dict[str, int]:
    import sqlalchemy as sa

    from schedconfig.sync import sync

    engine = sa.create_engine(settings.database_url)
    try:
        with engine.begin() as conn:  # one transaction: all files or nothing
            return sync(conn, queues, clouds, now=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
