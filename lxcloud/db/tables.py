"""SQLAlchemy tables. The database says what should be; the host says what is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always read back as an aware UTC datetime (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[dict[str, Any]]: JSON,
                           datetime: UtcDateTime()}


class NodeRow(Base):
    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    address: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="online")
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class NetworkRow(Base):
    """A network of a project (project_id None: the cloud's own, like the default network);
    `shared`: every project may use it."""

    __tablename__ = "networks"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    cidr: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str] = mapped_column(String(64))
    bridge: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("1"))
    mode: Mapped[str] = mapped_column(String(16), default="nat", server_default="nat")
    driver: Mapped[str] = mapped_column(String(16), default="bridge", server_default="bridge")
    parent: Mapped[str] = mapped_column(String(16), default="", server_default="")
    macvlan_mode: Mapped[str] = mapped_column(String(16), default="", server_default="")
    dns_domain: Mapped[str] = mapped_column(String(255), default="", server_default="")
    dhcp_start: Mapped[str] = mapped_column(String(64), default="", server_default="")
    dhcp_end: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # what instances may reach on their host beyond DHCP, DNS and metadata: ["tcp/22", "udp/123"]
    host_ports: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    __table_args__ = (Index("ux_networks_project_name", "project_id", "name", unique=True),)


class ImageRow(Base):
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    os: Mapped[str] = mapped_column(String(64), default="")
    release: Mapped[str] = mapped_column(String(64), default="")
    architecture: Mapped[str] = mapped_column(String(32), default="")
    format: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="container")
    halt_signal: Mapped[str | None] = mapped_column(String(32), nullable=True)
    init: Mapped[str | None] = mapped_column(String(255), nullable=True)
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    # the least memory (bytes) the image's init boots in, from its metadata
    min_memory: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    # ids of the other projects that may see and launch it (EC2 launchPermission UserId)
    launch_projects: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)


class InstanceRow(Base):
    __tablename__ = "instances"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    state_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    image_id: Mapped[str] = mapped_column(String(32), index=True)
    instance_type: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default="container", server_default="container")
    limits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # the devices: core.instance.Nic and Disk as dicts (the addresses are also in ip_allocations)
    nics: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    disks: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    node: Mapped[str | None] = mapped_column(String(32), nullable=True)
    user_data: Mapped[str | None] = mapped_column(Text, nullable=True)
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    operation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    key_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reservation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    client_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    zone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    launch_index: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    launched_at: Mapped[datetime | None] = mapped_column(nullable=True)
    terminated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # termination protection: a delete asked for by a user is refused while it is on
    disable_api_termination: Mapped[bool] = mapped_column(Boolean, default=False,
                                                          server_default=false())
    # what a halt from inside the instance means: stop | terminate
    shutdown_behavior: Mapped[str] = mapped_column(String(16), default="stop",
                                                   server_default="stop")

    __table_args__ = (
        # A name is taken while its instance exists; a terminated instance frees it.
        Index("ux_instances_live_name", "name", unique=True,
              sqlite_where=text("state != 'terminated'"),
              postgresql_where=text("state != 'terminated'")),
    )


class IpAllocationRow(Base):
    __tablename__ = "ip_allocations"
    network: Mapped[str] = mapped_column(String(32), ForeignKey("networks.id"), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(32), index=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class OperationRow(Base):
    __tablename__ = "operations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # the controller running it: at start-up a controller fails only its own interrupted ones
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LockRow(Base):
    """One operation at a time per resource: the row exists while the operation holds it."""

    __tablename__ = "locks"
    target: Mapped[str] = mapped_column(String(64), primary_key=True)
    operation_id: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(64), index=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class TokenRow(Base):
    __tablename__ = "tokens"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), default="admin")
    user_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectRow(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class UserRow(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[str] = mapped_column(String(32), ForeignKey("projects.id"), index=True)
    role: Mapped[str] = mapped_column(String(16), default="member")   # admin | member
    created: Mapped[datetime] = mapped_column(default=utcnow)


class AccessKeyRow(Base):
    """EC2 credentials. The secret must be kept (SigV4 is an HMAC the server recomputes)."""

    __tablename__ = "access_keys"
    access_key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class KeyPairRow(Base):
    __tablename__ = "key_pairs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(32), index=True)
    key_type: Mapped[str] = mapped_column(String(16), default="rsa")
    fingerprint: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ux_key_pairs_project_name", "project_id", "name", unique=True),)


class EventRow(Base):
    """One thing that happened (services/events.py); the newest rows are kept, older pruned."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column()
    type: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    instance_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    operation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="", server_default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    __table_args__ = (Index("ix_events_project_id", "project_id", "id"),
                      Index("ix_events_instance_id", "instance_id", "id"))


class TagRow(Base):
    __tablename__ = "tags"
    resource_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(String(256), default="")
    resource_type: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str] = mapped_column(String(32), index=True)


