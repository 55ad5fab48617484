"""History tables: workflow_runs, task_attempts, activity_log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
json = sa.JSON().with_variant(mysql.JSON(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "workflow_runs",
        sa.Column("id", key, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("workflow", sa.String(253), nullable=False),
        sa.Column("workflow_generation", sa.Integer()),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("input", json),
        sa.Column("output", json),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("started_at", timestamp),
        sa.Column("finished_at", timestamp),
        sa.Column("history_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.UniqueConstraint("uid", name="uq_runs_uid"),
    )
    op.create_index("ix_runs_namespace_created", "workflow_runs", ["namespace", "created_at", "id"])
    op.create_index(
        "ix_runs_namespace_workflow_created", "workflow_runs", ["namespace", "workflow", "created_at", "id"]
    )
    op.create_index(
        "ix_runs_namespace_phase_created", "workflow_runs", ["namespace", "phase", "created_at", "id"]
    )
    op.create_index("ix_runs_created", "workflow_runs", ["created_at", "id"])
    op.create_index("ix_runs_finished", "workflow_runs", ["finished_at"])

    op.create_table(
        "task_attempts",
        sa.Column("id", key, primary_key=True, autoincrement=True),
        sa.Column("run_uid", sa.String(36), nullable=False),
        sa.Column("task_index", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(63), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("executor", sa.String(16)),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("input", json),
        sa.Column("output", json),
        sa.Column("error", sa.Text()),
        sa.Column("started_at", timestamp),
        sa.Column("finished_at", timestamp),
        sa.UniqueConstraint("run_uid", "task_index", "attempt", name="uq_attempts_run_task_attempt"),
    )

    op.create_table(
        "activity_log",
        sa.Column("id", key, primary_key=True, autoincrement=True),
        sa.Column("run_uid", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("task", sa.String(63)),
        sa.Column("attempt", sa.Integer()),
        sa.Column("details", json),
        sa.Column("occurred_at", timestamp, nullable=False),
        sa.UniqueConstraint("run_uid", "seq", name="uq_activity_run_seq"),
    )


def downgrade() -> None:
    op.drop_table("activity_log")
    op.drop_table("task_attempts")
    op.drop_table("workflow_runs")
