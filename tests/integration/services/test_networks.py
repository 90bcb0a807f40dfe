"""Networks through the whole stack in-process, with real packets: several networks per cloud,
DNS by name in a network's own domain, DHCP handing out the database's address, isolation between
networks and between two clouds on one host, isolated and routed modes seen from a namespace
outside, and the host reached only for DHCP, DNS and metadata unless a network allows more."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from lxcloud.core.caller import SYSTEM
from lxcloud.core.errors import Conflict
from lxcloud.core.ipam import NetworkPlan
from lxcloud.services.cloud import Cloud
from lxcloud.services.instances import LaunchRequest, NicRequest
from lxcloud.services.networks import NetworkRequest, NetworkUpdate
from lxcloud.services.security_groups import RuleSpec
from tests.integration.services.stack import Stack, ok, running_stack, sh, wait
from tests.subnets import free_subnet
from tests.waiting import wait_for

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("lxcloud-networks-") as st:
        yield st


@pytest.fixture(scope="module")
def cloud(stack: Stack) -> Cloud:
    return stack.cloud


def launch(cloud: Cloud, name: str, *nics: NicRequest) -> str:
    [(inst, op)] = cloud.instances.launch(LaunchRequest(image="busybox", name=name, memory="64MiB",
                                                        nics=tuple(nics)))
    assert op is not None
    wait(cloud, op.id)
    return inst.id


def ip_of(cloud: Cloud, name: str, nic: int = 0) -> str:
    addr = cloud.instances.get(name).nics[nic].ipv4
    assert addr
    return addr


def pings(cloud: Cloud, name: str, ip: str) -> bool:
    return sh(cloud, name, f"ping -c 1 -W 1 {ip}")[0] == 0


def reaches_tcp(cloud: Cloud, name: str, ip: str, port: int) -> bool:
    code, out = sh(cloud, name, f"echo hi | timeout 3 nc {ip} {port}")
    return code == 0 and "hello" in out


@pytest.fixture(scope="module")
def nets(cloud: Cloud) -> dict[str, str]:
    """Two networks of the default project and their instances: a (nat, domain a.test: a1, a2),
    b (isolated: b1); d1 on the default network."""
    cloud.networks.create(SYSTEM, NetworkRequest(name="a", subnet=free_subnet(),
                                                 dns_domain="a.test"))
    cloud.networks.create(SYSTEM, NetworkRequest(name="b", subnet=free_subnet(),
                                                 mode="isolated"))
    ids = {n: launch(cloud, n, NicRequest(net)) for n, net in
           (("a1", "a"), ("a2", "a"), ("b1", "b"), ("d1", None))}
    return ids


def test_instances_resolve_each_other_by_name_in_their_networks_domain(
        cloud: Cloud, nets: dict[str, str]) -> None:
    a2 = ip_of(cloud, "a2")
    assert "search a.test" in ok(cloud, "a1", "cat /etc/resolv.conf")
    for name in ("a2.a.test", "a2"):
        out = wait_for(lambda n=name: (lambda o: o if a2 in o else None)(  # type: ignore[misc]
            sh(cloud, "a1", f"nslookup {n}")[1]), 20, f"{name} resolving")
        assert a2 in out
    # a name of another network is not in this network's DNS
    code, out = sh(cloud, "a1", "nslookup d1.a.test")
    assert ip_of(cloud, "d1") not in out


def test_dhcp_offers_the_address_the_database_allocated(cloud: Cloud, nets: dict[str, str]) -> None:
    script = "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip $subnet $router\" > /tmp/lease\nexit 0\n"
    ok(cloud, "a2", f"printf '%s' '{script}' > /tmp/s && chmod +x /tmp/s")
    # ask on the running interface without touching its address (-s: our script only)
    ok(cloud, "a2", "udhcpc -i eth0 -n -q -t 5 -T 1 -s /tmp/s")
    ip, _, router = ok(cloud, "a2", "cat /tmp/lease").split()
    net = cloud.networks.get("a")
    assert ip == ip_of(cloud, "a2") and router == net.gateway


def test_networks_do_not_leak_into_each_other(cloud: Cloud, nets: dict[str, str]) -> None:
    assert pings(cloud, "a1", ip_of(cloud, "a2"))            # same network: yes
    assert not pings(cloud, "a1", ip_of(cloud, "d1"))        # another network: no
    assert not pings(cloud, "d1", ip_of(cloud, "a1"))
    assert not pings(cloud, "a1", ip_of(cloud, "b1"))
    assert not pings(cloud, "b1", ip_of(cloud, "a1"))        # an isolated one: nowhere
    assert not pings(cloud, "b1", ip_of(cloud, "d1"))


def test_a_network_in_use_is_not_deleted(cloud: Cloud, nets: dict[str, str]) -> None:
    with pytest.raises(Conflict, match="in use by b1"):
        cloud.networks.delete(SYSTEM, "b")


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP service on the host bound to 0.0.0.0 (like sshd): answers "hello"."""
    srv = socket.create_server(("0.0.0.0", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello\n")
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield port
    stop.set()
    t.join(5)
    srv.close()


def test_the_host_answers_only_dhcp_dns_and_metadata_unless_allowed(
        cloud: Cloud, nets: dict[str, str], listener: int) -> None:
    net = cloud.networks.get("a")
    # the host's service answers on the loopback (it is there) but not from an instance
    with socket.create_connection(("127.0.0.1", listener), timeout=3) as c:
        assert c.recv(16) == b"hello\n"
    assert not reaches_tcp(cloud, "a1", net.gateway, listener)
    assert not reaches_tcp(cloud, "a1", cloud.networks.get().gateway, listener)  # any host address
    # DNS still answers (the metadata port's own test is tests/integration/api/metadata)
    assert net.gateway in ok(cloud, "a1", f"nslookup a2 {net.gateway}")
    # the operator allows the port on this network: it answers at once
    cloud.networks.update(SYSTEM, "a", NetworkUpdate(host_ports=(f"tcp/{listener}",)))
    assert reaches_tcp(cloud, "a1", net.gateway, listener)
    assert not reaches_tcp(cloud, "d1", cloud.networks.get().gateway, listener)  # not elsewhere
    cloud.networks.update(SYSTEM, "a", NetworkUpdate(host_ports=()))
    assert not reaches_tcp(cloud, "a1", net.gateway, listener)


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def outside() -> Iterator[tuple[str, str, str]]:
    """A namespace routed through the host, standing for the world beyond it:
    (namespace, its address, the host's address towards it)."""
    tag = secrets.token_hex(3)
    ns, outer, inner = f"lxo{tag}", f"lxov{tag}", f"lxoi{tag}"
    plan = NetworkPlan.from_cidr(free_subnet())
    try:
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        _sh("ip", "link", "set", inner, "netns", ns)
        _sh("ip", "addr", "add", f"{plan.gateway}/{plan.prefix}", "dev", outer)
        _sh("ip", "link", "set", outer, "up")
        for cmd in (("ip", "link", "set", "lo", "up"), ("ip", "link", "set", inner, "up"),
                    ("ip", "addr", "add", f"{plan.first}/{plan.prefix}", "dev", inner),
                    ("ip", "route", "add", "default", "via", plan.gateway)):
            _sh("ip", "netns", "exec", ns, *cmd)
        yield ns, plan.first, plan.gateway
    finally:
        _sh("ip", "netns", "del", ns, check=False)
        _sh("ip", "link", "del", outer, check=False)


def test_nat_routed_and_isolated_seen_from_outside(
        cloud: Cloud, nets: dict[str, str], outside: tuple[str, str, str]) -> None:
    ns, out_ip, _ = outside
    cloud.networks.create(SYSTEM, NetworkRequest(name="r", subnet=free_subnet(), mode="routed"))
    # the world may ping the routed instance (its security groups say what enters; the network
    # says whether anything from outside may at all)
    cloud.security_groups.create("pingable", SYSTEM)   # internal callers act for the default project
    cloud.security_groups.add_rules("pingable", [RuleSpec("ingress", "icmp", -1, -1,
                                                          cidr="0.0.0.0/0")], SYSTEM)
    for name in ("a1", "b1"):
        cloud.security_groups.set_instance_groups(name, ["default", "pingable"], SYSTEM)
    [(_, op)] = cloud.instances.launch(LaunchRequest(
        image="busybox", name="r1", memory="64MiB", nics=(NicRequest("r"),),
        security_groups=("default", "pingable")))
    assert op is not None
    wait(cloud, op.id)

    def outside_pings(ip: str) -> bool:
        return _sh("ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "1", ip,
                   check=False).returncode == 0

    # out: a NAT network leaves with the host's address, a routed one with its own, an isolated
    # one not at all. (tcpdump-free: the outside answers a ping back to whoever it saw)
    assert pings(cloud, "a1", out_ip) and pings(cloud, "r1", out_ip)
    assert not pings(cloud, "b1", out_ip)
    # in: only the routed network is reachable from outside
    assert outside_pings(ip_of(cloud, "r1"))
    assert not outside_pings(ip_of(cloud, "a1"))
    assert not outside_pings(ip_of(cloud, "b1"))
    # who the outside sees: a listener in the namespace prints the peer's address
    seen = _seen_from_outside(cloud, ns, out_ip, "r1")
    assert seen == ip_of(cloud, "r1")
    assert _seen_from_outside(cloud, ns, out_ip, "a1") != ip_of(cloud, "a1")


def _seen_from_outside(cloud: Cloud, ns: str, out_ip: str, name: str) -> str:
    port = 20000 + secrets.randbelow(20000)
    p = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c",
                          f"import socket\ns=socket.create_server(('0.0.0.0',{port}))\n"
                          "print('ready',flush=True)\nc,a=s.accept()\nprint(a[0],flush=True)"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        sh(cloud, name, f"echo x | timeout 3 nc {out_ip} {port}")
        return p.stdout.readline().strip()
    finally:
        p.kill()
        p.wait(5)


def test_a_namespace_made_while_an_instance_runs_does_not_keep_its_root_busy(
        cloud: Cloud, nets: dict[str, str]) -> None:
    """`ip netns exec` copies every mount of the host (private ones stay pinned there)."""
    iid = launch(cloud, "pinned")
    tag = secrets.token_hex(3)
    _sh("ip", "netns", "add", f"lxpin{tag}")
    p = subprocess.Popen(["ip", "netns", "exec", f"lxpin{tag}", "sleep", "600"])
    try:
        wait(cloud, cloud.instances.delete(iid, force=True).id)
    finally:
        p.kill()
        p.wait(5)
        _sh("ip", "netns", "del", f"lxpin{tag}", check=False)


def test_another_cloud_on_the_host_cannot_reach_this_one(cloud: Cloud,
                                                         nets: dict[str, str]) -> None:
    with running_stack("lxcloud-networks2-") as other:
        launch(other.cloud, "x1")
        assert pings(other.cloud, "x1", other.cloud.networks.get().gateway)  # its own host side
        for name in ("d1", "a1"):
            assert not pings(other.cloud, "x1", ip_of(cloud, name))
        assert not pings(cloud, "d1", ip_of(other.cloud, "x1"))


def test_a_network_is_deleted_with_its_host_side(cloud: Cloud, nets: dict[str, str]) -> None:
    net = cloud.networks.create(SYSTEM, NetworkRequest(name="gone", subnet=free_subnet()))
    iid = launch(cloud, "g1", NicRequest("gone"))
    wait(cloud, cloud.instances.delete(iid, force=True).id)
    cloud.networks.delete(SYSTEM, "gone")
    assert not _sh("ip", "link", "show", net.bridge, check=False).returncode == 0
    rules = _sh("nft", "list", "table", "inet", cloud.settings.nft_table).stdout
    assert net.bridge not in rules
    assert not re.search(rf"dnsmasq.*{net.bridge}", _sh("ps", "axww", "-o", "args").stdout)


def test_networks_names_and_isolation_survive_a_controller_restart(
        stack: Stack, nets: dict[str, str]) -> None:
    before = {n: stack.cloud.instances.get(n).nics for n in ("a1", "a2", "b1")}
    cloud = stack.restart_controller()
    assert {n: cloud.instances.get(n).nics for n in before} == before   # addresses and MACs kept
    a2 = ip_of(cloud, "a2")
    assert a2 in wait_for(lambda: (lambda o: o if a2 in o else None)(
        sh(cloud, "a1", "nslookup a2.a.test")[1]), 20, "a2 resolving after the restart")
    assert pings(cloud, "a1", a2) and not pings(cloud, "a1", ip_of(cloud, "d1"))
    assert not pings(cloud, "b1", ip_of(cloud, "a1"))
