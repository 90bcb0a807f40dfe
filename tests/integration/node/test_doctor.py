"""The doctor against problems made for real, each in network namespaces of the test's own: a
"host" namespace with one of our networks (a bridge and lxcloud's own nftables rules, as the bridge
driver writes them), an "instance" namespace plugged into the bridge and an "outside" namespace
beyond the host's uplink. Real packets (busybox ping) show what each finding means; running the fix
the doctor gives makes the check pass and the traffic flow again. The other firewalls are real too:
an nftables table of their own, iptables-nft's FORWARD policy (Docker's), legacy iptables'."""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lxcloud.core.proc import run
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.drivers.network.firewall import ruleset
from lxcloud.node.doctor import FAIL, OK, Check, diagnose
from tests.subnets import free_subnet
from tests.waiting import wait_for


@dataclass
class World:
    host: str          # netns names
    inst: str
    out: str
    spec: NetworkSpec
    outside_ip: str
    uplink: str        # the host's interface towards the outside

    def sh(self, ns: str, cmd: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd], capture_output=True,
                              timeout=30)

    def doctor(self) -> dict[str, Check]:
        return {c.name: c for c in diagnose([self.spec], self.spec.nft_table, netns=self.host)}

    def pings_out(self) -> bool:
        return self.sh(self.inst, f"busybox ping -c 1 -W 1 {self.outside_ip}").returncode == 0

    def fix(self, check: Check) -> None:
        """Runs the doctor's fix as it is written (it names the namespace itself)."""
        assert check.fix.startswith(f"ip netns exec {self.host} "), check
        cp = subprocess.run(["sh", "-c", check.fix], capture_output=True, timeout=30)
        assert cp.returncode == 0, (check.fix, cp.stderr)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    tag = secrets.token_hex(3)
    host, inst, out = f"lxdh{tag}", f"lxdi{tag}", f"lxdo{tag}"
    net, up = ipaddress.ip_network(free_subnet()), ipaddress.ip_network(free_subnet())
    gw, ip = str(net.network_address + 1), str(net.network_address + 10)
    up_host, up_out = str(up.network_address + 1), str(up.network_address + 2)
    spec = NetworkSpec(name="t", bridge=f"lxdbr{tag}", cidr=str(net), gateway=gw,
                       nft_table=f"lxcloud_d{tag}")
    try:
        for ns in (host, inst, out):
            run(["ip", "netns", "add", ns])
        ipx = ["ip", "netns", "exec"]
        run([*ipx, host, "ip", "link", "add", spec.bridge, "type", "bridge"])
        run([*ipx, host, "ip", "addr", "add", f"{gw}/{net.prefixlen}", "dev", spec.bridge])
        run([*ipx, host, "ip", "link", "set", spec.bridge, "up"])
        run([*ipx, host, "ip", "link", "add", f"lxdp{tag}", "type", "veth", "peer", "name",
             "eth0", "netns", inst])
        run([*ipx, host, "ip", "link", "set", f"lxdp{tag}", "master", spec.bridge, "up"])
        run([*ipx, inst, "ip", "addr", "add", f"{ip}/{net.prefixlen}", "dev", "eth0"])
        run([*ipx, inst, "ip", "link", "set", "eth0", "up"])
        run([*ipx, inst, "ip", "route", "add", "default", "via", gw])
        run([*ipx, host, "ip", "link", "add", f"lxdu{tag}", "type", "veth", "peer", "name",
             "eth0", "netns", out])
        run([*ipx, host, "ip", "addr", "add", f"{up_host}/{up.prefixlen}", "dev", f"lxdu{tag}"])
        run([*ipx, host, "ip", "link", "set", f"lxdu{tag}", "up"])
        run([*ipx, out, "ip", "addr", "add", f"{up_out}/{up.prefixlen}", "dev", "eth0"])
        run([*ipx, out, "ip", "link", "set", "eth0", "up"])
        # lxcloud's own rules, exactly as the bridge driver writes them (NAT out of the uplink)
        rules = tmp_path / "rules.json"
        rules.write_text(json.dumps({"nftables": ruleset(spec)}))
        run([*ipx, host, "nft", "-j", "-f", str(rules)])
        run([*ipx, host, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        yield World(host, inst, out, spec, up_out, f"lxdu{tag}")
    finally:
        for ns in (inst, out, host):   # their links, bridge and nft tables go with them
            run(["ip", "netns", "del", ns], check=False)


def test_a_healthy_namespace_passes_and_traffic_flows(world: World) -> None:
    found = world.doctor()
    assert wait_for(world.pings_out, 10, "the instance reaching the outside")
    for name in ("ip_forward", "forward", "input", "br_netfilter", "network.t", "nft_table"):
        assert found[name].status == OK, found[name]
    assert found["nft_table"].message.startswith(f"lxcloud's rules are in their own table "
                                                 f"inet {world.spec.nft_table}")


def test_forwarding_off_and_another_tables_drop_policy_are_found_and_fixed(world: World) -> None:
    world.sh(world.host, "sysctl -qw net.ipv4.ip_forward=0")
    # another firewall in its own table: a forward chain after ours, dropping by policy
    assert world.sh(world.host, "nft add table inet otherfw && nft add chain inet otherfw fwdchain "
                    "'{ type filter hook forward priority 10; policy drop; }'").returncode == 0
    found = world.doctor()
    assert found["ip_forward"].status == FAIL
    drop = found["forward.inet.otherfw.fwdchain"]
    assert drop.status == FAIL and world.spec.bridge in drop.message
    assert "after lxcloud's" in drop.message
    assert not world.pings_out()

    world.fix(found["ip_forward"])
    assert world.doctor()["ip_forward"].status == OK
    assert not world.pings_out()         # still dropped by the other table, as the doctor says

    world.fix(drop)
    found = world.doctor()
    assert found["forward.inet.otherfw.fwdchain"].status == OK
    assert [c for c in found.values() if c.status == FAIL] == []
    assert wait_for(world.pings_out, 10, "the instance reaching the outside once fixed")


def test_another_table_with_an_accept_policy_changes_nothing(world: World) -> None:
    before = {n: c.status for n, c in world.doctor().items()}
    assert world.sh(world.host, "nft add table inet acceptfw && nft add chain inet acceptfw fwdchain "
                    "'{ type filter hook forward priority -10; policy accept; }' && "
                    "nft add rule inet acceptfw fwdchain counter && nft add chain inet acceptfw inchain "
                    "'{ type filter hook input priority 0; policy accept; }'").returncode == 0
    found = world.doctor()
    assert {n: c.status for n, c in found.items()} == before
    assert "coexist" in found["forward"].message
    assert "beside 1 other table" in found["nft_table"].message
    assert wait_for(world.pings_out, 10, "the instance reaching the outside")
    # and our own rules are untouched by the other table
    listed = world.sh(world.host, f"nft list table inet {world.spec.nft_table}").stdout.decode()
    assert f"{world.spec.bridge}_forward" in listed and "masquerade" in listed


def test_an_input_drop_policy_is_found_and_fixed(world: World) -> None:
    assert world.sh(world.host, "nft add table inet hostfw && nft add chain inet hostfw inchain "
                    "'{ type filter hook input priority 0; policy drop; }'").returncode == 0
    c = world.doctor()["input.inet.hostfw.inchain"]
    assert c.status == FAIL and "DHCP" in c.message
    world.fix(c)
    assert world.doctor()["input"].status == OK
    rules = world.sh(world.host, "nft list chain inet hostfw inchain").stdout.decode()
    assert f'iifname "{world.spec.bridge}" udp dport {{ 53, 67 }} accept' in rules


def test_our_bridge_down_and_a_conflicting_route_are_found_and_fixed(world: World) -> None:
    world.sh(world.host, f"ip link set {world.spec.bridge} down")
    c = world.doctor()["network.t"]
    assert c.status == FAIL and "down" in c.message
    assert not world.pings_out()
    world.fix(c)
    assert world.doctor()["network.t"].status == OK
    assert wait_for(world.pings_out, 10, "the instance reaching the outside, bridge up")

    half = ipaddress.ip_network(world.spec.cidr).subnets(1)
    upper = str(list(half)[1])
    world.sh(world.host, f"ip route add {upper} dev {world.uplink}")
    c = world.doctor()["network.t"]
    assert c.status == FAIL and upper in c.message and world.uplink in c.message
    world.fix(c)
    assert world.doctor()["network.t"].status == OK


def test_bridged_traffic_bypassing_nftables_is_found_and_fixed(world: World) -> None:
    world.sh(world.host, "sysctl -qw net.bridge.bridge-nf-call-iptables=0")
    c = world.doctor()["br_netfilter"]
    assert c.status == FAIL and "security groups" in c.message
    world.fix(c)
    assert world.doctor()["br_netfilter"].status == OK
    assert world.sh(world.host, "sysctl -n net.bridge.bridge-nf-call-iptables").stdout.strip() \
        == b"1"


def test_docker_style_iptables_forward_drop_is_found_and_fixed(world: World) -> None:
    """iptables-nft's FORWARD chain with policy DROP, as Docker leaves it."""
    assert world.sh(world.host, "iptables-nft -P FORWARD DROP").returncode == 0
    c = world.doctor()["forward.ip.filter.FORWARD"]
    assert c.status == FAIL and world.spec.bridge in c.message
    assert f"iptables -I FORWARD -i {world.spec.bridge} -j ACCEPT" in c.fix
    assert not world.pings_out()
    world.fix(c)
    assert world.doctor()["forward.ip.filter.FORWARD"].status == OK
    assert wait_for(world.pings_out, 10, "the instance reaching the outside once accepted")


def test_legacy_iptables_forward_drop_is_found_and_fixed(world: World) -> None:
    assert world.sh(world.host, "iptables-legacy -P FORWARD DROP").returncode == 0
    c = world.doctor()["iptables_legacy"]
    assert c.status == FAIL and world.spec.bridge in c.message
    assert not world.pings_out()
    world.fix(c)
    assert world.doctor()["iptables_legacy"].status == OK
    assert wait_for(world.pings_out, 10, "the instance reaching the outside once accepted")
