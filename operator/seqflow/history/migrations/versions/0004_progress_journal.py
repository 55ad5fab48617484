"""The progress journal: in-process attempts started or ended before their run's status says so.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
json = sa.JSON().with_variant(mysql.JSON(), "mysql", "mariadb")
key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "progress_journal",
        sa.Column("id", key, primary_key=True, autoincrement=True),
        sa.Column("run_uid", sa.String(36), nullable=False),
        sa.Column("retried", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(127), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("writer", sa.String(36), nullable=False),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.Column("result", json, nullable=True),
        sa.Column("recorded_at", timestamp, nullable=False),
        sa.UniqueConstraint("run_uid", "retried", "node", "attempt", "ended", name="uq_journal_attempt"),
    )


def downgrade() -> None:
    op.drop_table("progress_journal")
