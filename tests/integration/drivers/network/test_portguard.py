"""Address anti-spoofing on a real bridge: a port may only send from the address it was given.
"Instances" are network namespaces whose veth ports carry the cloud's prefix."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lxcloud.drivers.network.portguard import PortGuard
from tests.integration.drivers.network.netlab import bridged_namespaces, sh


@dataclass
class Lab:
    bridge: str
    table: str
    prefix: str
    net: str            # "10.250.N"
    ns: list[str]
    ports: list[str]

    def ping_gw(self, i: int) -> bool:
        return sh("ip", "netns", "exec", self.ns[i], "busybox", "ping", "-c1", "-W1",
                  f"{self.net}.1", check=False).returncode == 0

    def readdress(self, i: int, host: int) -> None:
        sh("ip", "netns", "exec", self.ns[i], "ip", "addr", "flush", "dev", "eth0")
        sh("ip", "netns", "exec", self.ns[i], "ip", "addr", "add", f"{self.net}.{host}/24",
           "dev", "eth0")


@pytest.fixture
def lab() -> Iterator[Lab]:
    tag = f"{random.randrange(16**4):04x}"
    from tests.subnets import free_subnet

    net = free_subnet().rsplit(".", 1)[0]
    lab = Lab(bridge=f"pgbr{tag}", table=f"pgtest_{tag}", prefix=f"lx{tag}", net=net,
              ns=[f"pgns{tag}a", f"pgns{tag}b"], ports=[f"lx{tag}aa0", f"lx{tag}bb0"])
    with bridged_namespaces(lab.bridge, net, lab.ns, lab.ports):
        try:
            yield lab
        finally:
            PortGuard().remove(lab.table)


def test_a_port_sends_only_from_its_own_address(lab: Lab) -> None:
    guard = PortGuard()
    # without the guard, taking the neighbour's address works (the test can fail)
    lab.readdress(0, 11)
    sh("ip", "link", "set", lab.ports[1], "down")
    assert lab.ping_gw(0), "spoofing should work without the guard"
    sh("ip", "link", "set", lab.ports[1], "up")
    lab.readdress(0, 10)
    guard.ensure(lab.table, lab.prefix)
    guard.allow(lab.table, lab.ports[0], f"{lab.net}.10")
    guard.allow(lab.table, lab.ports[1], f"{lab.net}.11")
    assert lab.ping_gw(0) and lab.ping_gw(1)
    assert sorted(guard.elements(lab.table)) == sorted(
        [(lab.ports[0], f"{lab.net}.10"), (lab.ports[1], f"{lab.net}.11")])
    # a takes b's address: its packets and ARP are dropped at the bridge
    sh("ip", "neigh", "flush", "dev", lab.bridge)
    lab.readdress(0, 11)
    assert not lab.ping_gw(0)
    # and an address nobody has is no better
    lab.readdress(0, 99)
    assert not lab.ping_gw(0)
    lab.readdress(0, 10)
    assert lab.ping_gw(0)
    # forgetting a port shuts it; sync sets exactly what is given; re-ensuring keeps the set
    guard.forget(lab.table, [lab.ports[1]])
    sh("ip", "neigh", "flush", "dev", lab.bridge)
    assert not lab.ping_gw(1)
    guard.ensure(lab.table, lab.prefix)
    assert guard.elements(lab.table) == [(lab.ports[0], f"{lab.net}.10")]
    guard.sync(lab.table, {lab.ports[1]: f"{lab.net}.11"})
    assert lab.ping_gw(1) and not lab.ping_gw(0)


def test_other_ports_on_the_bridge_are_not_matched(lab: Lab) -> None:
    guard = PortGuard()
    guard.ensure(lab.table, "lxzzzz")      # another cloud's prefix: these ports aren't its own
    assert lab.ping_gw(0) and lab.ping_gw(1)
    guard.remove(lab.table)
    guard.remove(lab.table)                 # removing twice is fine
    assert guard.elements(lab.table) == []
