"""Alembic environment: target metadata is panda_server.db.tables; URL from the caller."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from panda_server.db.tables import metadata
from panda_server.settings import Settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            # one upgrade at a time, even when several processes start together
            context.execute("SELECT pg_advisory_xact_lock(25443)")
            context.run_migrations()
        return
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.execute("SELECT pg_advisory_xact_lock(25443)")
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
