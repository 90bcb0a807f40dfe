"""The agent of one host: turns node-protocol requests into driver calls, with undo on failure.

It hands the instance description (InstanceSpec) to the drivers as it came: the storage driver of
the root disk's pool makes the root, the compute driver of the instance's kind defines and runs
it, the port guard learns its NICs' addresses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pty
import select
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lxcloud.config import Settings
from lxcloud.core.caps import NodeCaps
from lxcloud.core.errors import InvalidCombination, NotFound
from lxcloud.core.host import ExecResult, HostState
from lxcloud.core.instance import InstanceSpec, Kind, Nic
from lxcloud.core.reverter import Reverter
from lxcloud.drivers.compute.base import ComputeDriver, IdMap
from lxcloud.drivers.network.base import NetworkDriver, NetworkSpec
from lxcloud.drivers.storage.base import PoolSpec, StorageDriver
from lxcloud.node.protocol import Progress, Timings

log = logging.getLogger(__name__)


class NodeAgent:
    """One host's agent. Stateless apart from its drivers: the database lives with the controller."""

    def __init__(self, settings: Settings, compute: ComputeDriver | dict[Kind, ComputeDriver],
                 storage: StorageDriver | dict[str, StorageDriver],
                 network: NetworkDriver | dict[str, NetworkDriver], dns: Any = None,
                 name: str = "local", guard: Any = None) -> None:
        self.settings = settings
        self.guard = guard     # address anti-spoofing on the bridge (PortGuard), when present
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
        from lxcloud.drivers.network.registry import get_network_driver
        from lxcloud.drivers.storage.registry import get_storage_driver

        idmap = IdMap(settings.idmap_base, settings.idmap_base, settings.idmap_count)
        return cls(settings,
                   compute=get_compute_driver("lxc", lxcpath=settings.lxcpath, idmap=idmap,
                                              lxcfs_dir=settings.lxcfs_dir,
                                              veth_prefix=settings.veth_prefix),
                   guard=PortGuard(),
                   storage={"default": get_storage_driver(
                       PoolSpec("default", "dir", settings.pools_dir / "default"))},
                   network=get_network_driver("bridge"),
                   dns=DnsmasqSupervisor())

    # --- the host
    def capabilities(self) -> NodeCaps:
        return NodeCaps(compute={k: d.caps for k, d in self.computes.items()},
                        storage={n: p.caps for n, p in self.pools.items()},
                        network={n: d.caps for n, d in self.networks.items()})

    def prepare(self) -> None:
        from lxcloud.node.host import prepare_host

        prepare_host(self.settings)
        self.settings.lxcpath.mkdir(parents=True, exist_ok=True)
        for pool in self.pools.values():
            pool.ensure()

    def heal(self) -> None:
        """Bring back the host services containers rely on if one died (lxcfs), between launches."""
        from lxcloud.node.host import ensure_lxcfs

        ensure_lxcfs(Path(self.settings.lxcfs_dir))

    def facts(self) -> dict[str, object]:
        from lxcloud.node.host import host_facts

        return dict(host_facts(self.settings))

    def host_networks(self) -> list[str]:
        from lxcloud.drivers.network.bridge import host_networks

        return host_networks()

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
        self._network(spec).ensure(spec)
        if self.guard is not None:
            self.guard.ensure(spec.nft_table, self.settings.veth_prefix)
        if self.dns is not None:
            self.dns.ensure(spec, self._dns_dir(spec))

    def teardown_network(self, spec: NetworkSpec) -> None:
        if self.dns is not None:
            self.dns.stop(self._dns_dir(spec))
        self._network(spec).teardown(spec)
        if self.guard is not None:
            self.guard.remove(spec.nft_table)

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

    def _dns_dir(self, spec: NetworkSpec) -> Path:
        return self.settings.run_dir / f"dnsmasq-{spec.name}"

    # --- instances
    def launch(self, spec: InstanceSpec, *, start: bool = True,
               progress: Progress | None = None) -> Timings:
        """Base (once per image), copy-on-write root, definition, ports, start. All undone on failure."""
        report = progress or (lambda _p, _m: None)
        timings: Timings = {}
        t = time.perf_counter()

        def step(name: str) -> None:
            nonlocal t
            now = time.perf_counter()
            timings[name] = timings.get(name, 0.0) + now - t
            t = now

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
            compute.create(spec, root)
            rev.add(lambda: compute.destroy(spec.id), "definition")
            step("compute.define")
            if self.guard is not None:
                ports = self._ports(compute, spec.id, spec.nics)
                for port, ip in ports.items():
                    self.guard.allow(self.settings.nft_table, port, ip)
                rev.add(lambda: self.guard.forget(self.settings.nft_table, list(ports)),
                        "port guard")
                step("network.rules")
            if start:
                report(70, "starting")
                compute.start(spec.id)
                step("compute.start")
            rev.success()
        return timings

    def redefine(self, spec: InstanceSpec) -> None:
        """Rewrites a stopped instance's definition (new limits, devices) over its existing root."""
        pool = self._pool(spec.root.pool)
        if not pool.has_root(spec.id):
            raise NotFound(f"instance {spec.id} has no root on host {self.name}", resource="instance")
        root = pool.create_root(spec.id, spec.root, self.idmap.host_uid, self.idmap.host_gid)
        self._compute(spec.kind).create(spec, root)

    def _ports(self, compute: ComputeDriver, instance_id: str, nics: Sequence[Nic]) -> dict[str, str]:
        """host port name -> address, for the NICs that have one."""
        return {compute.port_name(instance_id, i): n.ipv4 for i, n in enumerate(nics) if n.ipv4}

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
        for pool in self.pools.values():
            pool.delete_root(instance_id)

    def state(self, instance_id: str) -> HostState:
        return self._driver_of(instance_id).state(instance_id)

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

    # --- images
    def has_base(self, image_id: str) -> bool:
        return any(p.has_base(image_id) for p in self.pools.values())

    def delete_base(self, image_id: str) -> None:
        for p in self.pools.values():
            p.delete_base(image_id)


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
        self._mu = threading.Lock()
        self._closed = False
        self._fd_open = True
        self._readers = 0

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

    def close(self) -> None:
        with self._mu:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        with self._mu:
            self._close_fd_if_idle()

    def _close_fd_if_idle(self) -> None:
        if self._closed and self._readers == 0 and self._fd_open:
            self._fd_open = False
            with contextlib.suppress(OSError):
                os.close(self.fd)
