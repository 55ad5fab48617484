"""Creating and upgrading the history store's schema with the Alembic migrations shipped here."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine


def upgrade(engine: Engine) -> None:
    """Apply every migration the schema does not have yet."""
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", "seqflow.history:migrations")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
