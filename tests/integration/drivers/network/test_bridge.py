"""The bridge network driver, nftables rules and dnsmasq against real kernel objects.

Each test makes its own bridges, tables, namespaces and 10.250.x.0/24 subnets (random, checked unused
on the host) and removes all of them in finalizers, even when it fails.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lxcloud.core.errors import DriverError
from lxcloud.core.ipam import NetworkPlan, mac_for
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.drivers.network.bridge import BridgeDriver
from lxcloud.drivers.network.dns import DnsmasqSupervisor
from lxcloud.drivers.network.firewall import Firewall, chain_names, ruleset
from lxcloud.drivers.network.registry import get_network_driver
from tests.contracts.network import *  # noqa: F403
from tests.subnets import free_subnet
from tests.waiting import wait_for

pytestmark = pytest.mark.root


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def poll(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    return wait_for(cond, timeout, what)


def nft_table(name: str) -> list[dict] | None:
    cp = sh("nft", "-j", "list", "table", "inet", name, check=False)
    if cp.returncode != 0:
        return None
    return [o for o in json.loads(cp.stdout)["nftables"] if "metainfo" not in o]


def rule_exprs(name: str) -> list[tuple[str, str]]:
    """(chain, expr-json) of every rule in the table, handles left out, for exact comparison."""
    return sorted((o["rule"]["chain"], json.dumps(o["rule"]["expr"], sort_keys=True))
                  for o in nft_table(name) or [] if "rule" in o)


def masquerade_sources(name: str) -> list[str]:
    out = []
    for o in nft_table(name) or []:
        r = o.get("rule")
        if r and any("masquerade" in e for e in r["expr"]):
            for e in r["expr"]:
                right = e.get("match", {}).get("right")
                if isinstance(right, dict) and "prefix" in right:
                    out.append(f"{right['prefix']['addr']}/{right['prefix']['len']}")
    return out


def gone(pid: int) -> bool:
    """True when pid has exited (a zombie not yet reaped by PID 1 counts as gone)."""
    try:
        return not Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


@pytest.fixture
def driver() -> Iterator[BridgeDriver]:
    d = BridgeDriver()
    yield d
    d.close()


@pytest.fixture
def network_driver(driver: BridgeDriver) -> BridgeDriver:
    """The network contract's driver (tests/contracts/network.py)."""
    return driver


@pytest.fixture
def make_spec(request: pytest.FixtureRequest) -> Callable[..., NetworkSpec]:
    """A fresh spec (unique bridge, table, subnet); its bridge and table are removed at the end."""

    def make(table: str | None = None, **kw: object) -> NetworkSpec:
        tag = secrets.token_hex(4)
        cidr = free_subnet()
        plan = NetworkPlan.from_cidr(cidr)
        spec = NetworkSpec(name=f"net-{tag}", bridge=f"lxtb{tag}", cidr=cidr, gateway=plan.gateway,
                           nft_table=table or f"lxtest_{tag}", **kw)  # type: ignore[arg-type]

        def cleanup() -> None:
            sh("ip", "link", "del", spec.bridge, check=False)
            sh("nft", "delete", "table", "inet", spec.nft_table, check=False)
        request.addfinalizer(cleanup)
        return spec

    return make


@pytest.fixture
def run_dir(request: pytest.FixtureRequest) -> Callable[[], Path]:
    """Run dirs dnsmasq (running as nobody) can read; any dnsmasq left in one is killed."""

    def make() -> Path:
        d = Path(tempfile.mkdtemp(prefix="lxtest-dns-"))
        d.chmod(0o755)

        def cleanup() -> None:
            DnsmasqSupervisor().stop(d)
            shutil.rmtree(d, ignore_errors=True)
        request.addfinalizer(cleanup)
        return d

    return make


@dataclass
class Host:
    ns: str
    ifname: str   # inside the namespace
    ip: str

    def exec(self, *argv: str, check: bool = False, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], capture_output=True, text=True,
                              check=check, timeout=timeout)

    def ping(self, ip: str) -> bool:
        return self.exec("busybox", "ping", "-c", "1", "-W", "1", ip).returncode == 0


