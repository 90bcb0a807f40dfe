"""Alembic environment: runs against the connection Database.migrate() hands over."""

from __future__ import annotations

from alembic import context

from lxcloud.db.tables import Base

config = context.config
connection = config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
