"""The compute driver contract: stateless adapters, typed dataclasses in and out.

A driver takes the instance description (core.instance.InstanceSpec) as the services built it and
turns it into the host's terms (an LXC config; a QEMU command line later). It never touches the
database and knows nothing of requests. Every method raises `DriverError` (carrying the command
and its stderr) when the host refuses, and `NotFound` when the named instance does not exist on
this host.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lxcloud.core.caps import ComputeCaps
from lxcloud.core.host import ExecResult, HostState
from lxcloud.core.instance import InstanceSpec, Nic


@dataclass(frozen=True)
class IdMap:
    """Container uid/gid 0..count-1 map to host host_uid.. / host_gid.. (unprivileged)."""

    host_uid: int = 100000
    host_gid: int = 100000
    count: int = 65536


@dataclass(frozen=True)
class RootfsSpec:
    """Where a root disk is on this host, as its storage driver made it.
    kind "overlay": `lower` the read-only base, `path` the instance's own upper dir;
    kind "dir": `path` is the root itself."""

    kind: str
    path: Path
    lower: Path | None = None


@dataclass(frozen=True)
class Mount:
    """A host directory seen inside an instance: a volume's directory at its path (`target`,
    absolute, inside the instance), bind-mounted, writable unless `readonly`."""

    source: Path
    target: str
    readonly: bool = False


@dataclass(frozen=True)
class CgroupDirs:
    """Where one instance's cgroup lives: `version` 2 has everything in `unified`; version 1 has
    one directory per controller (`cpu`, `cpuacct`, `memory`, `pids`)."""

    version: int
    unified: Path | None = None
    controllers: Mapping[str, Path] = field(default_factory=dict)

    def dir(self, controller: str) -> Path | None:
        return self.unified if self.version == 2 else self.controllers.get(controller)


class ComputeDriver(Protocol):
    name: str
    caps: ComputeCaps

    def create(self, spec: InstanceSpec, root: RootfsSpec, mounts: Sequence[Mount] = ()) -> None:
        """Write the instance's definition over `root`, with `mounts` (the spec's volume disks,
        as the agent found them on their pools) mounted at every start. Idempotent: an existing
        definition is rewritten (new limits, devices), also while it runs (the running instance
        is changed by attach_mount/detach_mount). `spec.first_boot` files are written only when
        the definition is made for the first time, never over an existing instance's files."""

    def attach_mount(self, name: str, mount: Mount) -> None:
        """Into a running instance (where `caps.hotplug_disk`): `mount.source` appears at
        `mount.target` inside at once (the directory made if missing). Already there: no-op."""

    def detach_mount(self, name: str, target: str, *, force: bool = False) -> None:
        """Out of a running instance: InUse naming the processes inside that hold a file (or
        their working directory) under `target`, unless `force` (then detached lazily: they
        keep what they hold open, nothing new reaches it). Not mounted: no-op."""

    def attach_nic(self, spec: InstanceSpec, nic: Nic) -> None:
        """Into a running instance (where `caps.hotplug_nic`): `nic`, which `spec` lists, appears
        inside at once, up, configured when it has an address (the default route only for the
        first NIC), unconfigured otherwise; its rate limits set. The definition is the caller's
        to rewrite (create). Already there: no-op. InvalidInput when its link is missing."""

    def detach_nic(self, spec: InstanceSpec, nic: Nic) -> None:
        """Out of the instance (`spec` still lists `nic`): its interface and host port gone,
        with their limits. Gone already or not running: no-op."""

    def set_rates(self, spec: InstanceSpec, nic: Nic) -> None:
        """The limits of `nic` (as `spec` lists it) in force at once on a running instance;
        InvalidCombination for a NIC with no host port (a macvlan)."""

    def forget_identity(self, root: RootfsSpec) -> None:
        """For a clone's new root: what makes a machine itself (machine-id, ssh host keys) is
        removed, so that its init makes new ones at first boot."""

    def start(self, name: str, timeout: float = 30) -> None:
        """Start and return once the instance runs. The monitor must not be a fork of this process."""

    def stop(self, name: str, *, force: bool = False, timeout: float = 30) -> None:
        """Clean shutdown (halt signal), killed after `timeout`; `force` kills at once. Stopped: no-op."""

    def reboot(self, name: str, timeout: float = 30) -> None: ...

    def freeze(self, name: str) -> None: ...

    def unfreeze(self, name: str) -> None: ...

    def destroy(self, name: str) -> None:
        """Stop if needed and remove the definition (not the storage). Missing: no-op."""

    def state(self, name: str) -> HostState: ...

    def list(self) -> builtins.list[str]:
        """Names of every instance this driver holds on this host."""

    def exec(self, name: str, argv: Sequence[str], *, stdin: bytes | None = None,
             timeout: float = 60, env: dict[str, str] | None = None) -> ExecResult: ...

    def console_log(self, name: str, max_bytes: int = 1 << 20) -> bytes: ...

    def console_command(self, name: str) -> builtins.list[str]:
        """argv of a program that attaches a terminal to the instance's console."""

    def attach_command(self, name: str, argv: Sequence[str]) -> builtins.list[str]:
        """argv of a program that runs `argv` inside the instance on the caller's terminal
        (an interactive exec: its stdin, stdout and stderr are the pty it is started on)."""

    def init_pid(self, name: str) -> int | None: ...

    def cgroup_dirs(self, name: str) -> CgroupDirs | None:
        """Where the instance's cgroup would be while it runs (no host call: the metrics
        collector reads its files each round); None when the driver has none."""

    def port_name(self, name: str, index: int = 0) -> str:
        """The host-side interface of the instance's NIC `index` (named for firewall rules)."""
