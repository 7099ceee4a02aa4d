"""job signature: jobparamstable.jobSignature, the server's signature of the job specification

Set at submission (panda_server/protocol/signing.py) and sent to the pilot in the getJob reply;
our pilot refuses a job whose signature does not verify. Jobs stored before this revision keep
NULL, which our pilot refuses unless it runs with --unsigned-jobs allow.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobparamstable", sa.Column("jobSignature", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobparamstable", "jobSignature")
