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
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from lxcloud.core.errors import InvalidInput
from lxcloud.core.ipam import NetworkPlan
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.drivers.network.bridge import BridgeDriver
from lxcloud.drivers.network.firewall import Firewall, chain_names
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
from tests.subnets import free_subnet

pytestmark = pytest.mark.root

SERVER = r"""
import socket, sys, threading
who, port = sys.argv[1], int(sys.argv[2])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port)); t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
def udp():
    while True:
        data, peer = u.recvfrom(100)
        u.sendto(f"{who} {peer[0]}".encode(), peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, peer = t.accept()
    c.sendall(f"{who} {peer[0]}".encode()); c.close()
"""

CLIENT = r"""
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    if proto == "tcp":
        c = socket.create_connection((host, port), timeout=1.5)
        print(c.recv(100).decode())
    else:
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(1.5)
        c.sendto(b"x", (host, port)); print(c.recv(100).decode())
except OSError as e:
    print(f"error {e}")
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def addresses(ifname: str, ns: str | None = None) -> list[str]:
    pre = ["ip", "netns", "exec", ns] if ns else []
    out = json.loads(sh(*pre, "ip", "-j", "addr", "show", "dev", ifname).stdout)[0]
    return sorted(f"{a['local']}/{a['prefixlen']}" for a in out["addr_info"] if a["family"] == "inet")


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
    instance_ns: str
    instance_ip: str
    outside_ns: str
    outside_ip: str
    public_if: str              # the host's "public interface"
    host_ip: str                # its own address
    pool: AddressPool
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def table(self) -> str:
        return self.spec.nft_table

    def public(self, n: int) -> str:
        return str(ipaddress.IPv4Address(self.pool.first) + n)

    def serve(self, ns: str, who: str, port: int) -> None:
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, who,
                              str(port)], stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    def ask(self, ns: str | None, host: str, port: int, proto: str = "tcp") -> str:
        """What the server at host:port answers from namespace ns (None: the host itself)."""
        pre = ["ip", "netns", "exec", ns] if ns else []
        return sh(*pre, sys.executable, "-c", CLIENT, host, str(port), proto).stdout.strip()

    def ping(self, ns: str, ip: str) -> bool:
        return sh("ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "1", ip,
                  check=False).returncode == 0


@pytest.fixture
def lab() -> Iterator[Lab]:
    tag = secrets.token_hex(3)
    cidr = free_subnet()
    plan = NetworkPlan.from_cidr(cidr)
    spec = NetworkSpec(name=f"net-{tag}", bridge=f"lxtpb{tag}", cidr=cidr, gateway=plan.gateway,
                       nft_table=f"lxtest_pub{tag}")
    pub = NetworkPlan.from_cidr(free_subnet())
    pub_net = ipaddress.IPv4Network(pub.cidr)
    inst_ns, out_ns = f"lxtpi{tag}", f"lxtpo{tag}"
    inst_v, pub_if = f"lxtpv{tag}", f"lxtpu{tag}"
    lab = Lab(spec=spec, instance_ns=inst_ns, instance_ip=str(ipaddress.IPv4Address(plan.first) + 9),
              outside_ns=out_ns, outside_ip=str(pub_net.network_address + 254), public_if=pub_if,
              host_ip=pub.gateway,
              pool=AddressPool(pub_if, str(pub_net.network_address + 100),
                               str(pub_net.network_address + 110)))
    bridge = BridgeDriver()
    try:
        bridge.ensure(spec)
        # the instance: a namespace on the bridge, default route via the gateway
        sh("ip", "netns", "add", inst_ns)
        sh("ip", "link", "add", inst_v, "type", "veth", "peer", "name", "eth0", "netns", inst_ns)
        sh("ip", "link", "set", inst_v, "master", spec.bridge, "up")
        ix = ["ip", "netns", "exec", inst_ns]
        sh(*ix, "ip", "link", "set", "lo", "up")
        sh(*ix, "ip", "addr", "add", f"{lab.instance_ip}/{plan.prefix}", "dev", "eth0")
        sh(*ix, "ip", "link", "set", "eth0", "up")
        sh(*ix, "ip", "route", "add", "default", "via", spec.gateway)
        # the outside world: on the far end of the "public interface", no route to the subnet
        sh("ip", "netns", "add", out_ns)
        sh("ip", "link", "add", pub_if, "type", "veth", "peer", "name", "eth0", "netns", out_ns)
        sh("ip", "addr", "add", f"{lab.host_ip}/{pub.prefix}", "dev", pub_if)
        sh("ip", "link", "set", pub_if, "up")
        ox = ["ip", "netns", "exec", out_ns]
        sh(*ox, "ip", "link", "set", "lo", "up")
        sh(*ox, "ip", "addr", "add", f"{lab.outside_ip}/{pub.prefix}", "dev", "eth0")
        sh(*ox, "ip", "link", "set", "eth0", "up")
        lab.serve(inst_ns, "instance", 7000)
        lab.serve(out_ns, "outside", 7001)
        yield lab
    finally:
        for p in lab.procs:
            p.kill()
            p.wait()
        sh("ip", "netns", "del", inst_ns, check=False)
        sh("ip", "netns", "del", out_ns, check=False)
        sh("ip", "link", "del", inst_v, check=False)
        sh("ip", "link", "del", pub_if, check=False)
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

