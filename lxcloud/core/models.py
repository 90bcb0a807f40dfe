"""Domain records passed between layers: plain dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from lxcloud.core.instance import Disk, Kind, Nic
from lxcloud.core.instance_types import Limits
from lxcloud.core.lifecycle import State


@dataclass
class Image:
    id: str
    name: str
    os: str
    release: str
    architecture: str
    format: str
    size: int
    sha256: str
    created: datetime
    kind: Kind = Kind.CONTAINER
    halt_signal: str | None = None
    init: str | None = None
    project_id: str | None = None
    public: bool = True
    min_memory: int = 16 * 1024**2   # the least memory its init boots in (from its metadata)
    description: str | None = None
    launch_projects: list[str] = field(default_factory=list)   # other projects that may launch it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Instance:
    """An instance as the database records it: its description (kind, limits, devices) and its
    life (state, times, the operation on it), plus what the EC2 skin shows of it."""

    id: str
    name: str
    state: State
    image_id: str
    instance_type: str
    limits: Limits
    node: str | None
    created: datetime
    updated: datetime
    kind: Kind = Kind.CONTAINER
    nics: list[Nic] = field(default_factory=list)
    disks: list[Disk] = field(default_factory=list)
    user_data: str | None = None
    state_reason: str | None = None
    launched_at: datetime | None = None
    terminated_at: datetime | None = None
    project_id: str | None = None
    project: str | None = None
    image_name: str | None = None
    operation_id: str | None = None
    key_name: str | None = None
    zone: str | None = None
    reservation_id: str | None = None
    client_token: str | None = None
    launch_index: int = 0

    @property
    def ipv4(self) -> str | None:
        """The first NIC's address (what one-NIC clients show)."""
        return self.nics[0].ipv4 if self.nics else None

    @property
    def mac(self) -> str | None:
        return self.nics[0].mac if self.nics else None

    @property
    def network(self) -> str | None:
        return self.nics[0].network if self.nics else None
    disable_api_termination: bool = False     # termination protection
    shutdown_behavior: str = "stop"           # what a halt from inside means: stop | terminate


@dataclass
class Operation:
    id: str
    kind: str
    target: str
    status: str            # pending | running | success | failure
    progress: int
    message: str
    error: str | None
    error_code: str | None
    created: datetime
    updated: datetime
    result: dict[str, Any] = field(default_factory=dict)
    project_id: str | None = None   # whose it is (None: the cloud's own, seen by admins only)
    owner: str | None = None        # the controller running it

    @property
    def done(self) -> bool:
        return self.status in ("success", "failure")


@dataclass
class Pool:
    """A storage pool: its record, and what its host says of it (`caps`, `usage`)."""

    id: str
    name: str
    driver: str
    source: str
    size: int
    path: str
    created: datetime
    default: bool = False
    # filled by the pool service from the host: capacity/used/free (bytes) and the capabilities
    capacity: int | None = None
    used: int | None = None
    free: int | None = None
    quota: bool | None = None
    quota_note: str = ""
    caps: dict[str, Any] = field(default_factory=dict)
    instances: int = 0
    volumes: int = 0


@dataclass
class Attachment:
    volume_id: str
    instance_id: str
    path: str
    device: str
    state: str            # attaching | attached | detaching
    created: datetime
    instance_name: str | None = None


@dataclass
class Volume:
    id: str
    name: str
    project_id: str
    pool: str
    size: int
    state: str            # creating | available | in-use | deleting | error
    shared: bool
    zone: str
    volume_type: str
    created: datetime
    updated: datetime
    snapshot_id: str | None = None
    state_reason: str | None = None
    operation_id: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    used: int | None = None      # bytes written, when asked of the host


@dataclass
class Snapshot:
    id: str
    name: str
    of_kind: str          # root | volume
    target_id: str
    pool: str
    project_id: str
    size: int
    state: str            # pending | completed | error
    description: str
    created: datetime
    operation_id: str | None = None


@dataclass
class Network:
    """A network of a project (project_id None: the cloud's own). `mode`: nat (egress NAT
    through the host), routed (routed without NAT), isolated (reaches nothing outside);
    `driver`: bridge (a host bridge, our DHCP and DNS) or macvlan (on `parent`'s segment)."""

    id: str
    name: str
    cidr: str
    gateway: str
    bridge: str
    created: datetime
    project_id: str | None = None
    project: str | None = None
    shared: bool = True
    mode: str = "nat"
    driver: str = "bridge"
    parent: str = ""
    macvlan_mode: str = ""
    dns_domain: str = ""
    dhcp_start: str = ""
    dhcp_end: str = ""
    host_ports: list[str] = field(default_factory=list)
    description: str = ""

    @property
    def nat(self) -> bool:
        return self.mode == "nat"


@dataclass
class Node:
    id: str
    name: str
    address: str
    status: str
    created: datetime
    facts: dict[str, Any] = field(default_factory=dict)