@pytest.fixture
def make_host(request: pytest.FixtureRequest) -> Callable[..., Host]:
    """A network namespace with a veth whose peer is attached to a bridge (or left on the host)."""

    def make(ip: str, prefix: int, bridge: str | None = None, gateway: str | None = None,
             mac: str | None = None, host_ip: str | None = None) -> Host:
        tag = secrets.token_hex(3)
        ns, outer, inner = f"lxtns{tag}", f"lxtv{tag}", f"lxti{tag}"

        def cleanup() -> None:
            sh("ip", "netns", "del", ns, check=False)
            sh("ip", "link", "del", outer, check=False)
        request.addfinalizer(cleanup)
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        sh("ip", "link", "set", inner, "netns", ns)
        if bridge:
            sh("ip", "link", "set", outer, "master", bridge)
        if host_ip:
            sh("ip", "addr", "add", f"{host_ip}/{prefix}", "dev", outer)
        sh("ip", "link", "set", outer, "up")
        h = Host(ns, inner, ip)
        h.exec("ip", "link", "set", "lo", "up", check=True)
        if mac:
            h.exec("ip", "link", "set", inner, "address", mac, check=True)
        h.exec("ip", "addr", "add", f"{ip}/{prefix}", "dev", inner, check=True)
        h.exec("ip", "link", "set", inner, "up", check=True)
        if gateway:
            h.exec("ip", "route", "add", "default", "via", gateway, check=True)
        return h

    return make


def resolve(host: Host, name: str, server: str) -> str | None:
    """The address busybox nslookup gets for name from server, None when it fails."""
    cp = host.exec("busybox", "nslookup", "-type=a", name, server)
    # The server's own line is "Address:\t10.x.y.1:53"; answers carry no port.
    found = re.findall(r"^Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$", cp.stdout, re.M)
    return found[0] if found else None


# --------------------------------------------------------------------------------------------------

def test_registry() -> None:
    d = get_network_driver("bridge")
    assert d.name == "bridge" and d.caps.nat


def test_ensure_creates_bridge_rules_and_is_idempotent(driver: BridgeDriver,
                                                       make_spec: Callable[..., NetworkSpec]) -> None:
    spec = make_spec(mtu=1400)
    assert not driver.exists(spec)
    driver.ensure(spec)
    assert driver.exists(spec)
    out = json.loads(sh("ip", "-j", "-d", "addr", "show", "dev", spec.bridge).stdout)[0]
    assert out["linkinfo"]["info_kind"] == "bridge"
    assert out["linkinfo"]["info_data"]["stp_state"] == 0
    assert out["linkinfo"]["info_data"]["forward_delay"] == 0
    assert "UP" in out["flags"] and out["mtu"] == 1400
    plan = NetworkPlan.from_cidr(spec.cidr)
    assert [(a["local"], a["prefixlen"]) for a in out["addr_info"] if a["family"] == "inet"] == [
        (spec.gateway, plan.prefix)]
    assert masquerade_sources(spec.nft_table) == [spec.cidr]
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"

    rules = rule_exprs(spec.nft_table)
    assert len(rules) == sum(1 for c in ruleset(spec) if "rule" in c.get("add", {}))
    driver.ensure(spec)
    driver.ensure(spec)
    assert rule_exprs(spec.nft_table) == rules   # no duplicates
    assert len(json.loads(sh("ip", "-j", "addr", "show", "dev", spec.bridge).stdout)[0]["addr_info"]
               ) == len(out["addr_info"])


def test_ensure_repairs(driver: BridgeDriver, make_spec: Callable[..., NetworkSpec]) -> None:
    spec = make_spec()
    driver.ensure(spec)
    rules = rule_exprs(spec.nft_table)
    sh("ip", "addr", "flush", "dev", spec.bridge)
    sh("ip", "link", "set", spec.bridge, "down")
    sh("nft", "delete", "table", "inet", spec.nft_table)
    driver.ensure(spec)
    out = json.loads(sh("ip", "-j", "addr", "show", "dev", spec.bridge).stdout)[0]
    assert "UP" in out["flags"]
    assert spec.gateway in [a["local"] for a in out["addr_info"]]
    assert rule_exprs(spec.nft_table) == rules
    # Our gateway with the wrong prefix is replaced, not left beside the right one.
    sh("ip", "addr", "flush", "dev", spec.bridge)
    sh("ip", "addr", "add", f"{spec.gateway}/16", "dev", spec.bridge)
    driver.ensure(spec)
    out = json.loads(sh("ip", "-j", "addr", "show", "dev", spec.bridge).stdout)[0]
    assert [(a["local"], a["prefixlen"]) for a in out["addr_info"] if a["family"] == "inet"] == [
        (spec.gateway, 24)]


