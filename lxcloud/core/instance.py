"""The instance description: one typed value, built once in services, carried by the node protocol
and handed unchanged to the drivers.

An instance is a `kind` (a container now, a virtual machine later), an image, its limits and its
devices: network interfaces (`Nic`) and disks (`Disk`, the root first). `InstanceSpec` is what a
host needs to make it real; `to_dict`/`from_dict` are its wire form on the node protocol.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from lxcloud.core.errors import InvalidInput
from lxcloud.core.instance_types import Limits


class Kind(StrEnum):
    CONTAINER = "container"
    VM = "vm"


@dataclass(frozen=True)
class Nic:
    """A network interface: which network it joins, its identity there, and how the host plugs
    it in (`link`: the host interface, e.g. the network's bridge; `driver`: the network driver)."""

    network: str                    # the network's id
    mac: str
    ipv4: str | None                # "10.213.4.7" (the database's allocation), None: no address
    prefix: int = 24                # of the network
    gateway: str | None = None
    name: str = "eth0"              # inside the instance
    link: str = ""                  # host side: the bridge the NIC plugs into
    driver: str = "bridge"
    mtu: int = 1500
    nameservers: tuple[str, ...] = ()
    id: str = ""                    # stable while the NIC exists ("eni-…", EC2's network interface)
    security_groups: tuple[str, ...] = ()   # the instance's security groups (ids)
    ingress: int = 0                # bandwidth limit towards the instance, bits/s (0: none)
    egress: int = 0                 # from the instance, bits/s (0: none)
    mode: str = ""                  # macvlan: private | bridge | vepa
    search: tuple[str, ...] = ()    # DNS search domains (the network's domain)
    network_name: str = ""          # the network's name (as users name it; never renamed)

    @property
    def index(self) -> int:
        """N of ethN: names the host side (the veth) of the NIC."""
        digits = self.name[len(self.name.rstrip("0123456789")):]
        return int(digits) if digits else 0

    @property
    def interface(self) -> str | None:
        """The address with its prefix ("10.213.4.7/20"), None without an address."""
        return f"{self.ipv4}/{self.prefix}" if self.ipv4 else None

    @property
    def broadcast(self) -> str | None:
        if not self.ipv4:
            return None
        return str(ipaddress.ip_interface(f"{self.ipv4}/{self.prefix}").network.broadcast_address)


ROOT = "root"
ROOT_DEVICE = "/dev/sda1"      # the root disk's device name, as EC2 shows it and mappings name it


@dataclass(frozen=True)
class Disk:
    """A disk on a named pool. The root disk (name "root", path "/") is made from `source`, an
    image id; a volume's disk is named by the volume's id and mounted at `path` inside
    (/media/<volume-id> unless asked otherwise). size 0: no limit asked for. `device`: the
    device name a user gave it (EC2's /dev/sdf), shown back as given."""

    pool: str
    name: str = ROOT
    size: int = 0
    source: str | None = None
    path: str = "/"
    device: str = ""

    @property
    def is_root(self) -> bool:
        return self.name == ROOT


@dataclass(frozen=True)
class File:
    """A file written into a new root before its first boot (keys, user data)."""

    path: str
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class ImageRef:
    """What a host needs of an image: its id, where its template is, how its init is stopped."""

    id: str
    template: str                   # path of the template archive in the template library
    format: str = "tar"
    halt_signal: str | None = None  # e.g. SIGUSR1 for busybox init, SIGRTMIN+3 for systemd
    init: str | None = None


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a host needs to create, redefine and run one instance."""

    id: str                         # the instance id: its name on the host
    name: str                       # the instance's name: its hostname inside
    kind: Kind
    image: ImageRef
    limits: Limits
    nics: tuple[Nic, ...] = ()
    disks: tuple[Disk, ...] = ()
    first_boot: tuple[File, ...] = ()   # written into a new root only, never over an existing one
    node: str = "local"

    @property
    def root(self) -> Disk:
        for d in self.disks:
            if d.is_root:
                return d
        raise InvalidInput(f"instance {self.id} has no root disk")

    def with_limits(self, limits: Limits) -> InstanceSpec:
        return replace(self, limits=limits)

    # --- the node protocol's wire form (JSON-safe)
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["first_boot"] = [{"path": f.path, "mode": f.mode,
                            "content": base64.b64encode(f.content).decode()} for f in self.first_boot]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InstanceSpec:
        return cls(
            id=d["id"], name=d["name"], kind=Kind(d["kind"]), image=ImageRef(**d["image"]),
            limits=Limits(**d["limits"]),
            nics=tuple(nic_from_dict(n) for n in d.get("nics", ())),
            disks=tuple(Disk(**x) for x in d.get("disks", ())),
            first_boot=tuple(File(f["path"], base64.b64decode(f["content"]), int(f["mode"]))
                             for f in d.get("first_boot", ())),
            node=d.get("node", "local"))


_NIC_FIELDS = {f.name for f in fields(Nic)}


def nic_from_dict(d: dict[str, Any]) -> Nic:
    """A Nic from its stored or wire form (unknown keys ignored, lists made tuples)."""
    values = {k: v for k, v in d.items() if k in _NIC_FIELDS}
    for key in ("nameservers", "security_groups", "search"):
        values[key] = tuple(values.get(key) or ())
    return Nic(**values)


def nic_to_dict(n: Nic) -> dict[str, Any]:
    d = asdict(n)
    for key in ("nameservers", "security_groups", "search"):
        d[key] = list(d[key])
    return d


def disk_to_dict(d: Disk) -> dict[str, Any]:
    return asdict(d)


_DISK_FIELDS = {f.name for f in fields(Disk)}


def disk_from_dict(d: dict[str, Any]) -> Disk:
    return Disk(**{k: v for k, v in d.items() if k in _DISK_FIELDS})


@dataclass(frozen=True)
class BlockDevice:
    """One entry of an EC2-style block device mapping, as a launch request asks for it."""

    device_name: str
    size: int | None = None         # bytes
    snapshot_id: str | None = None
    no_device: bool = False
    virtual_name: str | None = None  # ephemeralN


@dataclass(frozen=True)
class BootOptions:
    """How a kernel is booted: only a virtual machine can honour these."""

    kernel_id: str | None = None
    ramdisk_id: str | None = None
    features: frozenset[str] = field(default_factory=frozenset)   # cpu_options, hibernation, enclave

    @property
    def empty(self) -> bool:
        return not (self.kernel_id or self.ramdisk_id or self.features)
