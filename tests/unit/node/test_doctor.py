"""The doctor's checks over facts made up for each case, its reading of a fake /proc tree, its
parsing of nftables listings (GET /api/v1/doctor and `lxcloud doctor` over a fake node:
tests/unit/cli/test_doctor.py)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.node import doctor
from lxcloud.node.doctor import FAIL, OK, WARN, Chain, Check, HostFacts, Link, Route

NET = NetworkSpec(name="default", bridge="lxcbrab12cd34", cidr="10.20.0.0/24",
                  gateway="10.20.0.1", nft_table="lxcloud_ab12cd34")
TABLE = NET.nft_table
CONFIG = {f"CONFIG_{k}": "y" for k in (
    "VETH BRIDGE MACVLAN VXLAN NF_TABLES NF_TABLES_INET NF_CONNTRACK NF_NAT NFT_NAT NFT_MASQ "
    "NET_SCH_TBF NET_SCH_HTB NET_SCH_INGRESS USER_NS").split()}


def healthy(**kw: Any) -> HostFacts:
    """A host on which every check passes for NET."""
    f = HostFacts(
        kernel="6.1.0",
        sysctls={"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1",
                 "user.max_user_namespaces": "63000"},
        kernel_config=dict(CONFIG),
        cgroups={c: True for c, _, _ in doctor.CGROUPS},
        chains=[Chain("inet", TABLE, f"{NET.bridge}_forward", "forward", 0, "accept",
                      accepts_in=(NET.bridge,), accepts_out=(NET.bridge,))],
        tables=[f"inet {TABLE}"],
        links=[Link("eth0", "", True), Link(NET.bridge, "bridge", True)],
        routes=[Route("192.168.1.0/24", "eth0", "address"), Route("10.20.0.0/24", NET.bridge,
                                                                   "address")],
        dnsmasq="/usr/sbin/dnsmasq", lxc_version="5.0.2")
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def by_name(found: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in found}


def test_a_healthy_host_passes_every_check() -> None:
    found = doctor.checks(healthy(), [NET], TABLE)
    assert [c for c in found if c.status != OK] == []
    assert doctor.worst(found) == OK
    assert {"ip_forward", "forward", "input", "br_netfilter", "network.default", "nft_table",
            "kernel.veth", "kernel.nf_nat", "cgroups", "dnsmasq", "lxc"} <= set(by_name(found))


def test_forwarding_off_fails_with_the_sysctl_that_fixes_it() -> None:
    f = healthy(sysctls={"net.ipv4.ip_forward": "0", "net.bridge.bridge-nf-call-iptables": "1"})
    c = by_name(doctor.checks(f, [NET], TABLE))["ip_forward"]
    assert c.status == FAIL and c.fix == "sysctl -w net.ipv4.ip_forward=1"
    f.netns = "ns1"
    c = by_name(doctor.checks(f, [NET], TABLE))["ip_forward"]
    assert c.fix == "ip netns exec ns1 sysctl -w net.ipv4.ip_forward=1"


def test_another_tables_forward_drop_policy_fails_until_it_accepts_our_bridge() -> None:
    ours = healthy().chains
    drop = Chain("ip", "filter", "FORWARD", "forward", 0, "drop")    # iptables-nft, Docker's
    found = by_name(doctor.checks(healthy(chains=[*ours, drop]), [NET], TABLE))
    c = found["forward.ip.filter.FORWARD"]
    assert c.status == FAIL and NET.bridge in c.message and "priority 0" in c.message
    assert c.fix == (f"iptables -I FORWARD -i {NET.bridge} -j ACCEPT && "
                     f"iptables -I FORWARD -o {NET.bridge} -j ACCEPT")
    half = Chain("ip", "filter", "FORWARD", "forward", 0, "drop", accepts_in=(NET.bridge,))
    assert by_name(doctor.checks(healthy(chains=[*ours, half]), [NET], TABLE))[
        "forward.ip.filter.FORWARD"].status == FAIL
    fixed = Chain("ip", "filter", "FORWARD", "forward", 0, "drop", accepts_in=("lxcbr*",),
                  accepts_out=(NET.bridge,))
    assert by_name(doctor.checks(healthy(chains=[*ours, fixed]), [NET], TABLE))[
        "forward.ip.filter.FORWARD"].status == OK


def test_a_plain_nft_table_gets_nft_commands_and_its_order_said() -> None:
    drop = Chain("inet", "fw", "fwd", "forward", -5, "drop")
    c = by_name(doctor.checks(healthy(chains=[drop]), [NET], TABLE))["forward.inet.fw.fwd"]
    assert "before lxcloud's" in c.message and "priority -5" in c.message
    assert c.fix == (f"nft insert rule inet fw fwd iifname {NET.bridge} accept && "
                     f"nft insert rule inet fw fwd oifname {NET.bridge} accept")
    last = Chain("inet", "fw", "fwd", "forward", 10, "accept", ends_in_drop=True)
    c = by_name(doctor.checks(healthy(chains=[last]), [NET], TABLE))["forward.inet.fw.fwd"]
    assert c.status == FAIL and "last rule" in c.message and "after lxcloud's" in c.message


def test_accepting_tables_and_our_own_change_nothing() -> None:
    others = [Chain("inet", "other", "f", "forward", 0, "accept"),
              Chain("ip", "nat", "POSTROUTING", "postrouting", 100, "accept"),
              Chain("inet", TABLE, "x_forward", "forward", 0, "drop")]   # ours: not judged
    found = doctor.checks(healthy(chains=others, tables=[f"inet {TABLE}", "inet other"]),
                          [NET], TABLE)
    assert [c for c in found if c.status != OK] == []
    assert "coexist" in by_name(found)["forward"].message


def test_an_input_drop_policy_cuts_dhcp_and_dns() -> None:
    drop = Chain("inet", "fw", "in", "input", 0, "drop")
    c = by_name(doctor.checks(healthy(chains=[drop]), [NET], TABLE))["input.inet.fw.in"]
    assert c.status == FAIL and "DHCP" in c.message and "dport '{ 53, 67 }'" in c.fix
    ok = Chain("inet", "fw", "in", "input", 0, "drop", accepts_in_some=(NET.bridge,))
    assert by_name(doctor.checks(healthy(chains=[ok]), [NET], TABLE))["input"].status == OK


def test_legacy_iptables_forward_drop() -> None:
    f = healthy(legacy_tables=["filter"], legacy_forward="-P FORWARD DROP\n-A FORWARD -j DOCKER\n")
    c = by_name(doctor.checks(f, [NET], TABLE))["iptables_legacy"]
    assert c.status == FAIL and f"-i {NET.bridge} -j ACCEPT" in c.fix
    f.legacy_forward += f"-A FORWARD -i {NET.bridge} -j ACCEPT\n-A FORWARD -o {NET.bridge} -j ACCEPT\n"
    assert by_name(doctor.checks(f, [NET], TABLE))["iptables_legacy"].status == OK
    f.legacy_forward = None
    assert by_name(doctor.checks(f, [NET], TABLE))["iptables_legacy"].status == WARN


def test_br_netfilter_absent_or_off_fails() -> None:
    f = healthy(sysctls={"net.ipv4.ip_forward": "1"})
    c = by_name(doctor.checks(f, [NET], TABLE))["br_netfilter"]
    assert c.status == FAIL and c.fix.startswith("modprobe br_netfilter")
    f.sysctls["net.bridge.bridge-nf-call-iptables"] = "0"
    c = by_name(doctor.checks(f, [NET], TABLE))["br_netfilter"]
    assert c.status == FAIL and c.fix == "sysctl -w net.bridge.bridge-nf-call-iptables=1"


def test_our_bridge_missing_down_or_not_a_bridge() -> None:
    eth = Link("eth0", "", True)
    for links, fix in (([eth], "lxcloud up"),
                       ([eth, Link(NET.bridge, "bridge", False)], f"ip link set {NET.bridge} up"),
                       ([eth, Link(NET.bridge, "veth", True)], f"ip link del {NET.bridge}")):
        c = by_name(doctor.checks(healthy(links=links), [NET], TABLE))["network.default"]
        assert c.status == FAIL and fix in c.fix, c


def test_a_route_or_address_overlapping_our_subnet_elsewhere_fails() -> None:
    base = healthy().routes
    for r, fix in ((Route("10.20.0.128/25", "eth0"), "ip route del 10.20.0.128/25 dev eth0"),
                   (Route("10.20.0.0/16", "lxcbr9999", "address"),
                    "ip addr del 10.20.0.0/16 dev lxcbr9999")):
        c = by_name(doctor.checks(healthy(routes=[*base, r]), [NET], TABLE))["network.default"]
        assert c.status == FAIL and c.fix.startswith(fix) and r.dst in c.message


def test_our_table_missing() -> None:
    c = by_name(doctor.checks(healthy(tables=["inet other"]), [NET], TABLE))["nft_table"]
    assert c.status == FAIL and TABLE in c.message


def test_missing_kernel_features_cgroups_and_tools() -> None:
    cfg = {k: v for k, v in CONFIG.items() if k not in ("CONFIG_VETH", "CONFIG_VXLAN")}
    cfg["CONFIG_NF_NAT"] = "m"
    f = healthy(kernel_config=cfg, cgroups={"cpu": True, "memory": False}, dnsmasq="",
                lxc_version="3.0.4", sysctls={**healthy().sysctls, "user.max_user_namespaces": "0"})
    found = by_name(doctor.checks(f, [NET], TABLE))
    assert found["kernel.veth"].status == FAIL and "CONFIG_VETH" in found["kernel.veth"].fix
    assert found["kernel.vxlan"].status == WARN          # optional
    assert found["kernel.nf_nat"].status == OK and "module" in found["kernel.nf_nat"].message
    assert found["kernel.user_namespaces.limit"].status == FAIL
    assert found["cgroup.memory"].status == FAIL and "cgroup_enable=memory" in \
        found["cgroup.memory"].fix
    assert found["cgroup.pids"].status == FAIL and found["cgroup.cpuset"].status == WARN
    assert found["dnsmasq"].status == FAIL and "dnsmasq-base" in found["dnsmasq"].fix
    assert found["lxc"].status == WARN
    unknown = by_name(doctor.checks(healthy(kernel_config={}), [NET], TABLE))
    assert unknown["kernel.veth"].status == WARN
    loaded = by_name(doctor.checks(healthy(kernel_config={}, modules_loaded=["veth"]),
                                   [NET], TABLE))
    assert loaded["kernel.veth"].status == OK


def test_without_networks_our_bridges_are_a_pattern() -> None:
    drop = Chain("inet", "fw", "fwd", "forward", 0, "drop")
    c = by_name(doctor.checks(healthy(chains=[drop]), [], TABLE))["forward.inet.fw.fwd"]
    assert "iifname 'lxcbr*' accept" in c.fix
    ok = Chain("inet", "fw", "fwd", "forward", 0, "drop", accepts_in=("lxcbr*",),
               accepts_out=("lxcbr*",))
    assert by_name(doctor.checks(healthy(chains=[ok]), [], TABLE))["forward.inet.fw.fwd"].status \
        == OK


# --- reading
def test_read_files_from_a_fake_proc_tree(tmp_path: Path) -> None:
    proc, mods = tmp_path / "proc", tmp_path / "modules"
    for key, v in (("net/ipv4/ip_forward", "0\n"), ("user/max_user_namespaces", "100\n")):
        (proc / "sys" / key).parent.mkdir(parents=True, exist_ok=True)
        (proc / "sys" / key).write_text(v)
    (proc / "config.gz").write_bytes(gzip.compress(b"CONFIG_VETH=y\nCONFIG_VXLAN=m\n"
                                                   b"# CONFIG_MACVLAN is not set\n"))
    (proc / "modules").write_text("veth 36864 0 - Live 0x0\nbridge 1 0 - Live 0x0\n")
    (proc / "cgroups").write_text("#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
                                  "cpu\t1\t1\t1\nmemory\t0\t1\t0\n")
    (proc / "net").mkdir()
    (proc / "net/ip_tables_names").write_text("filter\nnat\n")
    (mods / "6.1.0").mkdir(parents=True)
    (mods / "6.1.0/modules.dep").write_text("kernel/drivers/net/macvlan.ko.xz: \n")
    (mods / "6.1.0/modules.builtin").write_text("kernel/net/sched/sch-htb.ko\n")
    f = doctor.read_files(proc, mods, release="6.1.0", boot=tmp_path / "boot")
    assert f.sysctls == {"net.ipv4.ip_forward": "0", "user.max_user_namespaces": "100"}
    assert f.kernel_config == {"CONFIG_VETH": "y", "CONFIG_VXLAN": "m"}
    assert f.modules_loaded == ["bridge", "veth"]
    assert f.modules_available == ["macvlan", "sch_htb"]
    assert f.cgroups == {"cpu": True, "memory": False}
    assert f.legacy_tables == ["filter", "nat"]
    found = by_name(doctor.checks(f))
    assert found["ip_forward"].status == FAIL and found["br_netfilter"].status == FAIL
    assert found["kernel.macvlan"].status == OK          # a module of modules.dep
    assert found["cgroup.memory"].status == FAIL
    (tmp_path / "boot").mkdir()
    (proc / "config.gz").unlink()
    (tmp_path / "boot/config-6.1.0").write_text("CONFIG_BRIDGE=m\n")
    assert doctor.read_files(proc, mods, release="6.1.0", boot=tmp_path / "boot").kernel_config \
        == {"CONFIG_BRIDGE": "m"}


def _rule(table: str, chain: str, *expr: dict[str, Any], family: str = "ip") -> dict[str, Any]:
    return {"rule": {"family": family, "table": table, "chain": chain, "expr": list(expr)}}


def _if(key: str, name: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": name}}


def test_parse_chains_of_an_iptables_nft_listing() -> None:
    listing = [
        {"table": {"family": "ip", "name": "filter"}},
        {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward",
                   "prio": 0, "policy": "drop", "type": "filter"}},
        {"chain": {"family": "ip", "table": "filter", "name": "DOCKER"}},   # not a base chain
        _rule("filter", "FORWARD", _if("iifname", "lxcbr1"), {"counter": {"packets": 0}},
              {"accept": None}),
        _rule("filter", "FORWARD", _if("oifname", {"set": ["lxcbr1", "lxcbr2"]}),
              {"accept": None}),
        _rule("filter", "FORWARD", _if("iifname", "lxcbr3"),
              {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                         "right": 80}}, {"accept": None}),
        _rule("filter", "FORWARD", {"counter": None}, {"drop": None}),
    ]
    [c] = doctor.parse_chains(listing)
    assert (c.family, c.table, c.name, c.hook, c.prio, c.policy) == \
        ("ip", "filter", "FORWARD", "forward", 0, "drop")
    assert c.accepts_in == ("lxcbr1",) and c.accepts_out == ("lxcbr1", "lxcbr2")
    assert c.accepts_in_some == ("lxcbr1", "lxcbr3") and c.ends_in_drop and c.drops


def test_facts_survive_their_json_form() -> None:
    f = healthy(chains=[Chain("inet", "fw", "f", "forward", 3, "drop", accepts_in=("a",))])
    assert HostFacts.from_dict(f.to_dict()) == f


def test_a_nearly_full_conntrack_table() -> None:
    sysctls = {**healthy().sysctls, "net.netfilter.nf_conntrack_max": "1000"}
    for count, status in (("10", OK), ("950", WARN), ("1000", FAIL)):
        sysctls["net.netfilter.nf_conntrack_count"] = count
        c = by_name(doctor.checks(healthy(sysctls=dict(sysctls)), [NET], TABLE))["conntrack"]
        assert c.status == status, c
    assert c.fix == "sysctl -w net.netfilter.nf_conntrack_max=4000"


def test_public_address_pools_interfaces() -> None:
    f = healthy(links=[*healthy().links, Link("eth1", "", False)])
    found = by_name(doctor.checks(f, [NET], TABLE, uplinks=["eth0", "eth1", "eth9"]))
    assert found["uplink.eth0"].status == OK
    assert found["uplink.eth1"].status == FAIL and found["uplink.eth1"].fix == \
        "ip link set eth1 up"
    assert found["uplink.eth9"].status == FAIL and "missing" in found["uplink.eth9"].message
