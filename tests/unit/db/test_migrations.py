"""The migrations: they make exactly the schema the tables declare, and carry old data forward."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from lxcloud.db.engine import Database
from lxcloud.db.tables import Base


def test_the_migrated_schema_is_the_declared_one(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        db.create_all()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], diff
    finally:
        db.close()


def test_instances_of_before_devices_get_their_nic_and_root_disk(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        db.upgrade("0002")
        with db.engine.begin() as c:
            c.execute(sa.text("INSERT INTO networks (id, name, cidr, gateway, bridge, created) "
                              "VALUES ('net-1', 'default', '10.9.0.0/20', '10.9.0.1', 'lxcbr9', "
                              "'2026-11-01 00:00:00')"))
            c.execute(sa.text(
                "INSERT INTO instances (id, name, state, image_id, instance_type, limits, node, "
                "network, ipv4, mac, launch_index, created, updated) VALUES ('i-1', 'web', "
                "'running', 'ami-1', 't3.micro', :lim, 'local', 'net-1', '10.9.0.7', "
                "'02:00:00:00:00:07', 0, '2026-11-01 00:00:00', '2026-11-01 00:00:00')"),
                {"lim": json.dumps({"vcpus": 1, "memory": 1, "swap": 0, "pids": 1, "disk": 2048})})
            c.execute(sa.text(
                "INSERT INTO images (id, name, os, release, architecture, format, size, sha256, "
                "kind, halt_signal, public, created) VALUES ('ami-1', 'debian', 'debian', "
                "'bookworm', 'amd64', 'tar', 1, 'x', 'container', 'SIGRTMIN+3', 1, "
                "'2026-11-01 00:00:00')"))
        db.create_all()
        with db.engine.connect() as c:
            r = c.execute(sa.text("SELECT kind, nics, disks FROM instances")).one()
            mm = c.execute(sa.text("SELECT min_memory FROM images")).scalar()
        assert r.kind == "container"
        assert json.loads(r.nics) == [{
            "network": "net-1", "mac": "02:00:00:00:00:07", "ipv4": "10.9.0.7", "name": "eth0",
            "prefix": 20, "gateway": "10.9.0.1", "link": "lxcbr9", "driver": "bridge",
            "mtu": 1500, "nameservers": ["10.9.0.1"]}]
        assert json.loads(r.disks) == [{"pool": "default", "name": "root", "size": 2048,
                                        "source": "ami-1", "path": "/"}]
        assert mm == 128 * 1024**2           # systemd's halt signal: a systemd image
    finally:
        db.close()
