"""Attempts keyed by step id, not index: the members of a parallel group share their group's
index. Step ids (`Group/Member`) take up to 127 characters.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_attempts") as table:
        table.alter_column("task", type_=sa.String(127), existing_type=sa.String(63), existing_nullable=False)
        table.drop_constraint("uq_attempts_run_task_attempt", type_="unique")
        table.create_unique_constraint("uq_attempts_run_node_attempt", ["run_uid", "task", "attempt"])
    with op.batch_alter_table("activity_log") as table:
        table.alter_column("task", type_=sa.String(127), existing_type=sa.String(63), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("activity_log") as table:
        table.alter_column("task", type_=sa.String(63), existing_type=sa.String(127), existing_nullable=True)
    with op.batch_alter_table("task_attempts") as table:
        table.drop_constraint("uq_attempts_run_node_attempt", type_="unique")
        table.create_unique_constraint("uq_attempts_run_task_attempt", ["run_uid", "task_index", "attempt"])
        table.alter_column("task", type_=sa.String(63), existing_type=sa.String(127), existing_nullable=False)
