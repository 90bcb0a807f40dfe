"""The agent of one host: turns node-protocol requests into driver calls, with undo on failure.

It hands the instance description (InstanceSpec) to the drivers as it came: the storage driver of
the root disk's pool makes the root, the compute driver of the instance's kind defines and runs
it, the port guard learns its NICs' addresses.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pty
import select
import shutil
import signal
import struct
import termios
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lxcloud.config import Settings
from lxcloud.core.caps import NodeCaps, StorageCaps
from lxcloud.core.errors import InvalidCombination, NotFound, Unsupported
from lxcloud.core.host import ExecResult, HostState
from lxcloud.core.instance import Disk, InstanceSpec, Kind, Nic
from lxcloud.core.reverter import Reverter
from lxcloud.drivers.compute.base import ComputeDriver, IdMap, Mount, RootfsSpec
from lxcloud.drivers.network.base import NetworkDriver, NetworkSpec
from lxcloud.drivers.network.publicnat import AddressPool, Association, PortForward, PublicNat
from lxcloud.drivers.network.secgroups import GroupPolicy, PortPolicy
from lxcloud.drivers.storage.base import PoolSpec, PoolUsage, SnapshotOf, StorageDriver
from lxcloud.node.doctor import Check
from lxcloud.node.metrics import MetricsTarget, NodeMetrics
from lxcloud.node.protocol import Progress, Timings

log = logging.getLogger(__name__)


class NodeAgent:
    """One host's agent. Stateless apart from its drivers: the database lives with the controller."""

    def __init__(self, settings: Settings, compute: ComputeDriver | dict[Kind, ComputeDriver],
                 storage: StorageDriver | dict[str, StorageDriver],
                 network: NetworkDriver | dict[str, NetworkDriver], dns: Any = None,
                 name: str = "local", guard: Any = None, secgroups: Any = None,
                 public: Any = None) -> None:
        self.settings = settings
        self.public = public   # public addresses and port forwards (PublicNatDriver), when present
        self.guard = guard     # address anti-spoofing on the bridge (PortGuard), when present
        self.secgroups = secgroups   # the instances' firewall (SecurityGroups), when present
        self.name = name
        self.computes = compute if isinstance(compute, dict) else {compute.caps.kind: compute}
        self.pools = storage if isinstance(storage, dict) else {"default": storage}
        self.networks = network if isinstance(network, dict) else {network.name: network}
        self.dns = dns
        self.idmap = IdMap(settings.idmap_base, settings.idmap_base, settings.idmap_count)

    @classmethod
    def local(cls, settings: Settings) -> NodeAgent:
        from lxcloud.drivers.compute.registry import get_compute_driver
        from lxcloud.drivers.network.dns import DnsmasqSupervisor
        from lxcloud.drivers.network.portguard import PortGuard
        from lxcloud.drivers.network.publicnat import PublicNatDriver
        from lxcloud.drivers.network.registry import get_network_driver
        from lxcloud.drivers.network.secgroups import SecurityGroups
        idmap = IdMap(settings.idmap_base, settings.idmap_base, settings.idmap_count)
        return cls(settings,
                   compute=get_compute_driver("lxc", lxcpath=settings.lxcpath, idmap=idmap,
                                              lxcfs_dir=settings.lxcfs_dir,
                                              veth_prefix=settings.veth_prefix),
                   guard=PortGuard(), secgroups=SecurityGroups(),
                   public=PublicNatDriver(),
                   storage={},     # the pools the controller asks for (ensure_pool)
                   network={"bridge": get_network_driver("bridge"),
                            "macvlan": get_network_driver("macvlan")},
                   dns=DnsmasqSupervisor())

    # --- the host
    def close(self) -> None:
        """Close the drivers' netlink sockets (reopened on next use): a socket left to the
        interpreter's exit is torn down after its event loop's descriptors, and says so."""
        for d in (*self.networks.values(), self.public):
            close = getattr(d, "close", None)
            if close is not None:
                close()

    def capabilities(self) -> NodeCaps:
        return NodeCaps(compute={k: d.caps for k, d in self.computes.items()},
                        storage={n: p.caps for n, p in self.pools.items()},
                        network={n: d.caps for n, d in self.networks.items()})

    def prepare(self) -> None:
        from lxcloud.node.host import prepare_host

        prepare_host(self.settings)
        self.settings.lxcpath.mkdir(parents=True, exist_ok=True)

    def heal(self) -> None:
        """Bring back the host services containers rely on if one died (lxcfs), between launches."""
        from lxcloud.node.host import ensure_lxcfs

        ensure_lxcfs(Path(self.settings.lxcfs_dir))

    def facts(self) -> dict[str, object]:
        from lxcloud.node.host import host_facts

        return dict(host_facts(self.settings))

    def host_networks(self, interface: str | None = None) -> list[str]:
        from lxcloud.drivers.network.bridge import host_networks

        return host_networks(interface)

    def host_interfaces(self) -> list[str]:
        from lxcloud.drivers.network.bridge import host_interfaces

        return host_interfaces()

    def doctor(self, networks: Sequence[NetworkSpec], uplinks: Sequence[str] = ()) -> list[Check]:
        from lxcloud.node.doctor import diagnose

        return diagnose(networks, self.settings.nft_table, uplinks=uplinks)

    # --- drivers
    def _compute(self, kind: Kind) -> ComputeDriver:
        try:
            return self.computes[kind]
        except KeyError:
            raise InvalidCombination(f"host {self.name} runs no {kind} instances",
                                     capability="kind") from None

    def _pool(self, name: str) -> StorageDriver:
        try:
            return self.pools[name]
        except KeyError:
            raise NotFound(f"pool {name!r} does not exist on host {self.name}",
                           resource="pool") from None

    def _driver_of(self, instance_id: str) -> ComputeDriver:
        """The compute driver that holds `instance_id` (the first one when none does)."""
        drivers = list(self.computes.values())
        if len(drivers) > 1:
            for d in drivers:
                if d.state(instance_id) is not HostState.MISSING:
                    return d
        return drivers[0]

    # --- networks
    def _network(self, spec: NetworkSpec) -> NetworkDriver:
        try:
            return self.networks[spec.driver]
        except KeyError:
            raise InvalidCombination(f"host {self.name} has no {spec.driver} network driver",
                                     capability="network_driver") from None

    def ensure_network(self, spec: NetworkSpec) -> None:
        driver = self._network(spec)
        driver.ensure(spec)
        if self.guard is not None:
            self.guard.ensure(spec.nft_table, self.settings.veth_prefix)
        if self.dns is not None and driver.caps.dhcp:
            self.dns.ensure(spec, self._dns_dir(spec))

    def teardown_network(self, spec: NetworkSpec) -> None:
        driver = self._network(spec)
        if self.dns is not None and driver.caps.dhcp:
            self.dns.stop(self._dns_dir(spec))
            shutil.rmtree(self._dns_dir(spec), ignore_errors=True)
        driver.teardown(spec)
        if self.guard is not None and spec.bridge == self.settings.bridge_name:
            self.guard.remove(spec.nft_table)   # the cloud's guard goes with its default network
        if self.secgroups is not None and spec.bridge == self.settings.bridge_name:
            self.secgroups.remove_all(spec.nft_table)   # and so do its security groups
        elif self.secgroups is not None and spec.bridge:
            self.secgroups.forget_bridge(spec.nft_table, spec.bridge)

    def update_dns(self, spec: NetworkSpec, hosts: dict[str, str],
                   macs: dict[str, str] | None = None) -> None:
        if self.dns is not None:
            self.dns.update_hosts(self._dns_dir(spec), hosts, macs)

    def add_dns(self, spec: NetworkSpec, hosts: dict[str, str],
                macs: dict[str, str] | None = None) -> None:
        if self.dns is not None:
            self.dns.add_hosts(self._dns_dir(spec), hosts, macs)

    def remove_dns(self, spec: NetworkSpec, names: list[str]) -> None:
        if self.dns is not None:
            self.dns.remove_hosts(self._dns_dir(spec), names)

    # --- public addresses
    def _public(self) -> Any:
        if self.public is None:
            raise Unsupported(f"host {self.name} has no public address driver")
        return self.public

    def sync_public(self, pools: Sequence[AddressPool], associations: Sequence[Association],
                    forwards: Sequence[PortForward]) -> None:
        self._public().sync(PublicNat(self.settings.nft_table, tuple(pools), tuple(associations),
                                      tuple(forwards)))

    def associate_address(self, association: Association) -> None:
        self._public().associate(self.settings.nft_table, association)

    def disassociate_address(self, association: Association) -> None:
        self._public().disassociate(self.settings.nft_table, association)

    def add_port_forward(self, forward: PortForward) -> None:
        self._public().add_forward(self.settings.nft_table, forward)

    def remove_port_forward(self, forward: PortForward) -> None:
        self._public().remove_forward(self.settings.nft_table, forward)

    def teardown_public(self, pools: Sequence[AddressPool]) -> None:
        if self.public is not None:
            self.public.teardown(self.settings.nft_table, pools)

    def host_addresses(self) -> list[str]:
        return list(self._public().host_addresses())

    def _dns_dir(self, spec: NetworkSpec) -> Path:
        # the default network keeps the name it always had; the others are named by their bridge
        # (network names are unique only within a project)
        key = spec.name if spec.bridge == self.settings.bridge_name else spec.bridge
        return self.settings.run_dir / f"dnsmasq-{key}"

    # --- instances
    def launch(self, spec: InstanceSpec, *, start: bool = True,
               progress: Progress | None = None) -> Timings:
        """Base (once per image), copy-on-write root, definition, ports, start. All undone on failure."""
        report = progress or (lambda _p, _m: None)
        timings, step = _stepper()
        compute = self._compute(spec.kind)
        pool = self._pool(spec.root.pool)
        with Reverter() as rev:
            if not pool.has_base(spec.image.id):
                report(10, "unpacking template (first launch of this image on this host)")
                pool.create_base(spec.image.id, lambda dest: self._unpack(Path(spec.image.template),
                                                                          dest))
                step("storage.base")
            report(40, "creating root filesystem")
            root = pool.create_root(spec.id, spec.root, self.idmap.host_uid, self.idmap.host_gid)
            rev.add(lambda: pool.delete_root(spec.id), "root")
            step("storage.root")
            self._define_and_start(compute, spec, root, rev, start, report, step)
            rev.success()
        return timings

    def redefine(self, spec: InstanceSpec) -> None:
        """Rewrites a stopped instance's definition (new limits, devices) over its existing root."""
        pool = self._pool(spec.root.pool)
        if not pool.has_root(spec.id):
            raise NotFound(f"instance {spec.id} has no root on host {self.name}", resource="instance")
        root = pool.create_root(spec.id, spec.root, self.idmap.host_uid, self.idmap.host_gid)
        self._compute(spec.kind).create(spec, root, self._mounts(spec))

    def _mounts(self, spec: InstanceSpec) -> list[Mount]:
        """The spec's volume disks as the compute driver mounts them: each volume's directory
        on its pool, at its path inside."""
        return [Mount(self._pool(d.pool).volume_path(d.name), d.path)
                for d in spec.disks if not d.is_root]

    def _root(self, spec: InstanceSpec) -> RootfsSpec:
        """The existing root of `spec` (NotFound when the host has none)."""
        pool = self._pool(spec.root.pool)
        if not pool.has_root(spec.id):
            raise NotFound(f"instance {spec.id} has no root on host {self.name}", resource="instance")
        return pool.create_root(spec.id, spec.root, self.idmap.host_uid, self.idmap.host_gid)

    # --- disks of an instance
    def attach_disk(self, spec: InstanceSpec, disk: Disk) -> None:
        """`spec` lists `disk` (a volume): its definition says so, and a running instance has it
        mounted at once."""
        compute = self._compute(spec.kind)
        compute.create(spec, self._root(spec), self._mounts(spec))
        if compute.state(spec.id) in (HostState.RUNNING, HostState.FROZEN):
            compute.attach_mount(spec.id, Mount(self._pool(disk.pool).volume_path(disk.name),
                                                disk.path))

    def detach_disk(self, spec: InstanceSpec, disk: Disk, *, force: bool = False) -> None:
        """`spec` no longer lists `disk`: a running instance lets go of it first (InUse while a
        process inside holds it, unless `force`), then the definition is rewritten."""
        compute = self._compute(spec.kind)
        if compute.state(spec.id) in (HostState.RUNNING, HostState.FROZEN):
            compute.detach_mount(spec.id, disk.path, force=force)
        if compute.state(spec.id) is not HostState.MISSING:
            compute.create(spec, self._root(spec), self._mounts(spec))

    # --- NICs of an instance
    def attach_nic(self, spec: InstanceSpec, nic: Nic) -> None:
        compute = self._compute(spec.kind)
        before = replace(spec, nics=tuple(n for n in spec.nics if n.name != nic.name))
        root, mounts = self._root(spec), self._mounts(spec)
        with Reverter() as rev:
            compute.create(spec, root, mounts)
            rev.add(lambda: compute.create(before, root, mounts), "definition")
            if self.guard is not None:
                ports = self._ports(compute, spec.id, [nic])
                for port, ip in ports.items():
                    self.guard.allow(self.settings.nft_table, port, ip)
                rev.add(lambda: self.guard.forget(self.settings.nft_table, list(ports)),
                        "port guard")
            if compute.state(spec.id) in (HostState.RUNNING, HostState.FROZEN):
                compute.attach_nic(spec, nic)
            rev.success()

    def detach_nic(self, spec: InstanceSpec, nic: Nic) -> None:
        compute = self._compute(spec.kind)
        state = compute.state(spec.id)
        if state in (HostState.RUNNING, HostState.FROZEN):
            compute.detach_nic(replace(spec, nics=(*spec.nics, nic)), nic)
        port = compute.port_name(spec.id, nic.index)
        if self.guard is not None and self._guarded(nic):
            self.guard.forget(self.settings.nft_table, [port])
        if self.secgroups is not None:
            self.secgroups.remove_ports(self.settings.nft_table, [port])
        if state is not HostState.MISSING:
            compute.create(spec, self._root(spec), self._mounts(spec))

    def set_rates(self, spec: InstanceSpec, nic: Nic) -> None:
        compute = self._compute(spec.kind)
        compute.create(spec, self._root(spec), self._mounts(spec))
        compute.set_rates(spec, nic)

    def resize_disk(self, instance_id: str, disk: Disk) -> None:
        """The instance's root disk gets the limit `disk.size`."""
        self._pool(disk.pool).resize_root(instance_id, disk.size)

    # --- pools
    def ensure_pool(self, spec: PoolSpec) -> StorageCaps:
        """The pool made real on this host (again after a reboot); what it can do."""
        from lxcloud.drivers.storage.registry import get_storage_driver

        pool = self.pools.get(spec.name)
        if pool is None or getattr(pool, "spec", spec) != spec:
            pool = get_storage_driver(spec)
        pool.ensure()
        self.pools[spec.name] = pool
        return pool.caps

    def delete_pool(self, name: str) -> None:
        pool = self.pools.get(name)
        if pool is not None:
            pool.teardown()
            self.pools.pop(name, None)

    def pool_usage(self, name: str) -> PoolUsage:
        return self._pool(name).usage()

    # --- volumes
    def create_volume(self, pool: str, volume_id: str, size: int) -> None:
        self._pool(pool).create_volume(volume_id, size, self.idmap.host_uid, self.idmap.host_gid)

    def clone_volume(self, pool: str, source_id: str, volume_id: str, size: int,
                     snapshot: str | None = None) -> None:
        self._pool(pool).clone_volume(source_id, volume_id, size, snapshot,
                                      self.idmap.host_uid, self.idmap.host_gid)

    def delete_volume(self, pool: str, volume_id: str) -> None:
        self._pool(pool).delete_volume(volume_id)

    def resize_volume(self, pool: str, volume_id: str, size: int) -> None:
        self._pool(pool).resize_volume(volume_id, size)

    def volume_usage(self, pool: str, volume_id: str) -> int:
        return self._pool(pool).volume_usage(volume_id)

    # --- snapshots
    def create_snapshot(self, of: SnapshotOf, pool: str, target_id: str, snapshot_id: str,
                        freeze: Sequence[str] = ()) -> None:
        """A consistent snapshot: the running instances in `freeze` (the one whose root it is,
        those a volume is attached to) are frozen for the moment it is taken."""
        frozen: list[tuple[ComputeDriver, str]] = []
        try:
            for iid in freeze:
                d = self._driver_of(iid)
                if d.state(iid) is HostState.RUNNING:
                    d.freeze(iid)
                    frozen.append((d, iid))
            self._pool(pool).create_snapshot(of, target_id, snapshot_id)
        finally:
            for d, iid in frozen:
                d.unfreeze(iid)

    def restore_snapshot(self, of: SnapshotOf, pool: str, target_id: str,
                         snapshot_id: str) -> None:
        self._pool(pool).restore_snapshot(of, target_id, snapshot_id)

    def delete_snapshot(self, of: SnapshotOf, pool: str, target_id: str, snapshot_id: str) -> None:
        self._pool(pool).delete_snapshot(of, target_id, snapshot_id)

    # --- copies, images and exports of instances
    def clone(self, source: InstanceSpec, spec: InstanceSpec, *, snapshot: str | None = None,
              start: bool = False, progress: Progress | None = None) -> Timings:
        """A new instance `spec` whose root holds what `source`'s holds now (a running source is
        frozen meanwhile) or held in its snapshot, with a new identity (machine-id and ssh host
        keys made anew at its first boot). All undone on failure."""
        report = progress or (lambda _p, _m: None)
        timings, step = _stepper()
        compute = self._compute(spec.kind)
        pool = self._pool(spec.root.pool)
        with Reverter() as rev:
            report(20, "copying the root filesystem")
            src = self._driver_of(source.id)
            freeze = snapshot is None and src.state(source.id) is HostState.RUNNING
            if freeze:
                src.freeze(source.id)
            try:
                root = pool.clone_root(source.id, spec.id, spec.root, self.idmap.host_uid,
                                       self.idmap.host_gid, snapshot=snapshot)
            finally:
                if freeze:
                    src.unfreeze(source.id)
            rev.add(lambda: pool.delete_root(spec.id), "root")
            compute.forget_identity(root)
            step("storage.clone")
            self._define_and_start(compute, spec, root, rev, start, report, step)
            rev.success()
        return timings

    def _define_and_start(self, compute: ComputeDriver, spec: InstanceSpec, root: RootfsSpec,
                          rev: Reverter, start: bool, report: Progress,
                          step: Callable[[str], None]) -> None:
        """Definition (with its volumes), the port guard's rules, start: each undone on a later
        failure; `step(name)` is told as each ends."""
        compute.create(spec, root, self._mounts(spec))
        rev.add(lambda: compute.destroy(spec.id), "definition")
        step("compute.define")
        if self.guard is not None:
            ports = self._ports(compute, spec.id, spec.nics)
            for port, ip in ports.items():
                self.guard.allow(self.settings.nft_table, port, ip)
            rev.add(lambda: self.guard.forget(self.settings.nft_table, list(ports)), "port guard")
            step("network.rules")
        if start:
            report(70, "starting")
            compute.start(spec.id)
            step("compute.start")

    def export_root(self, spec: InstanceSpec, dest: Path, *, snapshot: str | None = None,
                    progress: Progress | None = None) -> int:
        """The instance's root (stopped) or its snapshot, whole, as a template archive at
        `dest` with the ids unshifted; returns its size."""
        from lxcloud.images.pack import pack_tree

        report = progress or (lambda _p, _m: None)
        pool = self._pool(spec.root.pool)
        with pool.root_tree(spec.id, snapshot) as tree:
            return pack_tree(tree, dest, uid_shift=self.idmap.host_uid,
                             gid_shift=self.idmap.host_gid, count=self.idmap.count,
                             progress=lambda done, total: report(
                                 min(99, done * 100 // max(total, 1)), "packing the root"))

    def import_instance(self, spec: InstanceSpec, root_archive: Path,
                        snapshots: Sequence[tuple[str, Path]] = (), *,
                        progress: Progress | None = None) -> None:
        """A new stopped instance `spec` whose root is unpacked from `root_archive` (checked as
        a template is), with its snapshots (id, archive) unpacked likewise. All undone on
        failure."""
        report = progress or (lambda _p, _m: None)
        compute = self._compute(spec.kind)
        pool = self._pool(spec.root.pool)
        with Reverter() as rev:
            report(10, "unpacking the root filesystem")
            root = pool.import_root(spec.id, spec.root, lambda d: self._unpack(root_archive, d),
                                    self.idmap.host_uid, self.idmap.host_gid)
            rev.add(lambda: pool.delete_root(spec.id), "root")
            for n, (snap_id, archive) in enumerate(snapshots):
                report(10 + 80 * (n + 1) // (len(snapshots) + 1), f"unpacking snapshot {snap_id}")
                pool.import_snapshot(spec.id, snap_id,
                                     lambda d, a=archive: self._unpack(a, d))  # type: ignore[misc]
            self._define_and_start(compute, spec, root, rev, False, report, _stepper()[1])
            rev.success()

    def _ports(self, compute: ComputeDriver, instance_id: str, nics: Sequence[Nic]) -> dict[str, str]:
        """host port name -> address, for the NICs that have one."""
        return {compute.port_name(instance_id, n.index): n.ipv4 for n in nics
                if n.ipv4 and self._guarded(n)}

    def _guarded(self, nic: Nic) -> bool:
        """Whether the NIC has a host port the port guard can watch (not a macvlan's)."""
        driver = self.networks.get(nic.driver)
        return driver is None or driver.caps.anti_spoofing

    def _unpack(self, template: Path, dest: Path) -> None:
        from lxcloud.images.unpack import safe_extract

        safe_extract(template, dest, uid_shift=self.idmap.host_uid, gid_shift=self.idmap.host_gid)

    def sync_ports(self, nics: Mapping[str, Sequence[Nic]]) -> None:
        if self.guard is None:
            return
        ports: dict[str, str] = {}
        for iid, devs in nics.items():
            ports.update(self._ports(self._driver_of(iid), iid, devs))
        self.guard.sync(self.settings.nft_table, ports)

    # --- security groups (rules keyed by the NIC's bridge and address: they may be set before
    # the instance's veth exists, and outlive its restarts)
    def _sg_ports(self, instance_id: str, nics: Sequence[Nic]) -> list[PortPolicy]:
        d = self._driver_of(instance_id)
        return [PortPolicy(d.port_name(instance_id, n.index), n.link, (n.ipv4,),
                           tuple(n.security_groups))
                for n in nics if n.ipv4 and n.link and n.driver == "bridge" and n.security_groups]

    def apply_security_groups(self, nics: Mapping[str, Sequence[Nic]],
                              groups: Sequence[GroupPolicy]) -> None:
        if self.secgroups is None:
            return
        ports = [p for iid, devs in nics.items() for p in self._sg_ports(iid, devs)]
        self.secgroups.apply(self.settings.nft_table, ports, groups)

    def secure_instance(self, instance_id: str, nics: Sequence[Nic], groups: Sequence[GroupPolicy]) -> None:
        if self.secgroups is None:
            return
        for port in self._sg_ports(instance_id, nics):
            self.secgroups.add_port(self.settings.nft_table, port, groups)

    def update_security_group(self, group: GroupPolicy) -> None:
        if self.secgroups is not None:
            self.secgroups.update_group(self.settings.nft_table, group)

    def remove_security_group(self, group_id: str) -> None:
        if self.secgroups is not None:
            self.secgroups.remove_group(self.settings.nft_table, group_id)

    def start(self, instance_id: str) -> None:
        self._driver_of(instance_id).start(instance_id)

    def stop(self, instance_id: str, force: bool = False, timeout: float = 30) -> None:
        d = self._driver_of(instance_id)
        self._thaw(d, instance_id)   # a frozen init can't receive its halt signal
        d.stop(instance_id, force=force, timeout=timeout)

    @staticmethod
    def _thaw(d: ComputeDriver, instance_id: str) -> None:
        if d.state(instance_id) == HostState.FROZEN:
            d.unfreeze(instance_id)

    def reboot(self, instance_id: str) -> None:
        self._driver_of(instance_id).reboot(instance_id)

    def freeze(self, instance_id: str) -> None:
        self._driver_of(instance_id).freeze(instance_id)

    def unfreeze(self, instance_id: str) -> None:
        self._driver_of(instance_id).unfreeze(instance_id)

    def destroy(self, instance_id: str) -> None:
        d = self._driver_of(instance_id)
        self._thaw(d, instance_id)
        d.destroy(instance_id)
        if self.guard is not None:
            self.guard.forget(self.settings.nft_table,
                              [d.port_name(instance_id, i) for i in range(d.caps.max_nics)])
        if self.secgroups is not None:
            self.secgroups.remove_ports(self.settings.nft_table,
                                        [d.port_name(instance_id, i) for i in range(d.caps.max_nics)])
        for pool in self.pools.values():
            pool.delete_root(instance_id)

    def state(self, instance_id: str) -> HostState:
        return self._driver_of(instance_id).state(instance_id)

    # --- metrics
    def collect_metrics(self, targets: Sequence[MetricsTarget]) -> NodeMetrics:
        """One round: the host's counters and each target's (files read directly)."""
        from lxcloud.node import metrics as m

        t = time.time()
        out: dict[str, m.InstanceCounters] = {}
        for tg in targets:
            d = self.computes.get(tg.kind)
            dirs = d.cgroup_dirs(tg.instance_id) if d is not None else None
            c = m.read_cgroup(dirs, t) if dirs is not None else m.InstanceCounters(time=t)
            nics = {}
            if d is not None and c.running:
                for name, index in tg.nics.items():
                    n = m.read_port(d.port_name(tg.instance_id, index))
                    if n is not None:
                        nics[name] = n
            disk, vols = (self._disk_usage(tg) if tg.disk else (None, {}))
            out[tg.instance_id] = replace(c, nics=nics, disk_bytes=disk, volumes=vols)
        pools = {}
        for name, p in self.pools.items():
            try:
                pools[name] = p.usage()
            except Exception:   # a pool whose filesystem is gone is left out, not fatal
                log.debug("usage of pool %s", name, exc_info=True)
        node = replace(m.read_host(t), pools=pools, nics=m.host_nics())
        return m.NodeMetrics(node=node, instances=out)

    def _disk_usage(self, tg: MetricsTarget) -> tuple[int | None, dict[str, int]]:
        """Root and volumes' bytes used (left out where the pool cannot tell)."""
        root = None
        pool = self.pools.get(tg.root_pool or "")
        if pool is not None:
            with contextlib.suppress(Exception):
                root = pool.root_usage(tg.instance_id)
        vols: dict[str, int] = {}
        for pname, vid in tg.volumes:
            vp = self.pools.get(pname)
            if vp is not None:
                with contextlib.suppress(Exception):
                    vols[vid] = vp.volume_usage(vid)
        return root, vols

    def list_instances(self) -> list[str]:
        return sorted({i for d in self.computes.values() for i in d.list()})

    def exec(self, instance_id: str, argv: Sequence[str], stdin: bytes | None = None,
             timeout: float = 60, env: dict[str, str] | None = None) -> ExecResult:
        return self._driver_of(instance_id).exec(instance_id, argv, stdin=stdin, timeout=timeout,
                                                 env=env)

    def console_log(self, instance_id: str) -> bytes:
        return self._driver_of(instance_id).console_log(instance_id)

    def open_console(self, instance_id: str) -> PtyConsole:
        return PtyConsole(self._driver_of(instance_id).console_command(instance_id))

    def open_exec(self, instance_id: str, argv: Sequence[str]) -> PtyConsole:
        return PtyConsole(self._driver_of(instance_id).attach_command(instance_id, argv))

    # --- images
    def has_base(self, image_id: str) -> bool:
        return any(p.has_base(image_id) for p in self.pools.values())

    def delete_base(self, image_id: str) -> None:
        for p in self.pools.values():
            p.delete_base(image_id)


def _stepper() -> tuple[Timings, Callable[[str], None]]:
    """Timings, and `step(name)`: the time since the previous step (or since now) is added to
    `name`."""
    timings: Timings = {}
    last = [time.perf_counter()]

    def step(name: str) -> None:
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - last[0]
        last[0] = now

    return timings, step


def set_winsize(fd: int, cols: int, rows: int) -> None:
    """A pty's window size (TIOCSWINSZ), clamped to what a terminal can be."""
    cols, rows = max(1, min(int(cols), 1000)), max(1, min(int(rows), 1000))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtyConsole:
    """The compute driver's console command run on a pty of the agent's host.

    read() may block in one thread while close() runs in another: the pty is closed by whichever
    of them is last, so a reader never reads from a descriptor that was closed (or reused)."""

    def __init__(self, argv: list[str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # child: becomes the console client on the pty
            try:
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        set_winsize(fd, 80, 24)   # a pty starts at 0x0, which full-screen programs cannot use
        self._mu = threading.Lock()
        self._closed = False
        self._fd_open = True
        self._readers = 0
        self.exit_code: int | None = None

    def read(self, n: int = 65536) -> bytes:
        while True:
            with self._mu:
                if self._closed:
                    return b""
                self._readers += 1
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.25)
                if ready:
                    return os.read(self.fd, n)
            except OSError:   # EIO once the console client has gone
                return b""
            finally:
                with self._mu:
                    self._readers -= 1
                    self._close_fd_if_idle()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def resize(self, cols: int, rows: int) -> None:
        # the kernel sends SIGWINCH to the console client on the pty, which passes the size on
        # to the instance's own terminal
        with self._mu:
            if self._closed or not self._fd_open:
                return
            set_winsize(self.fd, cols, rows)

    def close(self) -> None:
        with self._mu:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == 0:      # still running (a detach): ended, then reaped
                os.kill(self.pid, signal.SIGTERM)
                _, status = os.waitpid(self.pid, 0)
            # what the program exited with (an interactive exec reports it)
            self.exit_code = os.waitstatus_to_exitcode(status)
        with self._mu:
            self._close_fd_if_idle()

    def _close_fd_if_idle(self) -> None:
        if self._closed and self._readers == 0 and self._fd_open:
            self._fd_open = False
            with contextlib.suppress(OSError):
                os.close(self.fd)
