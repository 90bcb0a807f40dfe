"""EC2 attributes: termination protection, shutdown behaviour, image description and launch
permissions

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disable_api_termination", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("shutdown_behavior", sa.String(length=16), nullable=False,
                                      server_default="stop"))

    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("launch_projects", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("launch_projects")
        batch_op.drop_column("description")

    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("shutdown_behavior")
        batch_op.drop_column("disable_api_termination")
