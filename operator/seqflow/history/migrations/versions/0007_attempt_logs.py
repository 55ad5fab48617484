"""Logs kept of attempts: the tail of each Job or Pod step's container log and of each in-process
handler's logging records, by reference to a stored value.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "attempt_logs",
        sa.Column("run_uid", sa.String(36), primary_key=True),
        sa.Column("task", sa.String(127), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("kept", sa.BigInteger, nullable=False),
        sa.Column("stored_at", timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("attempt_logs")
