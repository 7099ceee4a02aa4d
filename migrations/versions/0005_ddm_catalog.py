"""ddm_catalog: the local DDM backend's catalog in its own schema `ddm`

Datasets, files, dataset contents, replicas, subscriptions and the transfer agent's per-file work
list (panda_server/ddm/local/tables.py, docs/ddm.md). DDM is a separate service: nothing in the
PanDA tables refers to these, and the data service reaches them only through the DDM verbs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = "ddm"


def _state(table: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    return sa.CheckConstraint(sa.column("state").in_(values), name=f"ck_{table}_state")


def _name(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(255), nullable=nullable)


def _times(*names: str) -> list[sa.Column]:
    return [sa.Column(name, sa.DateTime(), nullable=False) for name in names]


def upgrade() -> None:
    op.execute(sa.schema.CreateSchema(SCHEMA, if_not_exists=True))
    _datasets_and_files()
    _subscriptions_and_transfers()


def _datasets_and_files() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        _name("name"),
        sa.Column("vuid", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        _name("location", nullable=True),
        *_times("created", "modified"),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("name", name="uq_datasets_name"),
        sa.UniqueConstraint("vuid", name="uq_datasets_vuid"),
        _state("datasets", ("open", "closed")),
        schema=SCHEMA,
    )
    op.create_table(
        "files",
        _name("guid"),
        _name("scope"),
        _name("lfn"),
        sa.Column("fsize", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.Text(), nullable=False),
        *_times("created"),
        sa.PrimaryKeyConstraint("guid", name="pk_files"),
        sa.UniqueConstraint("scope", "lfn", name="uq_files_scope_lfn"),
        schema=SCHEMA,
    )
    op.create_table(
        "dataset_files",
        sa.Column("dataset_id", sa.BigInteger(), nullable=False),
        _name("guid"),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("dataset_id", "guid", name="pk_dataset_files"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["ddm.datasets.id"], name="fk_dataset_files_dataset_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["guid"], ["ddm.files.guid"], name="fk_dataset_files_guid"),
        schema=SCHEMA,
    )
    op.create_index("ix_dataset_files_guid", "dataset_files", ["guid"], schema=SCHEMA)
    op.create_table(
        "replicas",
        _name("guid"),
        _name("rse"),
        sa.Column("state", sa.Text(), nullable=False),
        *_times("created"),
        sa.PrimaryKeyConstraint("guid", "rse", name="pk_replicas"),
        sa.ForeignKeyConstraint(["guid"], ["ddm.files.guid"], name="fk_replicas_guid"),
        _state("replicas", ("available", "bad")),
        schema=SCHEMA,
    )


def _subscriptions_and_transfers() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("dataset_id", sa.BigInteger(), nullable=False),
        _name("rse"),
        _name("source", nullable=True),
        sa.Column("callback", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        *_times("created", "modified"),
        sa.Column("checked", sa.DateTime(), nullable=True),
        sa.Column("callback_pending", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("callback_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("callback_next_try", sa.DateTime(), nullable=True),
        sa.Column("callback_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
        sa.UniqueConstraint("dataset_id", "rse", name="uq_subscriptions_dataset_id_rse"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["ddm.datasets.id"], name="fk_subscriptions_dataset_id", ondelete="CASCADE"
        ),
        _state("subscriptions", ("queued", "active", "done", "failed")),
        schema=SCHEMA,
    )
    op.create_index("ix_subscriptions_state", "subscriptions", ["state"], schema=SCHEMA)
    op.create_table(
        "transfers",
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        _name("guid"),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_try", sa.DateTime(), nullable=False),
        _name("source", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        *_times("created", "modified"),
        sa.PrimaryKeyConstraint("subscription_id", "guid", name="pk_transfers"),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["ddm.subscriptions.id"],
            name="fk_transfers_subscription_id",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["guid"], ["ddm.files.guid"], name="fk_transfers_guid"),
        _state("transfers", ("waiting", "copying", "done", "failed")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("transfers", "subscriptions", "replicas", "dataset_files", "files", "datasets"):
        op.drop_table(table, schema=SCHEMA)
    op.execute(sa.schema.DropSchema(SCHEMA, if_exists=True))
