"""Events: what happened in the cloud, kept bounded (the newest rows)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        # ids are given by the controller (monotonic, the stream's cursor), not by the database
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=True),
        sa.Column("instance_id", sa.String(length=32), nullable=True),
        sa.Column("instance_name", sa.String(length=64), nullable=True),
        sa.Column("operation_id", sa.String(length=32), nullable=True),
        sa.Column("node", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_events_project_id", "events", ["project_id", "id"])
    op.create_index("ix_events_instance_id", "events", ["instance_id", "id"])


def downgrade() -> None:
    op.drop_table("events")
