"""Alembic driven from code: `panda-server db upgrade|check|current`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from panda_server.db.tables import metadata
from panda_server.ddm.local import tables as ddm_tables

MIGRATIONS = Path(__file__).resolve().parent.parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def differences(engine: Engine) -> list:
    """What the migrated database lacks or has beyond db/tables.py and, in the `ddm` schema, beyond
    ddm/local/tables.py (empty = in sync)."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        found = compare_metadata(ctx, metadata)
        opts = {"compare_type": True, "include_schemas": True, "include_name": _only_ddm_schema}
        ctx = MigrationContext.configure(conn, opts=opts)
        return found + compare_metadata(ctx, ddm_tables.metadata)


def _only_ddm_schema(name: str | None, type_: str, parent_names: dict) -> bool:
    """Compare the ddm schema alone (the default schema is the first comparison's)."""
    return type_ != "schema" or name == ddm_tables.SCHEMA


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
