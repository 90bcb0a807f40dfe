"""Networks as first-class objects, security groups, public addresses and port forwards

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# the unnamed UNIQUE(name) of 0001, named so that batch mode (SQLite) can drop it
_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("networks", naming_convention=_NAMES) as b:
        b.drop_constraint("networks_name_key" if pg else "uq_networks_name", type_="unique")
        b.add_column(sa.Column("project_id", sa.String(length=32), nullable=True))
        b.add_column(sa.Column("shared", sa.Boolean(), nullable=False, server_default=sa.true()))
        b.add_column(sa.Column("mode", sa.String(length=16), nullable=False, server_default="nat"))
        b.add_column(sa.Column("driver", sa.String(length=16), nullable=False,
                               server_default="bridge"))
        b.add_column(sa.Column("parent", sa.String(length=16), nullable=False, server_default=""))
        b.add_column(sa.Column("macvlan_mode", sa.String(length=16), nullable=False,
                               server_default=""))
        b.add_column(sa.Column("dns_domain", sa.String(length=255), nullable=False,
                               server_default=""))
        b.add_column(sa.Column("dhcp_start", sa.String(length=64), nullable=False,
                               server_default=""))
        b.add_column(sa.Column("dhcp_end", sa.String(length=64), nullable=False, server_default=""))
        b.add_column(sa.Column("host_ports", sa.JSON(), nullable=True))
        b.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
        b.create_index("ix_networks_project_id", ["project_id"])
        b.create_index("ux_networks_project_name", ["project_id", "name"], unique=True)
    op.create_table(
        "security_groups",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        _ts("created"),
    )
    op.create_index("ux_security_groups_project_name", "security_groups", ["project_id", "name"],
                    unique=True)
    op.create_table(
        "security_group_rules",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("group_id", sa.String(length=32), sa.ForeignKey("security_groups.id"),
                  nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("port_from", sa.Integer(), nullable=True),
        sa.Column("port_to", sa.Integer(), nullable=True),
        sa.Column("cidr", sa.String(length=64), nullable=True),
        sa.Column("source_group", sa.String(length=32), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        _ts("created"),
    )
    op.create_index("ix_security_group_rules_group_id", "security_group_rules", ["group_id"])
    op.create_table(
        "instance_security_groups",
        sa.Column("instance_id", sa.String(length=32), primary_key=True),
        sa.Column("group_id", sa.String(length=32), sa.ForeignKey("security_groups.id"),
                  primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_instance_security_groups_group_id", "instance_security_groups",
                    ["group_id"])
    op.create_table(
        "address_pools",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("name", sa.String(length=64), nullable=False, unique=True),
        sa.Column("interface", sa.String(length=16), nullable=False),
        sa.Column("cidr", sa.String(length=64), nullable=False),
        sa.Column("range_start", sa.String(length=64), nullable=False),
        sa.Column("range_end", sa.String(length=64), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False, server_default=""),
        _ts("created"),
    )
    op.create_table(
        "public_addresses",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("address", sa.String(length=64), nullable=False, unique=True),
        sa.Column("pool_id", sa.String(length=32), sa.ForeignKey("address_pools.id"),
                  nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("instance_id", sa.String(length=32), nullable=True),
        sa.Column("nic", sa.String(length=16), nullable=True),
        sa.Column("private_ip", sa.String(length=64), nullable=True),
        sa.Column("association_id", sa.String(length=32), nullable=True),
        _ts("created"),
    )
    op.create_index("ix_public_addresses_project_id", "public_addresses", ["project_id"])
    op.create_index("ix_public_addresses_instance_id", "public_addresses", ["instance_id"])
    op.create_table(
        "port_forwards",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("address_id", sa.String(length=32), nullable=True),
        sa.Column("listen_address", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=32), nullable=False),
        sa.Column("nic", sa.String(length=16), nullable=False, server_default="eth0"),
        sa.Column("target_port", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        _ts("created"),
    )
    op.create_index("ix_port_forwards_instance_id", "port_forwards", ["instance_id"])
    op.create_index("ux_port_forwards_listen", "port_forwards",
                    ["listen_address", "protocol", "port"], unique=True)


def downgrade() -> None:
    for t in ("port_forwards", "public_addresses", "address_pools", "instance_security_groups",
              "security_group_rules", "security_groups"):
        op.drop_table(t)
    with op.batch_alter_table("networks", naming_convention=_NAMES) as b:
        b.drop_index("ux_networks_project_name")
        b.drop_index("ix_networks_project_id")
        for c in ("description", "host_ports", "dhcp_end", "dhcp_start", "dns_domain",
                  "macvlan_mode", "parent", "driver", "mode", "shared", "project_id"):
            b.drop_column(c)
        b.create_unique_constraint("uq_networks_name", ["name"])
