"""Runs listed by workflow or by phase across all namespaces (the dashboard's filters) read an
index instead of scanning the table.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_workflow_created", "workflow_runs", ["workflow", "created_at", "id"])
    op.create_index("ix_runs_phase_created", "workflow_runs", ["phase", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_phase_created", table_name="workflow_runs")
    op.drop_index("ix_runs_workflow_created", table_name="workflow_runs")
