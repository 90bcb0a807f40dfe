"""The node protocol: what the controller asks of a host's agent, in typed values.

Everything the controller does to a host goes through a NodeClient: instances (given as the
services built their `InstanceSpec`, handed on unchanged), networks, DNS, the console, host facts
and host network discovery. In the all-in-one mode the client is the NodeAgent itself, called
in-process; a remote agent serves the same methods as HTTP+JSON (`InstanceSpec.to_dict` is the
wire form of the description).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from lxcloud.core.caps import NodeCaps, StorageCaps
from lxcloud.core.host import ExecResult, HostState
from lxcloud.core.instance import Disk, InstanceSpec, Nic
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.drivers.network.publicnat import AddressPool, Association, PortForward
from lxcloud.drivers.network.secgroups import GroupPolicy
from lxcloud.drivers.storage.base import PoolSpec, PoolUsage, SnapshotOf
from lxcloud.node.doctor import Check
from lxcloud.node.metrics import MetricsTarget, NodeMetrics

Progress = Callable[[int, str], None]
# step name -> seconds, in the order the steps ran (what a launch spent where)
Timings = dict[str, float]


class ConsoleStream(Protocol):
    """A terminal attached to an instance's console."""

    def read(self, n: int = 65536) -> bytes:
        """Blocks until output comes; b"" once the console is gone."""

    def write(self, data: bytes) -> None: ...

    def resize(self, cols: int, rows: int) -> None:
        """The terminal's new size (what `stty size` inside shows); ignored once closed."""

    def close(self) -> None:
        """Detach (the instance keeps running). Idempotent."""


