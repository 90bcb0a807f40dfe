"""Public addresses, their pools and port forwards as the services hand them to the front-ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

PROTOCOLS = ("tcp", "udp")


@dataclass
class AddressPool:
    """Public addresses an operator hands out: range_start..range_end of `cidr`, on the host
    interface `interface`."""

    id: str
    name: str
    interface: str
    cidr: str
    range_start: str
    range_end: str
    gateway: str
    created: datetime
    size: int = 0          # addresses in the range (the gateway excluded)
    allocated: int = 0


@dataclass
class PublicAddress:
    """An allocated public address (`id` eipalloc-…); associated when `instance_id` is set:
    1:1 NAT to `private_ip`, the address of the instance's NIC `nic`."""

    id: str
    address: str
    pool: str              # the pool's name
    pool_id: str
    project_id: str
    created: datetime
    instance_id: str | None = None
    instance_name: str | None = None
    nic: str | None = None
    private_ip: str | None = None
    association_id: str | None = None
    interface: str = ""    # the pool's host interface
    forwards: int = 0      # port forwards on it
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def associated(self) -> bool:
        return self.instance_id is not None

    @property
    def name(self) -> str | None:
        return self.tags.get("Name")


@dataclass
class PortForward:
    """`address`:`port`/`protocol` -> the instance's NIC `nic` (`private_ip`):`target_port`."""

    id: str
    address_id: str | None
    address: str
    protocol: str
    port: int
    instance_id: str
    nic: str
    target_port: int
    project_id: str
    created: datetime
    instance_name: str | None = None
    private_ip: str | None = None
