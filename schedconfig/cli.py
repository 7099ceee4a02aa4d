"""`panda-schedconfig`: validate the queue files, export the pilots' JSON, sync into the DB."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from schedconfig.loader import load_topology
from schedconfig.model import ConfigError

# The repository's var/ (same root as panda_server.settings.ROOT)
_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STORAGE_ROOT = _ROOT / "var" / "storage"

DESCRIPTION = """\
Queue (site) configuration: one JSON file per queue, <nickname>.json, plus clouds.json.

commands:
  validate  load and check every queue and cloud; print one line per queue
  export    write <queue>.all.json, ddmendpoints.json and pandaqueues.json for pilots
  sync      upsert queues into the schedconfig table and clouds into cloudconfig (one
            transaction); queues no longer in the files are set offline, never deleted

environment:
  PANDA_SCHEDCONFIG_DIR  default --dir (default: schedconfig/queues in the repository)
  PANDA_DATABASE_URL     database for sync (default: postgresql+psycopg://postgres@127.0.0.1:16432/panda)

exit status: 0 ok, 2 invalid configuration (the message names the file and field), 1 other errors
"""


def _default_dir() -> Path:
    from panda_server.settings import Settings

    return Settings.from_env().schedconfig_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="panda-schedconfig", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="{validate,export,sync}")
    dir_help = (
        "directory of queue files and clouds.json (env PANDA_SCHEDCONFIG_DIR; default schedconfig/queues)"
    )
    p = sub.add_parser("validate", help="check the queue files and print one line per queue")
    p.add_argument("--dir", type=Path, help=dir_help)
    p = sub.add_parser("export", help="write the queuedata and ddmendpoints JSON the pilots read")
    p.add_argument("--dir", type=Path, help=dir_help)
    p.add_argument(
        "--out", type=Path, required=True, help="output directory (e.g. the server's cache/schedconfig)"
    )
    p.add_argument("--storage-root", type=Path, default=DEFAULT_STORAGE_ROOT,
                   help=f"parent of the SE directories <root>/<ddm> of queues without se_path (default {DEFAULT_STORAGE_ROOT})")  # fmt: skip
    p = sub.add_parser("sync", help="upsert the queues and clouds into the DB (env PANDA_DATABASE_URL)")
    p.add_argument("--dir", type=Path, help=dir_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    directory = args.dir or _default_dir()
    try:
        queues, clouds = load_topology(directory)
        if args.command == "validate":
            _print_queues(queues)
            print(f"{len(queues)} queues, {len(clouds)} clouds in {directory}: OK")
        elif args.command == "export":
            from schedconfig.export import export_all

            written = export_all(queues, args.out, args.storage_root)
            print(f"wrote {len(written)} files to {args.out}")
        else:
            counts = _sync(queues, clouds)
            print(", ".join(f"{k} {v}" for k, v in counts.items()) + f" ({len(clouds)} clouds)")
    except ConfigError as exc:
        print(f"panda-schedconfig: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _print_queues(queues: Sequence) -> None:
    for q in queues:
        print(f"{q.nickname:<24} site={q.siteid:<20} cloud={q.cloud:<8} {q.tier} {q.type:<10} "
              f"{q.status:<9} ddm={q.ddm} copytool={q.copytool}/{q.copytoolin}")  # fmt: skip


def _sync(queues: Sequence, clouds: Sequence) -> dict[str, int]:
    import sqlalchemy as sa

    from panda_server.settings import Settings
    from schedconfig.sync import sync

    engine = sa.create_engine(Settings.from_env().database_url)
    try:
        with engine.begin() as conn:
            return sync(conn, queues, clouds, now=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
