"""The agent of one host: turns node-protocol requests into driver calls, with undo on failure."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lxcloud.config import Settings
from lxcloud.core.reverter import Reverter
from lxcloud.drivers.compute.base import (
    ComputeDriver,
    ExecResult,
    HostState,
    IdMap,
    InstanceSpec,
    NicSpec,
)
from lxcloud.drivers.network.base import NetworkDriver, NetworkSpec
from lxcloud.drivers.storage.base import StorageDriver
from lxcloud.node.protocol import LaunchRequest

log = logging.getLogger(__name__)


class NodeAgent:
    """One host's agent. Stateless apart from its drivers: the database lives with the controller."""

    def __init__(self, settings: Settings, compute: ComputeDriver, storage: StorageDriver,
                 network: NetworkDriver, dns: Any = None, name: str = "local",
                 guard: Any = None) -> None:
        self.settings = settings
        self.guard = guard     # address anti-spoofing on the bridge (PortGuard), when present
        self.name = name
        self.compute = compute
        self.storage = storage
        self.network = network
        self.dns = dns
        self.idmap = IdMap(settings.idmap_base, settings.idmap_base, settings.idmap_count)

    @classmethod
    def local(cls, settings: Settings) -> NodeAgent:
        from lxcloud.drivers.compute.registry import get_compute_driver
        from lxcloud.drivers.network.dns import DnsmasqSupervisor
        from lxcloud.drivers.network.portguard import PortGuard
        from lxcloud.drivers.network.registry import get_network_driver
        from lxcloud.drivers.storage.registry import get_storage_driver

        return cls(settings,
                   compute=get_compute_driver("lxc", lxcpath=settings.lxcpath,
                                              veth_prefix=settings.veth_prefix),
                   guard=PortGuard(),
                   storage=get_storage_driver("dir", path=settings.pools_dir / "default"),
                   network=get_network_driver("bridge"),
                   dns=DnsmasqSupervisor())

    def prepare(self) -> None:
        from lxcloud.node.host import prepare_host

        prepare_host(self.settings)
        self.settings.lxcpath.mkdir(parents=True, exist_ok=True)

    def heal(self) -> None:
        """Bring back the host services containers rely on if one died (lxcfs), between launches."""
        from lxcloud.node.host import ensure_lxcfs

        ensure_lxcfs(Path(self.settings.lxcfs_dir))

    # --- networks
    def ensure_network(self, spec: NetworkSpec) -> None:
        self.network.ensure(spec)
        if self.guard is not None:
            self.guard.ensure(spec.nft_table, self.settings.veth_prefix)
        if self.dns is not None:
            self.dns.ensure(spec, self._dns_dir(spec))

    def teardown_network(self, spec: NetworkSpec) -> None:
        if self.dns is not None:
            self.dns.stop(self._dns_dir(spec))
        self.network.teardown(spec)
        if self.guard is not None:
            self.guard.remove(spec.nft_table)

    def update_dns(self, spec: NetworkSpec, hosts: dict[str, str]) -> None:
        if self.dns is not None:
            self.dns.update_hosts(self._dns_dir(spec), hosts)

    def _dns_dir(self, spec: NetworkSpec) -> Path:
        return self.settings.run_dir / f"dnsmasq-{spec.name}"

    # --- instances
    def launch(self, req: LaunchRequest, progress: Callable[[int, str], None] | None = None) -> None:
        """Base (once per image), copy-on-write root, definition, start. All undone on failure."""
        report = progress or (lambda _p, _m: None)
        with Reverter() as rev:
            if not self.storage.has_base(req.image_id):
                report(10, "unpacking template (first launch of this image on this host)")
                self.storage.create_base(req.image_id, lambda dest: self._unpack(req.template, dest))
            report(40, "creating root filesystem")
            rootfs = self.storage.create_root(req.instance_id, req.image_id, self.idmap.host_uid,
                                              self.idmap.host_gid)
            rev.add(lambda: self.storage.delete_root(req.instance_id), "root")
            spec = InstanceSpec(
                name=req.instance_id, hostname=req.hostname, rootfs=rootfs, limits=req.limits,
                nics=[NicSpec(bridge=req.bridge, ipv4=req.ipv4, gateway=req.gateway, hwaddr=req.mac)],
                idmap=self.idmap, halt_signal=req.halt_signal, nameservers=tuple(req.nameservers),
                extra_files=dict(req.extra_files))
            self.compute.create(spec)
            rev.add(lambda: self.compute.destroy(req.instance_id), "definition")
            if self.guard is not None:
                port = self.compute.veth_name(req.instance_id)
                self.guard.allow(self.settings.nft_table, port, req.ipv4.split("/")[0])
                rev.add(lambda: self.guard.forget(self.settings.nft_table, port), "port guard")
            if req.start:
                report(70, "starting")
                self.compute.start(req.instance_id)
            rev.success()

    def redefine(self, req: LaunchRequest) -> None:
        """Rewrites a stopped instance's definition (new limits) over its existing root."""
        rootfs = self.storage.create_root(req.instance_id, req.image_id, self.idmap.host_uid,
                                          self.idmap.host_gid)
        self.compute.create(InstanceSpec(
            name=req.instance_id, hostname=req.hostname, rootfs=rootfs, limits=req.limits,
            nics=[NicSpec(bridge=req.bridge, ipv4=req.ipv4, gateway=req.gateway, hwaddr=req.mac)],
            idmap=self.idmap, halt_signal=req.halt_signal, nameservers=tuple(req.nameservers)))

    def _unpack(self, template: Path, dest: Path) -> None:
        from lxcloud.images.unpack import safe_extract

        safe_extract(template, dest, uid_shift=self.idmap.host_uid, gid_shift=self.idmap.host_gid)

    def sync_ports(self, addresses: dict[str, str]) -> None:
        """The port guard allows exactly these instances (id -> address) on this host."""
        if self.guard is not None:
            self.guard.sync(self.settings.nft_table,
                            {self.compute.veth_name(i): ip for i, ip in addresses.items()})

    def start(self, instance_id: str) -> None:
        self.compute.start(instance_id)

    def stop(self, instance_id: str, force: bool = False, timeout: float = 30) -> None:
        self._thaw(instance_id)   # a frozen init can't receive its halt signal
        self.compute.stop(instance_id, force=force, timeout=timeout)

    def _thaw(self, instance_id: str) -> None:
        if self.compute.state(instance_id) == HostState.FROZEN:
            self.compute.unfreeze(instance_id)

    def reboot(self, instance_id: str) -> None:
        self.compute.reboot(instance_id)

    def freeze(self, instance_id: str) -> None:
        self.compute.freeze(instance_id)

    def unfreeze(self, instance_id: str) -> None:
        self.compute.unfreeze(instance_id)

    def destroy(self, instance_id: str) -> None:
        self._thaw(instance_id)
        self.compute.destroy(instance_id)
        if self.guard is not None:
            self.guard.forget(self.settings.nft_table, self.compute.veth_name(instance_id))
        self.storage.delete_root(instance_id)

    def state(self, instance_id: str) -> HostState:
        return self.compute.state(instance_id)

    def list_instances(self) -> list[str]:
        return self.compute.list()

    def exec(self, instance_id: str, argv: Sequence[str], stdin: bytes | None = None,
             timeout: float = 60, env: dict[str, str] | None = None) -> ExecResult:
        return self.compute.exec(instance_id, argv, stdin=stdin, timeout=timeout, env=env)

    def console_log(self, instance_id: str) -> bytes:
        return self.compute.console_log(instance_id)

    def console_command(self, instance_id: str) -> list[str]:
        return self.compute.console_command(instance_id)

    def has_base(self, image_id: str) -> bool:
        return self.storage.has_base(image_id)

    def delete_base(self, image_id: str) -> None:
        self.storage.delete_base(image_id)

    def facts(self) -> dict[str, object]:
        from lxcloud.node.host import host_facts

        return dict(host_facts(self.settings))
