"""A private PostgreSQL from the system binaries, for `make run` and the tests.

Recipe from reference/feasibility.md §1a: initdb/pg_ctl run as the `postgres` user when we are
root (initdb refuses root), listen on 127.0.0.1 only, socket in the data directory's parent.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path


class LocalPgError(RuntimeError):
    pass


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not found:
        raise LocalPgError("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
                           "install them with: apt-get install -y postgresql")  # fmt: skip
    return Path(found[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise LocalPgError(f"{' '.join(cmd[:2])} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def init(base: Path) -> None:
    """Create the cluster in base/data (no-op if it exists)."""
    base.mkdir(parents=True, exist_ok=True)
    if (base / "data" / "PG_VERSION").exists():
        return
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        for parent in base.parents:  # postgres must be able to reach its directory
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o001)
    _run([str(pg_bindir() / "initdb"), "-D", str(base / "data"), "-U", "postgres", "-A", "trust",
          "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])  # fmt: skip


def is_running(base: Path) -> bool:
    if not (base / "data" / "postmaster.pid").exists():
        return False
    proc = subprocess.run(_as_owner([str(pg_bindir() / "pg_ctl"), "-D", str(base / "data"), "status"]),
                          capture_output=True, timeout=30)  # fmt: skip
    return proc.returncode == 0


def start(base: Path, port: int, *, fast: bool = True) -> str:
    """Start the server (unless it runs already); returns its SQLAlchemy URL (database `panda`)."""
    if is_running(base):
        create_database(port, "panda")
        return url(port)
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c max_connections=200"
    if fast:  # test/dev only: durability traded for speed
        opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    _run([str(pg_bindir() / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "server.log"),
          "-w", "-t", "60", "-o", opts, "start"])  # fmt: skip
    create_database(port, "panda")
    return url(port)


def url(port: int, database: str = "panda") -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"


def create_database(port: int, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as c:
        if c.execute("select 1 from pg_database where datname=%s", (name,)).fetchone() is None:
            c.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


def stop(base: Path, *, mode: str = "fast") -> None:
    if not is_running(base):
        return
    _run([str(pg_bindir() / "pg_ctl"), "-D", str(base / "data"), "-m", mode, "-w", "-t", "60", "stop"])
