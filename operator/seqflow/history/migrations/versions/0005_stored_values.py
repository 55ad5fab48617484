"""Stored values (values by reference) and the runs that hold them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
blob = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "stored_values",
        sa.Column("digest", sa.String(71), primary_key=True),
        sa.Column("part", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", blob, nullable=False),
        sa.Column("stored_at", timestamp, nullable=False),
    )
    op.create_table(
        "value_holds",
        sa.Column("run_uid", sa.String(36), primary_key=True),
        sa.Column("digest", sa.String(71), primary_key=True),
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("held_at", timestamp, nullable=False),
    )
    op.create_index("ix_value_holds_digest_namespace", "value_holds", ["digest", "namespace"])


def downgrade() -> None:
    op.drop_table("value_holds")
    op.drop_table("stored_values")
