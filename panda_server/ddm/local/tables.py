"""The local DDM catalog: SQLAlchemy Core tables in the PanDA database's own `ddm` schema.

DDM is a separate service from PanDA, so its catalog lives apart from the PanDA tables (a schema
of its own, its own MetaData) and nothing in `public` refers to it. Migration 0005 creates exactly
this; tests/db/test_schema.py compares the two (panda_server/db/migrate.py). docs/ddm.md shows the
schema for operators.

    datasets        one row per dataset; `location` is registerDatasetLocation's RSE
    files           every file DDM knows, by GUID; (scope, lfn) is unique as in Rucio
    dataset_files   which files a dataset holds, `position` = registration order
    replicas        verified copies: (guid, rse); only state `available` counts
    subscriptions   "bring every file of dataset D to RSE R", with its callback bookkeeping
    transfers       the agent's work list: one row per (subscription, file) with retries

Times are naive UTC like the PanDA tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    column,
)  # fmt: skip
from sqlalchemy.sql.elements import ColumnElement

SCHEMA = "ddm"
NAME_LENGTH = 255  # dataset names, scopes, LFNs, RSE names (Rucio: 255 for names, 25 for scopes)

metadata = MetaData(
    schema=SCHEMA,
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    },
)

DATASET_STATES = ("open", "closed")
REPLICA_STATES = ("available", "bad")  # bad: taken out of use by an operator (ignored everywhere)
SUBSCRIPTION_STATES = ("queued", "active", "done", "failed")
TRANSFER_STATES = ("waiting", "copying", "done", "failed")


def _in(name: str, values: tuple[str, ...]) -> ColumnElement[bool]:
    """The CHECK expression `name IN (values…)` (rendered with literal values in the DDL)."""
    return column(name).in_(values)


datasets = Table(
    "datasets",
    metadata,
    Column("id", BigInteger(), Identity(), nullable=False),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("vuid", Text(), nullable=False),  # a UUID, what the datasetCompleted callback carries
    Column("state", Text(), nullable=False),
    Column("location", String(NAME_LENGTH), nullable=True),  # RSE, registerDatasetLocation
    Column("created", DateTime(), nullable=False),
    Column("modified", DateTime(), nullable=False),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("name"),
    UniqueConstraint("vuid"),
    CheckConstraint(_in("state", DATASET_STATES), name="state"),
)

files = Table(
    "files",
    metadata,
    Column("guid", String(NAME_LENGTH), nullable=False),
    Column("scope", String(NAME_LENGTH), nullable=False),
    Column("lfn", String(NAME_LENGTH), nullable=False),
    Column("fsize", BigInteger(), nullable=False),
    Column("checksum", Text(), nullable=False),  # ad:<8 lower-case hex>
    Column("created", DateTime(), nullable=False),
    PrimaryKeyConstraint("guid"),
    UniqueConstraint("scope", "lfn"),
)

dataset_files = Table(
    "dataset_files",
    metadata,
    Column("dataset_id", BigInteger(), ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("guid", String(NAME_LENGTH), ForeignKey("files.guid"), nullable=False),
    Column("position", Integer(), nullable=False),  # 1, 2, … in registration order
    PrimaryKeyConstraint("dataset_id", "guid"),
    Index(None, "guid"),
)

replicas = Table(
    "replicas",
    metadata,
    Column("guid", String(NAME_LENGTH), ForeignKey("files.guid"), nullable=False),
    Column("rse", String(NAME_LENGTH), nullable=False),
    Column("state", Text(), nullable=False),
    Column("created", DateTime(), nullable=False),
    PrimaryKeyConstraint("guid", "rse"),
    CheckConstraint(_in("state", REPLICA_STATES), name="state"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", BigInteger(), Identity(), nullable=False),
    Column("dataset_id", BigInteger(), ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("rse", String(NAME_LENGTH), nullable=False),  # destination
    Column("source", String(NAME_LENGTH), nullable=True),  # preferred source RSE
    Column("callback", Text(), nullable=True),  # URL called with ?vuid=…&site=<rse> when done
    Column("state", Text(), nullable=False),
    Column("error", Text(), nullable=True),  # the last transfer error; why it failed when failed
    Column("created", DateTime(), nullable=False),
    Column("modified", DateTime(), nullable=False),  # last state change
    Column("checked", DateTime(), nullable=True),  # last time the agent looked at it (round robin)
    Column("callback_pending", Boolean(), nullable=False, server_default="false"),
    Column("callback_attempts", Integer(), nullable=False, server_default="0"),
    Column("callback_next_try", DateTime(), nullable=True),
    Column("callback_error", Text(), nullable=True),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("dataset_id", "rse"),
    Index(None, "state"),
    CheckConstraint(_in("state", SUBSCRIPTION_STATES), name="state"),
)

transfers = Table(
    "transfers",
    metadata,
    Column(
        "subscription_id", BigInteger(), ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False
    ),
    Column("guid", String(NAME_LENGTH), ForeignKey("files.guid"), nullable=False),
    Column("state", Text(), nullable=False),
    Column("attempts", Integer(), nullable=False, server_default="0"),  # attempts started
    Column("next_try", DateTime(), nullable=False),  # due time; while copying: the lease's end
    Column("source", String(NAME_LENGTH), nullable=True),  # RSE of the last attempt
    Column("last_error", Text(), nullable=True),
    Column("created", DateTime(), nullable=False),
    Column("modified", DateTime(), nullable=False),
    PrimaryKeyConstraint("subscription_id", "guid"),
    CheckConstraint(_in("state", TRANSFER_STATES), name="state"),
)