def test_nat_off_has_no_masquerade(driver: BridgeDriver, make_spec: Callable[..., NetworkSpec]) -> None:
    spec = make_spec(nat=False)
    driver.ensure(spec)
    assert masquerade_sources(spec.nft_table) == []
    assert nft_table(spec.nft_table) is not None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # Debian's schema names an old draft
def test_rules_match_schema(make_spec: Callable[..., NetworkSpec]) -> None:
    pytest.importorskip("jsonschema")
    assert Firewall().validate(make_spec())


def test_refuses_a_non_bridge_interface(driver: BridgeDriver,
                                        make_spec: Callable[..., NetworkSpec]) -> None:
    spec = make_spec()
    sh("ip", "link", "add", spec.bridge, "type", "veth", "peer", "name", f"{spec.bridge}p")
    with pytest.raises(DriverError, match="not a bridge"):
        driver.ensure(spec)


def test_host_pings_gateway_resolves_names_and_teardown_leaves_nothing(
        driver: BridgeDriver, make_spec: Callable[..., NetworkSpec], run_dir: Callable[[], Path],
        make_host: Callable[..., Host]) -> None:
    spec = make_spec()
    plan = NetworkPlan.from_cidr(spec.cidr)
    driver.ensure(spec)
    rd = run_dir()
    dns = DnsmasqSupervisor()
    pid = dns.ensure(spec, rd)
    assert dns.ensure(spec, rd) == pid   # found again, not restarted
    web_ip = str(ipaddress.ip_address(plan.first) + 10)
    dns.update_hosts(rd, {"web1": web_ip})

    host = make_host(plan.first, plan.prefix, bridge=spec.bridge, gateway=spec.gateway)
    poll(lambda: host.ping(spec.gateway), what="ping of the gateway")
    poll(lambda: resolve(host, "web1.lxcloud", spec.gateway) == web_ip, what="web1.lxcloud")
    assert resolve(host, "web1", spec.gateway) == web_ip
    # Names under .lxcloud are answered locally only: unknown ones are NXDOMAIN, not forwarded.
    assert resolve(host, "nope.lxcloud", spec.gateway) is None

    # A changed list is picked up by dnsmasq itself (inotify on its hosts dirs): no signal, no
    # restart; a replaced list drops the hosts it no longer has.
    new_ip = str(ipaddress.ip_address(web_ip) + 1)
    dns.update_hosts(rd, {"web1": new_ip, "db": web_ip})
    poll(lambda: resolve(host, "web1.lxcloud", spec.gateway) == new_ip, what="reloaded web1")
    assert resolve(host, "db.lxcloud", spec.gateway) == web_ip
    dns.update_hosts(rd, {"db": web_ip})
    poll(lambda: resolve(host, "web1.lxcloud", spec.gateway) is None, what="web1 forgotten")
    # one host added or removed touches that host only
    dns.add_hosts(rd, {"app": new_ip})
    poll(lambda: resolve(host, "app.lxcloud", spec.gateway) == new_ip, what="app added")
    assert dns.hosts(rd) == {"app": new_ip, "db": web_ip}
    dns.remove_hosts(rd, ["db"])
    poll(lambda: resolve(host, "db.lxcloud", spec.gateway) is None, what="db removed")
    assert resolve(host, "app.lxcloud", spec.gateway) == new_ip
    assert dns.running_pid(rd) == pid

    dns.stop(rd)
    driver.teardown(spec)
    assert not link_exists(spec.bridge)
    assert nft_table(spec.nft_table) is None
    assert dns.running_pid(rd) is None
    assert gone(pid)
    assert sorted(os.listdir(rd)) == []   # pid file, hosts files, leases: all gone
    driver.teardown(spec)   # missing: no-op
    dns.stop(rd)


