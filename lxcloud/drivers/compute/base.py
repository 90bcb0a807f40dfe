"""The compute driver contract: stateless adapters, typed dataclasses in and out.

A driver never touches the database and knows nothing of requests. Every method raises
`DriverError` (carrying the command and its stderr) when the host refuses, and `NotFound` when
the named container does not exist on this host.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from lxcloud.core.instance_types import Limits


@dataclass(frozen=True)
class ComputeCaps:
    containers: bool = True
    vms: bool = False
    freeze: bool = True
    console: bool = True
    snapshots: bool = False
    live_migration: bool = False
    hotplug_nic: bool = False
    images: tuple[str, ...] = ("rootfs-tar",)


@dataclass(frozen=True)
class IdMap:
    """Container uid/gid 0..count-1 map to host host_uid.. / host_gid.. (unprivileged)."""

    host_uid: int = 100000
    host_gid: int = 100000
    count: int = 65536


@dataclass(frozen=True)
class RootfsSpec:
    """Where the instance's root comes from. kind "overlay": `lower` read-only base, `upper` its own."""

    kind: str
    path: Path            # dir kind: the root itself; overlay kind: the upper dir
    lower: Path | None = None


@dataclass(frozen=True)
class NicSpec:
    bridge: str
    ipv4: str | None = None          # "10.1.2.3/24"
    gateway: str | None = None
    hwaddr: str | None = None
    mtu: int = 1500
    name: str = "eth0"


@dataclass(frozen=True)
class InstanceSpec:
    name: str                         # the container's name on the host (the instance id)
    hostname: str                     # the instance's name, its hostname inside
    rootfs: RootfsSpec
    limits: Limits
    nics: Sequence[NicSpec] = ()
    idmap: IdMap | None = field(default_factory=IdMap)   # None = privileged (operator's choice)
    halt_signal: str | None = None    # e.g. "SIGUSR1" for busybox init, "SIGRTMIN+3" for systemd
    nameservers: Sequence[str] = ()
    extra_files: dict[str, bytes | tuple[bytes, int]] = field(default_factory=dict)  # path -> content[, mode]
    lxcfs: bool = True


class HostState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    FROZEN = "frozen"
    MISSING = "missing"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class ComputeDriver(Protocol):
    name: str
    caps: ComputeCaps

    def create(self, spec: InstanceSpec) -> None:
        """Write the container's definition. Idempotent: rewrites an existing definition."""

    def start(self, name: str, timeout: float = 30) -> None:
        """Start and return once the container runs. The monitor must not be a fork of this process."""

    def stop(self, name: str, *, force: bool = False, timeout: float = 30) -> None:
        """Clean shutdown (halt signal), killed after `timeout`; `force` kills at once. Stopped: no-op."""

    def reboot(self, name: str, timeout: float = 30) -> None: ...

    def freeze(self, name: str) -> None: ...

    def unfreeze(self, name: str) -> None: ...

    def destroy(self, name: str) -> None:
        """Stop if needed and remove the definition (not the storage). Missing: no-op."""

    def state(self, name: str) -> HostState: ...

    def list(self) -> builtins.list[str]:
        """Names of every container this driver's lxcpath holds."""

    def exec(self, name: str, argv: Sequence[str], *, stdin: bytes | None = None,
             timeout: float = 60, env: dict[str, str] | None = None) -> ExecResult: ...

    def console_log(self, name: str, max_bytes: int = 1 << 20) -> bytes: ...

    def console_command(self, name: str) -> builtins.list[str]:
        """argv of a program that attaches a terminal to the container's console."""

    def init_pid(self, name: str) -> int | None: ...

    def veth_name(self, name: str, index: int = 0) -> str:
        """The host-side interface of a container's NIC `index` (named for firewall rules)."""
