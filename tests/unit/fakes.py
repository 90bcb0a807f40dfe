"""A fake node for unit tests of the services and APIs: the real NodeAgent over the fake drivers
(compute, storage, network), with hooks to make a launch fail or wait, and to change what the
host shows behind the controller's back."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from lxcloud.config import Settings
from lxcloud.core.caps import NetworkCaps, StorageCaps
from lxcloud.core.errors import DriverError, InvalidInput
from lxcloud.core.host import HostState
from lxcloud.core.instance import InstanceSpec
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.compute.fake import FakeDriver
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.drivers.network.fake import FakeNetwork
from lxcloud.drivers.network.publicnat import (
    Association,
    PortForward,
    PublicNat,
    check,
    check_association,
    check_forward,
)
from lxcloud.drivers.storage.base import PoolSpec
from lxcloud.drivers.storage.fake import FakePool
from lxcloud.node.agent import NodeAgent
from lxcloud.node.protocol import Progress, Timings


class FakeDns:
    """The dnsmasq supervisor's contract, in memory."""

    def __init__(self) -> None:
        self.hosts: dict[str, dict[str, str]] = {}

    def ensure(self, spec: NetworkSpec, run_dir: Path) -> int:
        self.hosts.setdefault(str(run_dir), {})
        return 1

    def update_hosts(self, run_dir: Path, entries: dict[str, str],
                     macs: dict[str, str] | None = None) -> None:
        self.hosts[str(run_dir)] = dict(entries)

    def add_hosts(self, run_dir: Path, entries: dict[str, str],
                  macs: dict[str, str] | None = None) -> None:
        self.hosts.setdefault(str(run_dir), {}).update(entries)

    def remove_hosts(self, run_dir: Path, names: list[str]) -> None:
        for n in names:
            self.hosts.get(str(run_dir), {}).pop(n, None)

    def stop(self, run_dir: Path) -> None:
        self.hosts.pop(str(run_dir), None)


class FakePublicNat:
    """publicnat.PublicNatDriver's contract in memory: what each table holds."""

    def __init__(self, interfaces: tuple[str, ...] = ("eth0",)) -> None:
        self.interfaces = set(interfaces)
        self.addresses = ["127.0.0.1", "192.0.2.1"]                # the host's own
        self.associations: dict[str, Association] = {}            # public -> association
        self.forwards: dict[tuple[str, str, int], PortForward] = {}

    def _iface(self, name: str) -> None:
        if name not in self.interfaces:
            raise InvalidInput(f"interface {name!r} does not exist on this host")

    def sync(self, nat: PublicNat) -> None:
        check(nat)
        for a in nat.associations:
            self._iface(a.interface)
        self.associations = {a.address: a for a in nat.associations}
        self.forwards = {f.key: f for f in nat.forwards}

    def associate(self, table: str, a: Association) -> None:
        check_association(a)
        self._iface(a.interface)
        for pub, old in list(self.associations.items()):
            if (old.private_ip, old.interface) == (a.private_ip, a.interface):
                del self.associations[pub]
        self.associations[a.address] = a

    def disassociate(self, table: str, a: Association) -> None:
        if self.associations.get(a.address) == a:
            del self.associations[a.address]

    def add_forward(self, table: str, f: PortForward) -> None:
        check_forward(f)
        self.forwards[f.key] = f

    def remove_forward(self, table: str, f: PortForward) -> None:
        self.forwards.pop(f.key, None)

    def teardown(self, table: str, pools: object = ()) -> None:
        self.associations.clear()
        self.forwards.clear()

    def host_addresses(self) -> list[str]:
        return list(self.addresses)


class FakeNode(NodeAgent):
    name = "local"

    def __init__(self) -> None:
        self.compute = FakeDriver()
        self.pool = FakePool()
        self.network = FakeNetwork()
        self.fake_dns = FakeDns()
        super().__init__(Settings(data_dir=Path("/nonexistent/fake-node")), compute=self.compute,
                         storage={"default": self.pool}, network={"bridge": self.network},
                         dns=self.fake_dns)
        self.public_nat = FakePublicNat()
        self.public = self.public_nat
        self.requests: dict[str, InstanceSpec] = {}
        self.fail_launch: str | None = None
        self.gate: threading.Event | None = None   # when set, launches wait on it
        self.healed = 0
        self.host_routes: list[tuple[str, str]] = []   # (interface, cidr) the fake host has

    # --- the host: nothing to prepare
    def prepare(self) -> None:
        pass

    def heal(self) -> None:
        self.healed += 1

    def facts(self) -> dict[str, object]:
        return {"cpus": 2, "fake": True}

    def network_drivers_add(self, name: str) -> FakeNetwork:
        """A second network driver (no DHCP of ours), e.g. "macvlan"."""
        self.networks[name] = FakeNetwork(NetworkCaps(nat=False, dhcp=False))
        return self.networks[name]  # type: ignore[return-value]

    def host_networks(self, interface: str | None = None) -> list[str]:
        return [n for i, n in self.host_routes if interface is None or i == interface]

    def host_interfaces(self) -> list[str]:
        return sorted({"lo", "eth0", *(i for i, _ in self.host_routes)})

    def _unpack(self, template: Path, dest: Path) -> None:
        pass

    def ensure_pool(self, spec: PoolSpec) -> StorageCaps:
        """Every pool is a fake one (the default one is `self.pool`), whatever its driver."""
        if spec.name not in self.pools:
            self.pools[spec.name] = FakePool(spec)
        return self.pools[spec.name].caps

    def delete_pool(self, name: str) -> None:
        self.pools.pop(name, None)

    # --- hooks
    def launch(self, spec: InstanceSpec, *, start: bool = True,
               progress: Progress | None = None) -> Timings:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_launch:
            raise DriverError(self.fail_launch)
        self.requests[spec.id] = spec
        return super().launch(spec, start=start, progress=progress)

    def redefine(self, spec: InstanceSpec) -> None:
        super().redefine(spec)
        self.requests[spec.id] = spec

    @property
    def hosts(self) -> dict[str, str]:
        """The names the (only) network's DNS answers."""
        return next(iter(self.fake_dns.hosts.values()), {})

    def vanish(self, instance_id: str) -> None:
        """The instance disappears from the host behind the controller's back."""
        self.compute._boxes.pop(instance_id, None)

    def set_state(self, instance_id: str, state: HostState) -> None:
        self.compute._boxes[instance_id].state = state

    def add_unknown(self, instance_id: str, like: str) -> None:
        """A container the database does not know (a copy of `like`'s definition)."""
        box = self.compute._boxes[like]
        spec: Any = box.spec
        self.compute.create(spec.__class__(**{**spec.__dict__, "id": instance_id}),
                            RootfsSpec("dir", Path("/nonexistent")))
