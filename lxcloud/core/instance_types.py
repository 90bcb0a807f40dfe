"""Instance types: name -> vCPUs, memory, pids, disk. EC2-style names, container-sized."""

from __future__ import annotations

from dataclasses import dataclass

from lxcloud.core.errors import InvalidInput, NotFound

MiB = 1024**2
GiB = 1024**3
MIN_LIMIT = 16 * MiB       # the least memory limit an instance may have


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: float
    memory: int  # bytes
    pids: int
    disk: int  # bytes
    ingress: int = 0   # bits/s into each NIC of its instances (0: no limit)
    egress: int = 0    # bits/s out of each NIC

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "vcpus": self.vcpus, "memory": self.memory, "pids": self.pids,
                "disk": self.disk, "ingress": self.ingress, "egress": self.egress}


MIN_DISK = 32 * MiB          # an instance's root disk limit: the least a root's changes need
MAX_DISK = 64 * 1024 * GiB

DEFAULT_TYPES: tuple[InstanceType, ...] = (
    InstanceType("t3.nano", 0.5, 64 * MiB, 128, 1 * GiB),
    InstanceType("t3.micro", 1, 256 * MiB, 512, 2 * GiB),
    InstanceType("t3.small", 1, 512 * MiB, 1024, 4 * GiB),
    InstanceType("t3.medium", 2, 1 * GiB, 2048, 8 * GiB),
    InstanceType("t3.large", 2, 2 * GiB, 4096, 16 * GiB),
    InstanceType("t3.xlarge", 4, 4 * GiB, 8192, 32 * GiB),
)
DEFAULT_TYPE = "t3.micro"
_BY_NAME = {t.name: t for t in DEFAULT_TYPES}


def get_type(name: str) -> InstanceType:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise NotFound(f"instance type {name!r} does not exist "
                       f"(known: {', '.join(_BY_NAME)})", resource="instance_type") from None


@dataclass(frozen=True)
class Limits:
    """The limits actually applied to an instance: its type's, with per-instance overrides."""

    vcpus: float
    memory: int
    swap: int
    pids: int
    disk: int

    def to_dict(self) -> dict[str, object]:
        return {"vcpus": self.vcpus, "memory": self.memory, "swap": self.swap, "pids": self.pids,
                "disk": self.disk}


def resolve_limits(itype: InstanceType, *, memory: int | None = None, vcpus: float | None = None,
                   pids: int | None = None, swap: int | None = None,
                   disk: int | None = None) -> Limits:
    """Per-instance overrides on top of the type; refuses nonsense before anything is made."""
    mem = itype.memory if memory is None else memory
    cpu = itype.vcpus if vcpus is None else vcpus
    pid = itype.pids if pids is None else pids
    sw = 0 if swap is None else swap
    if mem < MIN_LIMIT:
        raise InvalidInput(f"memory limit must be at least {MIN_LIMIT >> 20}MiB")
    if cpu <= 0 or cpu > 1024:
        raise InvalidInput("cpus must be a positive number")
    if pid < 16:
        raise InvalidInput("pids limit must be at least 16")
    if sw < 0:
        raise InvalidInput("swap must not be negative")
    dsk = itype.disk if disk is None else disk
    if disk is not None and not MIN_DISK <= disk <= MAX_DISK:
        raise InvalidInput(f"disk limit must be between {MIN_DISK >> 20}MiB and "
                           f"{MAX_DISK >> 40}TiB")
    return Limits(vcpus=cpu, memory=mem, swap=sw, pids=pid, disk=dsk)
