"""pilot_factory: AutoPilot's tracking tables and the jobs' pilot link

pilotqueue (one row per submitted pilot), servicelist (factory heartbeat and remote control) and
schedinstance (per-queue counts and the last decision), as in classic AutoPilot; plus expression
indexes on the pilot's log URL, the part of pilotID before its first '|', so a factory finds the
jobs its pilots ran (autopilot/tracking.py, docs/autopilot.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATES = ("submitted", "queued", "running", "done", "failed", "lost")


def _text(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "pilotqueue",
        _text("tpid", False), _text("jobid", False), _text("factory", False), _text("nickname", False),
        _text("queueid", False), _text("system", False), _text("state", False), _text("url", False),
        _text("submithost"), _text("user"), _text("workernode"),
        sa.Column("pandaid", sa.BigInteger()), sa.Column("errcode", sa.Integer()), _text("errinfo"),
        sa.Column("tsubmit", sa.DateTime(), nullable=False), sa.Column("tstate", sa.DateTime(), nullable=False),
        sa.Column("tcheck", sa.DateTime()), sa.Column("tstart", sa.DateTime()), sa.Column("tend", sa.DateTime()),
        sa.PrimaryKeyConstraint("tpid", name="pk_pilotqueue"),
        sa.CheckConstraint(sa.column("state").in_(STATES), name="ck_pilotqueue_state"),
    )  # fmt: skip
    op.create_index("ix_pilotqueue_factory_state", "pilotqueue", ["factory", "state"])
    op.create_index("ix_pilotqueue_nickname_tsubmit", "pilotqueue", ["nickname", "tsubmit"])
    op.create_table(
        "servicelist",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _text("name", False), _text("type", False), _text("host"), sa.Column("pid", sa.Integer()),
        _text("userid"), _text("url"), _text("config"), sa.Column("cyclesec", sa.Integer()),
        _text("status", False), _text("message"), _text("doaction"),
        sa.Column("tstart", sa.DateTime()), sa.Column("tstop", sa.DateTime()), sa.Column("tcheck", sa.DateTime()),
        sa.Column("lastmod", sa.DateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_servicelist"),
        sa.UniqueConstraint("name", name="uq_servicelist_name"),
    )  # fmt: skip
    counts = ("nqueue", "nqueued", "nrunning", "ndone", "nfailed", "naborted", "njobs")
    op.create_table(
        "schedinstance",
        _text("name", False), _text("nickname", False), _text("pandasite"),
        *(sa.Column(c, sa.Integer()) for c in counts), _text("errinfo"), sa.Column("lastmod", sa.DateTime()),
        sa.PrimaryKeyConstraint("name", "nickname", name="pk_schedinstance"),
    )  # fmt: skip
    for table in ("jobsactive4", "jobsarchived4"):
        op.create_index(f"ix_{table}_pilot", table, [sa.text("""split_part("pilotID", '|', 1)""")])


def downgrade() -> None:
    for table in ("jobsactive4", "jobsarchived4"):
        op.drop_index(f"ix_{table}_pilot", table_name=table)
    op.drop_table("schedinstance")
    op.drop_table("servicelist")
    op.drop_table("pilotqueue")
