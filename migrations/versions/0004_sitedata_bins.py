"""sitedata_bins: pilot requests per site, flag and minute, from which sitedata's windows are summed

The dispatcher counts getJob/updateJob calls per site in memory and adds them here every few
seconds; panda_server/taskbuffer/sitedata.py sums the bins into the classic `sitedata` rows
(hours 1 and 3) that the broker reads, and drops bins older than the longest window.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sitedata_bins",
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("flag", sa.Text(), nullable=False),
        sa.Column("bin", sa.DateTime(), nullable=False),
        sa.Column("getJob", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("updateJob", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("site", "flag", "bin", name="pk_sitedata_bins"),
    )


def downgrade() -> None:
    op.drop_table("sitedata_bins")