class PoolRow(Base):
    """A storage pool as the operator made it; its driver makes it real on each host."""

    __tablename__ = "pools"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    driver: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)    # a loop-backed pool's size
    path: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class VolumeRow(Base):
    __tablename__ = "volumes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(32), index=True)
    pool: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # creating | available | in-use | deleting | error (AWS's words)
    state: Mapped[str] = mapped_column(String(16), index=True)
    state_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    zone: Mapped[str] = mapped_column(String(32))
    volume_type: Mapped[str] = mapped_column(String(16), default="standard")
    snapshot_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    operation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    __table_args__ = (Index("ux_volumes_project_name", "project_id", "name", unique=True),)


class AttachmentRow(Base):
    """A volume attached to an instance (the instance's disks list it too, as a device)."""

    __tablename__ = "attachments"
    volume_id: Mapped[str] = mapped_column(String(32), ForeignKey("volumes.id"), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    path: Mapped[str] = mapped_column(Text)
    device: Mapped[str] = mapped_column(String(32), default="")
    # attaching | attached | detaching (AWS's words)
    state: Mapped[str] = mapped_column(String(16), default="attaching")
    created: Mapped[datetime] = mapped_column(default=utcnow)


class SnapshotRow(Base):
    """A snapshot of an instance's root (of_kind "root") or of a volume ("volume")."""

    __tablename__ = "snapshots"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    of_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(32), index=True)
    pool: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(32), index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)    # the target's size when taken
    # pending | completed | error (AWS's words)
    state: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    operation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ux_snapshots_target_name", "target_id", "name", unique=True),)


class SecurityGroupRow(Base):
    __tablename__ = "security_groups"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ux_security_groups_project_name", "project_id", "name", unique=True),)


class SecurityGroupRuleRow(Base):
    """One rule: `direction` ingress|egress, `protocol` tcp|udp|icmp|all, a port range (ICMP:
    type and code, -1 any), and a source/destination: a `cidr` or the members of `source_group`."""

    __tablename__ = "security_group_rules"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(32), ForeignKey("security_groups.id"), index=True)
    direction: Mapped[str] = mapped_column(String(8))
    protocol: Mapped[str] = mapped_column(String(8))
    port_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    port_to: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cidr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_group: Mapped[str | None] = mapped_column(String(32), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(default=utcnow)


class InstanceSecurityGroupRow(Base):
    __tablename__ = "instance_security_groups"
    instance_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(32), ForeignKey("security_groups.id"),
                                          primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AddressPoolRow(Base):
    """Public addresses an operator hands out: `range_start`..`range_end` of `cidr`, on the host
    interface `interface`."""

    __tablename__ = "address_pools"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    interface: Mapped[str] = mapped_column(String(16))
    cidr: Mapped[str] = mapped_column(String(64))
    range_start: Mapped[str] = mapped_column(String(64))
    range_end: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created: Mapped[datetime] = mapped_column(default=utcnow)


class PublicAddressRow(Base):
    """An allocated public address; associated when `instance_id` is set (1:1 NAT to
    `private_ip` of its NIC `nic`)."""

    __tablename__ = "public_addresses"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), unique=True)
    pool_id: Mapped[str] = mapped_column(String(32), ForeignKey("address_pools.id"))
    project_id: Mapped[str] = mapped_column(String(32), index=True)
    instance_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    nic: Mapped[str | None] = mapped_column(String(16), nullable=True)
    private_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    association_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class PortForwardRow(Base):
    """listen_address:port/protocol (a public address `address_id`, or a host address) ->
    the instance's NIC address:target_port."""

    __tablename__ = "port_forwards"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    address_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    listen_address: Mapped[str] = mapped_column(String(64), default="", server_default="")
    protocol: Mapped[str] = mapped_column(String(8))
    port: Mapped[int] = mapped_column(Integer)
    instance_id: Mapped[str] = mapped_column(String(32), index=True)
    nic: Mapped[str] = mapped_column(String(16), default="eth0", server_default="eth0")
    target_port: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[str] = mapped_column(String(32))
    created: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("ux_port_forwards_listen", "listen_address", "protocol", "port",
                            unique=True),)


def table(model: type[Base]) -> Table:
    """The Core table of a model: for hot paths that write known rows without the ORM's unit of
    work (a Core insert costs a fraction of an ORM flush)."""
    return cast(Table, model.__table__)