def test_dnsmasq_restarts_when_spec_changes_and_survives_stale_pid_file(
        driver: BridgeDriver, make_spec: Callable[..., NetworkSpec], run_dir: Callable[[], Path]) -> None:
    spec = make_spec()
    driver.ensure(spec)
    rd = run_dir()
    dns = DnsmasqSupervisor()
    pid = dns.ensure(spec, rd)
    dns.update_hosts(rd, {"a": str(ipaddress.ip_address(spec.gateway) + 5)})
    # Another configuration (no DHCP): the old process is replaced, the host list kept.
    pid2 = DnsmasqSupervisor(dhcp=False).ensure(spec, rd)
    assert pid2 != pid and gone(pid)
    assert (rd / "hosts.d" / "a").read_text().split()[1:] == ["a"]
    DnsmasqSupervisor(dhcp=False).stop(rd)
    # A pid file naming some other live process (our own) is not mistaken for dnsmasq.
    (rd / "dnsmasq.pid").write_text(str(os.getpid()))
    assert dns.running_pid(rd) is None
    pid3 = dns.ensure(spec, rd)
    assert pid3 != os.getpid() and dns.running_pid(rd) == pid3


def test_dhcp_serves_the_allocated_address(
        driver: BridgeDriver, make_spec: Callable[..., NetworkSpec], run_dir: Callable[[], Path],
        make_host: Callable[..., Host]) -> None:
    spec = make_spec()
    plan = NetworkPlan.from_cidr(spec.cidr)
    driver.ensure(spec)
    rd = run_dir()
    dns = DnsmasqSupervisor()
    dns.ensure(spec, rd)
    ip = str(ipaddress.ip_address(plan.first) + 20)
    mac = mac_for(ip, "test-cloud")
    dns.update_hosts(rd, {"vm1": ip}, macs={"vm1": mac})
    # The namespace starts with some other address; udhcpc only reports the lease (-s /bin/true).
    host = make_host(plan.first, plan.prefix, bridge=spec.bridge, mac=mac)
    cp = host.exec("busybox", "udhcpc", "-i", host.ifname, "-n", "-q", "-f", "-t", "5", "-T", "1",
                   "-s", "/bin/true", timeout=30)
    assert f"lease of {ip} obtained" in cp.stdout + cp.stderr, cp.stdout + cp.stderr


def test_nat_lets_the_subnet_reach_a_network_that_has_no_route_back(
        driver: BridgeDriver, make_spec: Callable[..., NetworkSpec],
        make_host: Callable[..., Host]) -> None:
    spec = make_spec()
    plan = NetworkPlan.from_cidr(spec.cidr)
    driver.ensure(spec)
    inside = make_host(plan.first, plan.prefix, bridge=spec.bridge, gateway=spec.gateway)
    # "Outside": another namespace on a host-side veth, with no route to spec.cidr at all, so its
    # replies only come back if the source was masqueraded to the host's address.
    out_plan = NetworkPlan.from_cidr(free_subnet())
    outside = make_host(out_plan.first, out_plan.prefix, host_ip=out_plan.gateway)
    poll(lambda: inside.ping(out_plan.first), what="ping through NAT")
    # Without the masquerade rule the same ping fails: the rule is what makes it work.
    # (each busybox ping has its own ICMP id, so it is a new conntrack flow that sees no NAT).
    Firewall().remove_network(spec)
    assert not inside.ping(out_plan.first)
    assert outside.ns


def test_two_clouds_side_by_side(driver: BridgeDriver, make_spec: Callable[..., NetworkSpec],
                                 run_dir: Callable[[], Path], make_host: Callable[..., Host]) -> None:
    a, b = make_spec(), make_spec()
    driver.ensure(a)
    driver.ensure(b)
    rd_a, rd_b = run_dir(), run_dir()
    dns = DnsmasqSupervisor()
    pa, pb = dns.ensure(a, rd_a), dns.ensure(b, rd_b)
    assert pa != pb
    b_rules = rule_exprs(b.nft_table)
    b_handles = sorted(o["rule"]["handle"] for o in nft_table(b.nft_table) or [] if "rule" in o)
    driver.ensure(a)
    assert sorted(o["rule"]["handle"] for o in nft_table(b.nft_table) or [] if "rule" in o) == b_handles
    ip_b = NetworkPlan.from_cidr(b.cidr).first
    dns.update_hosts(rd_b, {"bee": ip_b})
    host_b = make_host(ip_b, 24, bridge=b.bridge, gateway=b.gateway)

    dns.stop(rd_a)
    driver.teardown(a)
    assert not link_exists(a.bridge) and nft_table(a.nft_table) is None
    assert link_exists(b.bridge) and rule_exprs(b.nft_table) == b_rules
    assert masquerade_sources(b.nft_table) == [b.cidr]
    assert dns.running_pid(rd_b) == pb
    poll(lambda: resolve(host_b, "bee.lxcloud", b.gateway) == ip_b, what="b's dns still answers")


