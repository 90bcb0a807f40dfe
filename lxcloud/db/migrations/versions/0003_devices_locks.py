"""instances described by devices (nics, disks, kind); images' least memory; operation owners
and locks in the database

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MiB = 1024**2


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def upgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False,
                                      server_default="container"))
        batch_op.add_column(sa.Column("nics", sa.JSON(), nullable=False,
                                      server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("disks", sa.JSON(), nullable=False,
                                      server_default=sa.text("'[]'")))
    conn = op.get_bind()
    nets = {r.id: r for r in conn.execute(sa.text("SELECT id, cidr, gateway, bridge FROM networks"))}
    rows = list(conn.execute(sa.text(
        "SELECT id, image_id, network, ipv4, mac, limits FROM instances")))
    for r in rows:
        nics = []
        if r.network:
            n = nets.get(r.network)
            nics.append({
                "network": r.network, "mac": r.mac or "", "ipv4": r.ipv4, "name": "eth0",
                "prefix": ipaddress.ip_network(n.cidr).prefixlen if n else 24,
                "gateway": n.gateway if n else None, "link": n.bridge if n else "",
                "driver": "bridge", "mtu": 1500,
                "nameservers": [n.gateway] if n else []})
        limits = _json(r.limits) or {}
        disks = [{"pool": "default", "name": "root", "size": int(limits.get("disk") or 0),
                  "source": r.image_id, "path": "/"}]
        conn.execute(sa.text("UPDATE instances SET nics = :n, disks = :d WHERE id = :i"),
                     {"n": json.dumps(nics), "d": json.dumps(disks), "i": r.id})
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("network")
        batch_op.drop_column("ipv4")
        batch_op.drop_column("mac")

    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("min_memory", sa.BigInteger(), nullable=True))
    # images recorded before their metadata carried it: systemd's halt signal means systemd
    conn.execute(sa.text("UPDATE images SET min_memory = CASE WHEN halt_signal = 'SIGRTMIN+3' "
                         f"THEN {128 * MiB} ELSE {16 * MiB} END"))

    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("project_id", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_operations_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_operations_project_id"), ["project_id"], unique=False)
    # an operation on an instance belongs to the instance's project
    conn.execute(sa.text("UPDATE operations SET project_id = (SELECT project_id FROM instances "
                         "WHERE instances.id = operations.target)"))
    op.create_table(
        "locks",
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("operation_id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target"),
    )
    with op.batch_alter_table("locks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_locks_owner"), ["owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("locks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_locks_owner"))
    op.drop_table("locks")
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operations_project_id"))
        batch_op.drop_index(batch_op.f("ix_operations_owner"))
        batch_op.drop_column("project_id")
        batch_op.drop_column("owner")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("min_memory")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("ipv4", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("mac", sa.String(length=32), nullable=True))
    conn = op.get_bind()
    for r in list(conn.execute(sa.text("SELECT id, nics FROM instances"))):
        nics = _json(r.nics) or []
        if nics:
            conn.execute(sa.text("UPDATE instances SET network = :n, ipv4 = :a, mac = :m "
                                 "WHERE id = :i"),
                         {"n": nics[0].get("network"), "a": nics[0].get("ipv4"),
                          "m": nics[0].get("mac"), "i": r.id})
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("disks")
        batch_op.drop_column("nics")
        batch_op.drop_column("kind")
