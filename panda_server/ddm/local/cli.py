"""panda-ddm: look at the local DDM catalog and seed it with files (docs/ddm.md "CLI").

  panda-ddm datasets [--limit N]                 datasets, newest first
  panda-ddm files DATASET                        the dataset's files in registration order
  panda-ddm replicas DATASET                     where each file of the dataset has replicas
  panda-ddm subscriptions [--state S] [--limit N]
  panda-ddm register-files DATASET --rse RSE [--scope S] [--close] PATH...
      register local files as replicas at RSE (creating the dataset, open, located at RSE, if it
      does not exist). A file already at the RSE's Rucio path is registered in place; any other
      is first copied there (cp, or xrdcp for an XRootD SE) and the copy verified. Size and
      adler32 come from the local file. Re-running with the same files is a no-op.

Also `python -m panda_server.ddm.local.cli`. The database is PANDA_DATABASE_URL; RSE locations
come from schedconfig and PANDA_STORAGE_ROOT.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import Engine, Row

from panda_server.db.engine import make_engine, transaction
from panda_server.ddm.interface import DDMError, FileInfo
from panda_server.ddm.local import rses as rse_lookup
from panda_server.ddm.local import store, transfer
from panda_server.ddm.local.agent import transfer_context
from panda_server.ddm.local.catalog import LocalDDM, checked_name, read_rse_map
from panda_server.ddm.local.tables import SUBSCRIPTION_STATES
from panda_server.settings import Settings
from pilot.copytools.base import TransferContext, local_path
from pilot.util.checksum import adler32_file

PROG = "panda-ddm"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ds = sub.add_parser("datasets", help="list datasets, newest first")
    ds.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    for name, text in (("files", "list a dataset's files"), ("replicas", "list where a dataset's files are")):
        sub.add_parser(name, help=text).add_argument("dataset", help="dataset name")
    subs = sub.add_parser("subscriptions", help="list subscriptions, newest first")
    subs.add_argument("--state", choices=SUBSCRIPTION_STATES, help="only subscriptions in this state")
    subs.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    reg = sub.add_parser("register-files", help="register (and if needed copy) local files at an RSE",
                         description="Register local files as replicas at RSE, copying each to the RSE's "
                         "Rucio path first unless it is already there.")  # fmt: skip
    reg.add_argument("dataset", help="dataset name (created, open, located at RSE, if missing)")
    reg.add_argument("--rse", required=True, help="the storage element, e.g. CLOUDA_T1_DATADISK")
    reg.add_argument("--scope", help="Rucio scope (default: the dataset name up to its first '.')")
    reg.add_argument("--close", action="store_true", help="close (freeze) the dataset afterwards")
    reg.add_argument("paths", nargs="+", metavar="PATH", help="local files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    engine = make_engine(settings.database_url, pool_size=1, max_overflow=1)
    try:
        return COMMANDS[args.command](args, engine, settings)
    except DDMError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one clear line for operators (database down, unreadable file)
        print(f"{PROG} {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _datasets(args: argparse.Namespace, engine: Engine, settings: Settings) -> int:
    with transaction(engine) as conn:
        rows = store.datasets_listing(conn, max(1, args.limit))
    table = [(r.name, r.state, n, r.location, r.vuid, f"{r.created:%Y-%m-%d %H:%M:%S}") for r, n in rows]
    _table(("NAME", "STATE", "FILES", "LOCATION", "VUID", "CREATED"), table)
    return 0


def _files(args: argparse.Namespace, engine: Engine, settings: Settings) -> int:
    files = LocalDDM(engine, {}).list_files(args.dataset)
    _table(
        ("LFN", "SCOPE", "GUID", "BYTES", "CHECKSUM"),
        [(f.lfn, f.scope, f.guid, f.fsize, f.checksum) for f in files],
    )
    return 0


def _replicas(args: argparse.Namespace, engine: Engine, settings: Settings) -> int:
    ddm = LocalDDM(engine, {})
    files = ddm.list_files(args.dataset)
    where = ddm.list_replicas([f.guid for f in files])
    _table(
        ("LFN", "GUID", "RSES"),
        [(f.lfn, f.guid, ",".join(sorted(where.get(f.guid, ()))) or None) for f in files],
    )
    return 0


def _subscriptions(args: argparse.Namespace, engine: Engine, settings: Settings) -> int:
    with transaction(engine) as conn:
        listing = store.subscriptions_listing(conn, args.state, max(1, args.limit))
        counts = [store.subscription_info(conn, r) for r in listing]
    table = [(r.dataset, r.rse, r.state, f"{i.files_done}/{i.files_total}", r.source, _callback_state(r), r.error)
             for r, i in zip(listing, counts, strict=True)]  # fmt: skip
    _table(("DATASET", "RSE", "STATE", "FILES", "SOURCE", "CALLBACK", "ERROR"), table)
    return 0


def _callback_state(row: Row) -> str | None:
    """None (no callback), pending (n attempts), failed: why, made, or waiting (not done yet)."""
    if row.callback is None:
        return None
    if row.callback_pending:
        return f"pending ({row.callback_attempts} attempts)"
    if row.callback_error:
        return f"failed: {row.callback_error}"
    return "made" if row.state == "done" else "waiting"


def _register_files(args: argparse.Namespace, engine: Engine, settings: Settings) -> int:
    checked_name(args.dataset)
    rses = read_rse_map(engine, settings.storage_root)
    rse_lookup.check_rse(rses, args.rse)
    scope = args.scope or args.dataset.split(".", 1)[0]
    paths = [Path(p).resolve() for p in args.paths]
    for p in paths:
        if not p.is_file():
            raise DDMError(f"{p} is not a file")
    with transaction(engine) as conn:
        known = store.guids_of(conn, scope, [p.name for p in paths])
    context = transfer_context(settings)
    infos = [_place(p, scope, known.get(p.name), (args.rse, rses[args.rse]), context) for p in paths]
    ddm = LocalDDM(engine, rses)
    if ddm.get_dataset(args.dataset) is None:
        ddm.register_dataset(args.dataset, rse=args.rse)
    ddm.register_files(args.dataset, infos, args.rse)
    if args.close:
        ddm.close_dataset(args.dataset)
    _table(
        ("LFN", "SCOPE", "GUID", "BYTES", "CHECKSUM"),
        [(f.lfn, f.scope, f.guid, f.fsize, f.checksum) for f in infos],
    )
    print(
        f"{len(infos)} file(s) registered in {args.dataset} at {args.rse}"
        + (" (closed)" if args.close else "")
    )
    return 0


def _place(
    path: Path, scope: str, guid: str | None, rse: tuple[str, tuple[str, str]], context: TransferContext
) -> FileInfo:
    """The file at the RSE's Rucio path (copied there unless it is that file) as a FileInfo;
    rse is (name, location)."""
    size, adler = path.stat().st_size, adler32_file(path)
    url = rse_lookup.replica_url(rse[1], rse[0], scope, path.name)
    in_place = not rse_lookup.is_xrootd(url) and os.path.realpath(local_path(url)) == str(path)
    if not in_place:
        copy = transfer.Copy(path.name, str(path), url, size, adler)
        outcome = transfer.copy_verified(copy, context)
        if not outcome.ok:
            raise DDMError(f"cannot copy {path} to {url}: {outcome.error}")
    return FileInfo(path.name, guid or str(uuid.uuid4()), scope, size, f"ad:{adler}")


COMMANDS = {
    "datasets": _datasets,
    "files": _files,
    "replicas": _replicas,
    "subscriptions": _subscriptions,
    "register-files": _register_files,
}


if __name__ == "__main__":
    sys.exit(main())