def test_two_networks_of_one_cloud_share_the_table(driver: BridgeDriver,
                                                   make_spec: Callable[..., NetworkSpec]) -> None:
    a = make_spec()
    b = make_spec(table=a.nft_table)
    driver.ensure(a)
    driver.ensure(b)
    assert sorted(masquerade_sources(a.nft_table)) == sorted([a.cidr, b.cidr])
    driver.teardown(a)
    assert masquerade_sources(a.nft_table) == [b.cidr]
    chains = {o["chain"]["name"] for o in nft_table(a.nft_table) or [] if "chain" in o}
    assert chains == set(chain_names(b.bridge).values())
    driver.teardown(b)
    assert nft_table(a.nft_table) is None


@pytest.fixture
def gateway_http(request: pytest.FixtureRequest) -> Callable[[str], int]:
    """A tiny HTTP server bound to ip:<free port> (answering "<path> from <client ip>"); its port."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{self.path} from {self.client_address[0]}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    def start(ip: str) -> int:
        srv = http.server.ThreadingHTTPServer((ip, 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()

        def stop() -> None:
            srv.shutdown()
            srv.server_close()
        request.addfinalizer(stop)
        return int(srv.server_address[1])

    return start


def test_metadata_address_is_dnated_to_the_gateway_port(
        driver: BridgeDriver, make_spec: Callable[..., NetworkSpec], make_host: Callable[..., Host],
        gateway_http: Callable[[str], int]) -> None:
    import dataclasses

    plain = make_spec()
    driver.ensure(plain)   # the bridge and its address first: the server binds to the gateway
    n_plain = len(rule_exprs(plain.nft_table))
    assert n_plain == sum(1 for c in ruleset(plain) if "rule" in c.get("add", {}))  # no DNAT
    assert not any("dnat" in e and "169.254" in e for _, e in rule_exprs(plain.nft_table))
    port = gateway_http(plain.gateway)
    spec = dataclasses.replace(plain, metadata_port=port)
    driver.ensure(spec)
    rules = rule_exprs(spec.nft_table)
    assert len(rules) == sum(1 for c in ruleset(spec) if "rule" in c.get("add", {})) \
        == n_plain + 3   # the DNAT, the port from the bridge, from elsewhere
    assert any(chain == chain_names(spec.bridge)["prerouting"] and "169.254.169.254" in expr
               and f'"port": {port}' in expr for chain, expr in rules)
    plan = NetworkPlan.from_cidr(spec.cidr)
    inst = make_host(plan.first, plan.prefix, bridge=spec.bridge, gateway=spec.gateway)

    # (busybox 1.35's wget segfaults with -T: time it out from outside)
    def fetch() -> str:
        cp = inst.exec("timeout", "3", "busybox", "wget", "-qO-", "http://169.254.169.254/latest/x")
        return cp.stdout if cp.returncode == 0 else ""

    # the server sees the instance's own address: that is how the metadata app knows who asks
    assert poll(fetch, what="metadata through DNAT") == f"/latest/x from {plan.first}"
    # the port itself is only reachable from the bridge (the address is who asks): a namespace
    # routed to the gateway from elsewhere is dropped
    out_plan = NetworkPlan.from_cidr(free_subnet())
    other = make_host(out_plan.first, out_plan.prefix, host_ip=out_plan.gateway, gateway=out_plan.gateway)
    assert other.exec("timeout", "3", "busybox", "wget", "-qO-",
                      f"http://{spec.gateway}:{port}/x").returncode != 0
    # other ports of 169.254.169.254 are not forwarded
    cp = inst.exec("timeout", "3", "busybox", "wget", "-qO-", "http://169.254.169.254:8080/")
    assert cp.returncode != 0
    # unsetting the port removes the rule again
    driver.ensure(plain)
    assert len(rule_exprs(plain.nft_table)) == n_plain
    assert fetch() == ""
