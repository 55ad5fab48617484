"""Alembic environment: runs the migrations on the connection `seqflow.history.migrate` passes."""

from alembic import context

from seqflow.history.tables import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