class NodeClient(Protocol):
    name: str

    # --- the host
    def capabilities(self) -> NodeCaps:
        """What this host's drivers can do (asked before any row is written)."""

    def prepare(self) -> None:
        """Make the host ready (id ranges, sysctls, lxcfs); idempotent."""

    def heal(self) -> None:
        """Bring back host services instances rely on if one died (between operations)."""

    def facts(self) -> dict[str, object]: ...

    def host_networks(self, interface: str | None = None) -> list[str]:
        """Every IPv4 network the host already uses (addresses and routes), as CIDRs;
        `interface`: only those on that interface."""

    def host_interfaces(self) -> list[str]:
        """The names of the host's network interfaces."""

    def doctor(self, networks: Sequence[NetworkSpec], uplinks: Sequence[str] = ()) -> list[Check]:
        """What on this host breaks the networking of a cloud with `networks` and public
        address pools on the interfaces `uplinks` (node/doctor.py): each check ok, warn or fail
        with the command that fixes it."""

    # --- networks
    def ensure_network(self, spec: NetworkSpec) -> None: ...
    def teardown_network(self, spec: NetworkSpec) -> None: ...
    def update_dns(self, spec: NetworkSpec, hosts: dict[str, str],
                   macs: dict[str, str] | None = None) -> None:
        """The network's DNS (and static DHCP) answers exactly these names (name -> address)."""

    def add_dns(self, spec: NetworkSpec, hosts: dict[str, str],
                macs: dict[str, str] | None = None) -> None:
        """These names are added to the network's DNS (the others are kept)."""

    def remove_dns(self, spec: NetworkSpec, names: list[str]) -> None: ...

    # --- public addresses (the cloud's table; see drivers/network/publicnat.py)
    def sync_public(self, pools: Sequence[AddressPool], associations: Sequence[Association],
                    forwards: Sequence[PortForward]) -> None:
        """The host holds exactly these associations and forwards (and of the pools' ranges,
        only their addresses on the interfaces)."""

    def associate_address(self, association: Association) -> None: ...
    def disassociate_address(self, association: Association) -> None:
        """Missing: no-op."""

    def add_port_forward(self, forward: PortForward) -> None: ...
    def remove_port_forward(self, forward: PortForward) -> None:
        """Missing: no-op."""

    def teardown_public(self, pools: Sequence[AddressPool]) -> None:
        """Every public address and forward of the cloud gone from the host."""

    def host_addresses(self) -> list[str]:
        """The host's own IPv4 addresses (where a port forward may listen)."""

    # --- instances
    def launch(self, spec: InstanceSpec, *, start: bool = True,
               progress: Progress | None = None) -> Timings:
        """Root disk, definition, ports, DNS name, start: all undone on failure."""

    def redefine(self, spec: InstanceSpec) -> None:
        """Rewrite a stopped instance's definition (limits, devices) over its existing root."""

    def sync_ports(self, nics: Mapping[str, Sequence[Nic]]) -> None:
        """The port guard lets exactly these instances' NICs send from their addresses."""

    # --- security groups (GroupPolicy values of drivers/network/secgroups.py)
    def apply_security_groups(self, nics: Mapping[str, Sequence[Nic]],
                              groups: Sequence[GroupPolicy]) -> None:
        """The host's firewall becomes exactly these instances' NICs in their groups (one
        transaction)."""

    def secure_instance(self, instance_id: str, nics: Sequence[Nic],
                        groups: Sequence[GroupPolicy]) -> None:
        """The instance's NICs filtered by their groups (`groups` holds their rules)."""

    def update_security_group(self, group: GroupPolicy) -> None:
        """A group's rules replaced, for every instance in it at once."""

    def remove_security_group(self, group_id: str) -> None:
        """A deleted group's rules and member set gone from the host."""

    def start(self, instance_id: str) -> None: ...
    def stop(self, instance_id: str, force: bool = False, timeout: float = 30) -> None: ...
    def reboot(self, instance_id: str) -> None: ...
    def freeze(self, instance_id: str) -> None: ...
    def unfreeze(self, instance_id: str) -> None: ...
    def destroy(self, instance_id: str) -> None:
        """Stop, remove the definition, the ports' rules and the root disk. Missing: no-op."""

    def state(self, instance_id: str) -> HostState: ...
    def list_instances(self) -> list[str]: ...

    # --- metrics (node/metrics.py)
    def collect_metrics(self, targets: Sequence[MetricsTarget]) -> NodeMetrics:
        """One collection round: the host's counters and each target instance's (cgroup, host
        ports, and its disks where `disk` is set). Cheap: small files read directly, no
        subprocess; a stopped or missing instance is `running=False`, never an error."""

    def exec(self, instance_id: str, argv: Sequence[str], stdin: bytes | None, timeout: float,
             env: dict[str, str] | None) -> ExecResult: ...
    def console_log(self, instance_id: str) -> bytes: ...
    def open_console(self, instance_id: str) -> ConsoleStream: ...

    def open_exec(self, instance_id: str, argv: Sequence[str]) -> ConsoleStream:
        """`argv` run inside the instance on a terminal: an interactive exec (a shell)."""

    # --- disks of an instance
    def attach_disk(self, spec: InstanceSpec, disk: Disk) -> None:
        """`spec` (which lists the volume `disk`) defined anew; a running instance has the
        volume mounted at once."""

    def detach_disk(self, spec: InstanceSpec, disk: Disk, *, force: bool = False) -> None:
        """A running instance lets go of `disk` (InUse while a process inside holds it, unless
        `force`); `spec` (without it) defined anew."""

    # --- NICs of an instance
    def attach_nic(self, spec: InstanceSpec, nic: Nic) -> None:
        """`spec` (which lists `nic`) defined anew; a running instance has the NIC at once; the
        port guard lets it send from its address. All undone on failure."""

    def detach_nic(self, spec: InstanceSpec, nic: Nic) -> None:
        """A running instance loses `nic` (its interface, host port and limits); `spec`
        (without it) defined anew."""

    def set_rates(self, spec: InstanceSpec, nic: Nic) -> None:
        """`spec` (listing `nic` with its new limits) defined anew, the limits in force at once
        on a running instance."""

    def resize_disk(self, instance_id: str, disk: Disk) -> None:
        """The instance's root disk limited to `disk.size` (InvalidInput below what it uses)."""

    # --- pools
    def ensure_pool(self, spec: PoolSpec) -> StorageCaps:
        """The pool made real on this host (idempotent; again after a reboot)."""

    def delete_pool(self, name: str) -> None: ...
    def pool_usage(self, name: str) -> PoolUsage: ...

    # --- volumes
    def create_volume(self, pool: str, volume_id: str, size: int) -> None: ...
    def clone_volume(self, pool: str, source_id: str, volume_id: str, size: int,
                     snapshot: str | None = None) -> None: ...
    def delete_volume(self, pool: str, volume_id: str) -> None: ...
    def resize_volume(self, pool: str, volume_id: str, size: int) -> None: ...
    def volume_usage(self, pool: str, volume_id: str) -> int: ...

    # --- snapshots
    def create_snapshot(self, of: SnapshotOf, pool: str, target_id: str, snapshot_id: str,
                        freeze: Sequence[str] = ()) -> None:
        """Consistent: the running instances in `freeze` are frozen while it is taken."""

    def restore_snapshot(self, of: SnapshotOf, pool: str, target_id: str,
                         snapshot_id: str) -> None: ...
    def delete_snapshot(self, of: SnapshotOf, pool: str, target_id: str,
                        snapshot_id: str) -> None: ...

    # --- copies, images and exports of instances
    def clone(self, source: InstanceSpec, spec: InstanceSpec, *, snapshot: str | None = None,
              start: bool = False, progress: Progress | None = None) -> Timings:
        """A new instance `spec` with a copy of `source`'s root (now, or its snapshot) and a new
        identity. All undone on failure."""

    def export_root(self, spec: InstanceSpec, dest: Path, *, snapshot: str | None = None,
                    progress: Progress | None = None) -> int:
        """The root (or its snapshot) whole, as a template archive at `dest`; its size."""

    def import_instance(self, spec: InstanceSpec, root_archive: Path,
                        snapshots: Sequence[tuple[str, Path]] = (), *,
                        progress: Progress | None = None) -> None:
        """A new stopped instance from a root archive and its snapshots' archives."""

    # --- images
    def has_base(self, image_id: str) -> bool: ...
    def delete_base(self, image_id: str) -> None: ...
