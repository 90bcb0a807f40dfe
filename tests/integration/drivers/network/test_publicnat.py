"""Public addresses and port forwards (publicnat.py) with real traffic.

The lab: a cloud network (a bridge made by the bridge driver, with its masquerade) and a network
namespace on it standing in for an instance; a veth pair standing in for the host's public
interface, its far end in a namespace that is the outside world (which has no route to the
private subnet: replies only come back through NAT). A small TCP/UDP server answers each
connection with "<who> <peer address>", so a test sees both who it reached and as whom.
Everything (namespaces, links, the table) is removed at the end, even on failure.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from lxcloud.core.errors import DriverError, InvalidInput
from lxcloud.core.ipam import NetworkPlan
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.drivers.network.bridge import BridgeDriver
from lxcloud.drivers.network.firewall import Firewall, chain_names
from lxcloud.drivers.network.nft import Json, Nft
from lxcloud.drivers.network.publicnat import (
    CHAINS,
    MAPS,
    AddressPool,
    Association,
    PortForward,
    PublicNat,
    PublicNatDriver,
    base,
)
from tests.integration.outside import Outside, addresses, outside_world, sh
from tests.subnets import free_subnet
from tests.waiting import wait_for

pytestmark = pytest.mark.root


def table_content(name: str) -> list[dict] | None:
    cp = sh("nft", "-j", "list", "table", "inet", name, check=False)
    if cp.returncode != 0:
        return None
    return [o for o in json.loads(cp.stdout)["nftables"] if "metainfo" not in o]


def names_in(name: str) -> tuple[set[str], set[str]]:
    """(chains, maps and sets) of the table."""
    content = table_content(name) or []
    return ({o["chain"]["name"] for o in content if "chain" in o},
            {o[k]["name"] for o in content for k in ("map", "set") if k in o})


def rules(name: str) -> list[tuple[str, str]]:
    return sorted((o["rule"]["chain"], json.dumps(o["rule"]["expr"], sort_keys=True))
                  for o in table_content(name) or [] if "rule" in o)


@dataclass
class Lab:
    spec: NetworkSpec           # the cloud's network (its table is the cloud's table)
    world: Outside
    instance_ns: str
    instance_ip: str
    pool: AddressPool

    @property
    def table(self) -> str:
        return self.spec.nft_table

    @property
    def outside_ns(self) -> str:
        return self.world.ns

    @property
    def outside_ip(self) -> str:
        return self.world.ip

    @property
    def public_if(self) -> str:
        return self.world.interface

    @property
    def host_ip(self) -> str:
        return self.world.host_ip

    def public(self, n: int) -> str:
        return self.world.public(n)

    def ask(self, ns: str | None, host: str, port: int, proto: str = "tcp") -> str:
        """What host:port answers from namespace ns (None: the host itself)."""
        return self.world.ask(host, port, proto, ns=ns)

    def ping(self, ns: str, ip: str) -> bool:
        return self.world.ping(ip, ns=ns)


@pytest.fixture
def lab() -> Iterator[Lab]:
    tag = secrets.token_hex(3)
    cidr = free_subnet()
    plan = NetworkPlan.from_cidr(cidr)
    spec = NetworkSpec(name=f"net-{tag}", bridge=f"lxtpb{tag}", cidr=cidr, gateway=plan.gateway,
                       nft_table=f"lxtest_pub{tag}")
    inst_ns, inst_v = f"lxtpi{tag}", f"lxtpv{tag}"
    bridge = BridgeDriver()
    try:
        with outside_world() as world:
            lab = Lab(spec=spec, world=world, instance_ns=inst_ns,
                      instance_ip=str(ipaddress.IPv4Address(plan.first) + 9),
                      pool=AddressPool(world.interface, world.public(0), world.public(10)))
            bridge.ensure(spec)
            # the instance: a namespace on the bridge, default route via the gateway
            sh("ip", "netns", "add", inst_ns)
            sh("ip", "link", "add", inst_v, "type", "veth", "peer", "name", "eth0", "netns",
               inst_ns)
            sh("ip", "link", "set", inst_v, "master", spec.bridge, "up")
            ix = ["ip", "netns", "exec", inst_ns]
            sh(*ix, "ip", "link", "set", "lo", "up")
            sh(*ix, "ip", "addr", "add", f"{lab.instance_ip}/{plan.prefix}", "dev", "eth0")
            sh(*ix, "ip", "link", "set", "eth0", "up")
            sh(*ix, "ip", "route", "add", "default", "via", spec.gateway)
            world.serve(inst_ns, "instance", 7000)
            yield lab
    finally:
        sh("ip", "netns", "del", inst_ns, check=False)
        sh("ip", "link", "del", inst_v, check=False)
        bridge.teardown(spec)
        bridge.close()
        sh("nft", "delete", "table", "inet", spec.nft_table, check=False)


@pytest.fixture
def nat() -> Iterator[PublicNatDriver]:
    d = PublicNatDriver()
    yield d
    d.close()


def test_an_associated_address_reaches_the_instance_and_is_its_source(
        lab: Lab, nat: PublicNatDriver) -> None:
    # Before: the instance goes out masqueraded behind the host's address; its subnet is unknown
    # outside.
    assert lab.ask(lab.instance_ns, lab.outside_ip, 7001) == f"outside {lab.host_ip}"
    pub = lab.public(3)
    assert lab.ask(lab.outside_ns, pub, 7000).startswith("error")

    a = Association(pub, lab.instance_ip, lab.public_if)
    nat.associate(lab.table, a)
    nat.associate(lab.table, a)     # idempotent
    assert f"{pub}/32" in addresses(lab.public_if)
    # outside -> public address: the instance answers, and sees the real client
    assert lab.ask(lab.outside_ns, pub, 7000) == f"instance {lab.outside_ip}"
    assert lab.ask(lab.outside_ns, pub, 7000, "udp") == f"instance {lab.outside_ip}"
    assert lab.ping(lab.outside_ns, pub)
    # instance -> outside: it appears from its public address (SNAT wins over the masquerade)
    assert lab.ask(lab.instance_ns, lab.outside_ip, 7001) == f"outside {pub}"
    assert lab.ask(lab.instance_ns, lab.outside_ip, 7001, "udp") == f"outside {pub}"
    # the host itself reaches the instance through the public address too (output chain)
    assert lab.ask(None, pub, 7000).startswith("instance ")
    assert nat.state(lab.table).associations == (a,)

    nat.disassociate(lab.table, a)
    assert f"{pub}/32" not in addresses(lab.public_if)
    assert lab.ask(lab.outside_ns, pub, 7000).startswith("error")
    assert lab.ask(lab.instance_ns, lab.outside_ip, 7001) == f"outside {lab.host_ip}"
    assert nat.state(lab.table).associations == ()
    nat.disassociate(lab.table, a)  # missing: no-op


def test_reassociation_moves_the_address(lab: Lab, nat: PublicNatDriver) -> None:
    pub, pub2 = lab.public(1), lab.public(2)
    nat.associate(lab.table, Association(pub, "10.250.255.7", lab.public_if))
    # the same public address given to the lab's instance: the old mapping goes
    nat.associate(lab.table, Association(pub, lab.instance_ip, lab.public_if))
    assert lab.ask(lab.outside_ns, pub, 7000) == f"instance {lab.outside_ip}"
    # another public address for the same instance replaces the first one (one per interface)
    nat.associate(lab.table, Association(pub2, lab.instance_ip, lab.public_if))
    assert nat.state(lab.table).associations == (Association(pub2, lab.instance_ip,
                                                             lab.public_if),)
    assert f"{pub}/32" not in addresses(lab.public_if)
    assert lab.ask(lab.instance_ns, lab.outside_ip, 7001) == f"outside {pub2}"


def test_port_forwards_on_a_pool_address_and_on_the_host_address(
        lab: Lab, nat: PublicNatDriver) -> None:
    pub = lab.public(5)
    web = PortForward(pub, "tcp", 8080, lab.instance_ip, 7000, interface=lab.public_if)
    dns = PortForward(pub, "udp", 5353, lab.instance_ip, 7000, interface=lab.public_if)
    ssh = PortForward(lab.host_ip, "tcp", 2222, lab.instance_ip, 7000)
    for f in (web, dns, ssh):
        nat.add_forward(lab.table, f)
    nat.add_forward(lab.table, web)  # idempotent
    assert f"{pub}/32" in addresses(lab.public_if)
    assert lab.ask(lab.outside_ns, pub, 8080) == f"instance {lab.outside_ip}"
    assert lab.ask(lab.outside_ns, pub, 5353, "udp") == f"instance {lab.outside_ip}"
    assert lab.ask(lab.outside_ns, lab.host_ip, 2222) == f"instance {lab.outside_ip}"
    # only the forwarded port and protocol: the rest of the address is not the instance's
    assert lab.ask(lab.outside_ns, pub, 7000).startswith("error")
    assert lab.ask(lab.outside_ns, pub, 8080, "udp").startswith("error")
    # a forward replaced: the same public port now goes to another target port
    nat.add_forward(lab.table, PortForward(pub, "tcp", 8080, lab.instance_ip, 7999,
                                           interface=lab.public_if))
    assert lab.ask(lab.outside_ns, pub, 8080).startswith("error")
    nat.add_forward(lab.table, web)
    assert lab.ask(lab.outside_ns, pub, 8080) == f"instance {lab.outside_ip}"

    nat.remove_forward(lab.table, web)
    assert lab.ask(lab.outside_ns, pub, 8080).startswith("error")
    assert f"{pub}/32" in addresses(lab.public_if)     # the UDP forward still uses it
    nat.remove_forward(lab.table, dns)
    nat.remove_forward(lab.table, ssh)
    nat.remove_forward(lab.table, ssh)   # missing: no-op
    assert addresses(lab.public_if) == [f"{lab.host_ip}/24"]   # the host's own is kept
    assert lab.ask(lab.outside_ns, lab.host_ip, 2222).startswith("error")
    assert nat.state(lab.table).forwards == ()


def test_an_associated_address_with_a_forward_keeps_both(lab: Lab, nat: PublicNatDriver) -> None:
    pub = lab.public(6)
    a = Association(pub, lab.instance_ip, lab.public_if)
    f = PortForward(pub, "tcp", 80, lab.instance_ip, 7000, interface=lab.public_if)
    nat.associate(lab.table, a)
    nat.add_forward(lab.table, f)
    nat.disassociate(lab.table, a)
    assert f"{pub}/32" in addresses(lab.public_if)   # the forward still needs it
    assert lab.ask(lab.outside_ns, pub, 80) == f"instance {lab.outside_ip}"
    assert lab.ask(lab.outside_ns, pub, 7000).startswith("error")
    nat.remove_forward(lab.table, f)
    assert f"{pub}/32" not in addresses(lab.public_if)


def test_sync_is_exact_idempotent_and_teardown_leaves_the_network_alone(
        lab: Lab, nat: PublicNatDriver) -> None:
    net_rules = [r for r in rules(lab.table) if r[0] in chain_names(lab.spec.bridge).values()]
    stray, foreign = lab.public(9), str(ipaddress.IPv4Address(lab.pool.last) + 1)
    sh("ip", "addr", "add", f"{stray}/32", "dev", lab.public_if)     # in the pool, unused
    sh("ip", "addr", "add", f"{foreign}/32", "dev", lab.public_if)   # not the pool's
    a1 = Association(lab.public(1), lab.instance_ip, lab.public_if)
    a2 = Association(lab.public(2), "10.250.255.8", lab.public_if)
    f1 = PortForward(lab.public(3), "tcp", 80, lab.instance_ip, 7000, interface=lab.public_if)
    full = PublicNat(lab.table, (lab.pool,), (a1, a2), (f1,))
    nat.sync(full)
    assert addresses(lab.public_if) == sorted(
        [f"{lab.host_ip}/24", f"{foreign}/32"] + [f"{lab.public(i)}/32" for i in (1, 2, 3)])
    assert nat.held_addresses(lab.pool) == [lab.public(i) for i in (1, 2, 3)]
    got = nat.state(lab.table)
    assert got.associations == (a1, a2)
    assert got.forwards == (PortForward(lab.public(3), "tcp", 80, lab.instance_ip, 7000),)
    before = rules(lab.table)
    nat.sync(full)
    assert rules(lab.table) == before       # no duplicates
    assert lab.ask(lab.outside_ns, lab.public(1), 7000) == f"instance {lab.outside_ip}"
    assert lab.ask(lab.outside_ns, lab.public(3), 80) == f"instance {lab.outside_ip}"

    nat.sync(PublicNat(lab.table, (lab.pool,), (a1,), ()))
    assert nat.held_addresses(lab.pool) == [lab.public(1)]
    assert nat.state(lab.table).forwards == ()
    assert lab.ask(lab.outside_ns, lab.public(3), 80).startswith("error")
    assert lab.ask(lab.outside_ns, lab.public(1), 7000) == f"instance {lab.outside_ip}"

    nat.teardown(lab.table, [lab.pool])
    chains, sets = names_in(lab.table)
    assert not chains & set(CHAINS) and not sets & set(MAPS)
    assert sorted(rules(lab.table)) == sorted(net_rules)   # the network's rules untouched
    assert addresses(lab.public_if) == sorted([f"{lab.host_ip}/24", f"{foreign}/32"])
    assert lab.ask(lab.instance_ns, lab.outside_ip, 7001) == f"outside {lab.host_ip}"
    nat.teardown(lab.table, [lab.pool])     # missing: no-op
    # alone in a table, the table goes with them
    nat.sync(PublicNat(lab.table, (lab.pool,), (a1,), ()))
    Firewall().remove_network(lab.spec)
    assert set(names_in(lab.table)[0]) == set(CHAINS)
    nat.teardown(lab.table, [lab.pool])
    assert table_content(lab.table) is None


def test_bad_input_is_refused_before_the_host_is_touched(lab: Lab, nat: PublicNatDriver) -> None:
    cases: list[Callable[[], None]] = [
        lambda: nat.associate(lab.table, Association("300.1.1.1", lab.instance_ip, lab.public_if)),
        lambda: nat.associate(lab.table, Association(lab.public(1), lab.instance_ip, "nope0x9")),
        lambda: nat.add_forward(lab.table, PortForward(lab.public(1), "sctp", 80,
                                                       lab.instance_ip, 80)),
        lambda: nat.add_forward(lab.table, PortForward(lab.public(1), "tcp", 0,
                                                       lab.instance_ip, 80)),
        lambda: nat.add_forward(lab.table, PortForward(lab.public(1), "tcp", 80,
                                                       lab.instance_ip, 70000)),
        lambda: nat.sync(PublicNat(lab.table, (AddressPool(lab.public_if, lab.pool.last,
                                                           lab.pool.first),))),
        lambda: nat.sync(PublicNat(lab.table, (), (
            Association(lab.public(1), lab.instance_ip, lab.public_if),
            Association(lab.public(1), "10.250.255.9", lab.public_if)))),
    ]
    before = table_content(lab.table)
    for case in cases:
        with pytest.raises(InvalidInput):
            case()
    assert table_content(lab.table) == before
    assert addresses(lab.public_if) == [f"{lab.host_ip}/24"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # Debian's schema names an old draft
def test_rules_match_schema() -> None:
    pytest.importorskip("jsonschema")
    from lxcloud.drivers.network.nft import NFT

    assert NFT.validate(base("lxtest_schema"))



def test_a_neighbour_reaches_a_public_address_on_its_own_bridge(lab: Lab) -> None:
    """Hairpin: a neighbour's connection to the public address is masqueraded behind the
    gateway, or the instance would answer it straight from its private address (where
    br_netfilter passes bridged frames through conntrack that happens to work anyway; elsewhere
    the masquerade is what makes it work)."""
    nat = PublicNatDriver(bridge_prefix="lxtpb")
    tag = secrets.token_hex(3)
    ns, veth = f"lxtpn{tag}", f"lxtpw{tag}"
    plan = NetworkPlan.from_cidr(lab.spec.cidr)
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", veth, "master", lab.spec.bridge, "up")
        nx = ["ip", "netns", "exec", ns]
        sh(*nx, "ip", "addr", "add", f"{ipaddress.IPv4Address(plan.first) + 20}/{plan.prefix}",
           "dev", "eth0")
        sh(*nx, "ip", "link", "set", "eth0", "up")
        sh(*nx, "ip", "route", "add", "default", "via", lab.spec.gateway)
        pub = lab.public(7)
        nat.associate(lab.table, Association(pub, lab.instance_ip, lab.public_if))
        assert lab.ask(ns, pub, 7000) == f"instance {lab.spec.gateway}"
        assert lab.ask(lab.outside_ns, pub, 7000) == f"instance {lab.outside_ip}"  # not masqueraded
        nat.disassociate(lab.table, Association(pub, lab.instance_ip, lab.public_if))
    finally:
        nat.close()
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", veth, check=False)


class FailingNft(Nft):
    """libnftables refusing every change (listing still works)."""

    def run(self, cmds: list[Json], what: str, *, missing_ok: bool = False) -> Json | None:
        if cmds and "list" in cmds[0]:
            return super().run(cmds, what, missing_ok=missing_ok)
        raise DriverError(f"nftables: {what} failed (rc 1)")


def test_a_failed_change_leaves_no_address_behind(lab: Lab) -> None:
    nat = PublicNatDriver(FailingNft())
    pub = lab.public(8)
    try:
        with pytest.raises(DriverError):
            nat.associate(lab.table, Association(pub, lab.instance_ip, lab.public_if))
        with pytest.raises(DriverError):
            nat.add_forward(lab.table, PortForward(pub, "tcp", 80, lab.instance_ip, 7000,
                                                   interface=lab.public_if))
        assert addresses(lab.public_if) == [f"{lab.host_ip}/24"]
    finally:
        nat.close()


def test_an_address_is_announced_where_it_lands(lab: Lab, nat: PublicNatDriver) -> None:
    """A neighbour that knew the address under another MAC (where it was before) learns the new
    one from the gratuitous ARP, without asking."""
    pub = lab.public(9)
    ox = ["ip", "netns", "exec", lab.outside_ns]
    sh(*ox, "ip", "neigh", "replace", pub, "lladdr", "02:00:00:00:00:01", "dev", "eth0",
       "nud", "stale")
    mac = json.loads(sh("ip", "-j", "link", "show", lab.public_if).stdout)[0]["address"]

    def known() -> str | None:
        out = json.loads(sh(*ox, "ip", "-j", "neigh", "show", pub).stdout or "[]")
        return out[0].get("lladdr") if out else None

    assert known() == "02:00:00:00:00:01"
    nat.associate(lab.table, Association(pub, lab.instance_ip, lab.public_if))
    wait_for(lambda: known() == mac, 5, "the outside's neighbour entry to follow the address")
    nat.disassociate(lab.table, Association(pub, lab.instance_ip, lab.public_if))
