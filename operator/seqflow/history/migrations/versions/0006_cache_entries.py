"""Cached step outputs: a step's output kept under its key for later runs of its Workflow.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
json = sa.JSON().with_variant(mysql.JSON(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "cache_entries",
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("workflow", sa.String(253), primary_key=True),
        sa.Column("cache_key", sa.String(64), primary_key=True),
        sa.Column("output", json, nullable=False),
        sa.Column("stored_at", timestamp, nullable=False),
        sa.Column("expires_at", timestamp, nullable=False),
    )
    op.create_index("ix_cache_entries_expires", "cache_entries", ["expires_at"])


def downgrade() -> None:
    op.drop_table("cache_entries")
