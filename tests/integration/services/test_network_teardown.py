"""Teardown hygiene: a cloud with two networks, instances launched on them (one with a NIC on
each, two with bandwidth limits, one in a security group of its own, one with a public address on
a host interface, one on a macvlan network, a NIC hot-plugged and unplugged) and terminated, a
group and networks deleted, then the cloud stopped and purged (`lxcloud purge`'s code) leaves
nothing of its own on the host: no veth of its prefix, no ifb, no macvlan, no bridge, no nftables
table or chain, no tc qdisc, no public address, no dnsmasq, no container. Each step checks what
it alone should have removed, and that the rest is still there while it lives.

Another cloud may run on this machine: only this cloud's names (its veth prefix, its bridges, its
table, its data dir) are looked for."""

from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.controller import purge
from lxcloud.core.proc import run
from lxcloud.drivers.compute.lxc import host_veth_name
from lxcloud.drivers.network.firewall import chain_names
from lxcloud.drivers.network.ratelimit import ifb_name
from lxcloud.drivers.network.secgroups import group_chain, port_chain
from lxcloud.services.instances import LaunchRequest, NicRequest
from lxcloud.services.networks import NetworkRequest
from lxcloud.services.security_groups import RuleSpec
from tests.integration.services.stack import Stack, ok, wait
from tests.subnets import free_subnet
from tests.waiting import wait_for


def links() -> list[dict[str, object]]:
    return json.loads(run(["ip", "-j", "link", "show"]).stdout or b"[]")  # type: ignore[no-any-return]


def our_links(prefix: str, bridges: set[str]) -> list[str]:
    return sorted(str(x["ifname"]) for x in links()
                  if str(x["ifname"]).startswith(prefix) or x["ifname"] in bridges)


def mac_of(dev: str) -> str:
    return Path(f"/sys/class/net/{dev}/address").read_text().strip()


def macvlans_on(parent: str) -> list[str]:
    """macvlan devices of `parent` left in the host's namespace."""
    cp = run(["ip", "-j", "-d", "link", "show", "type", "macvlan"])
    return [str(x["ifname"]) for x in json.loads(cp.stdout or b"[]") if x.get("link") == parent]


def addresses_on(dev: str) -> list[str]:
    return run(["ip", "-4", "-o", "addr", "show", "dev", dev]).stdout.decode().split()


def qdiscs_on(devs: set[str]) -> list[str]:
    """Qdiscs other than the kernel's default (noqueue) on these devices."""
    found = json.loads(run(["tc", "-j", "qdisc", "show"]).stdout or b"[]")
    return [f"{q['kind']} on {q['dev']}" for q in found
            if q.get("dev") in devs and q.get("kind") != "noqueue"]


def dnsmasqs(data_dir: Path, bridges: set[str]) -> list[int]:
    """dnsmasq processes of this cloud: their pid file under its data dir, or one of its bridges."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not argv or Path(argv[0]).name != "dnsmasq":
            continue
        if any(str(data_dir) in a for a in argv) or \
                any(a == f"--interface={b}" for a in argv for b in bridges):
            pids.append(int(p.name))
    return pids


def nft_table(name: str) -> str | None:
    cp = run(["nft", "list", "table", "inet", name], check=False)
    return cp.stdout.decode() if cp.returncode == 0 else None


@pytest.fixture
def stack() -> Iterator[Stack]:
    """A stack this test purges itself; removed the fixture's way if the test stopped first."""
    base = Path(tempfile.mkdtemp(prefix="lxcloud-teardown-", dir="/var/tmp"))
    base.chmod(0o755)
    st = Stack(base)
    try:
        yield st
    finally:
        if st.settings.data_dir.exists():
            try:
                st.remove_all()
            except Exception:
                purge(str(st.settings.data_dir))
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def uplink() -> Iterator[tuple[str, ipaddress.IPv4Network]]:
    """A host interface of the test's own (a veth pair) standing for the public one, on a free
    subnet."""
    name = f"lxtu{secrets.token_hex(3)}"
    net = ipaddress.IPv4Network(free_subnet())
    run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"])
    try:
        run(["ip", "addr", "add", f"{net.network_address + 1}/{net.prefixlen}", "dev", name])
        run(["ip", "link", "set", name, "up"])
        run(["ip", "link", "set", f"{name}p", "up"])
        yield name, net
    finally:
        run(["ip", "link", "del", name], check=False)


def test_two_networks_instances_and_the_cloud_leave_nothing_behind(
        stack: Stack, uplink: tuple[str, ipaddress.IPv4Network]) -> None:
    from lxcloud.services.images import BuildRequest

    c, settings = stack.cloud, stack.settings
    admin = c.accounts.verify_token(f"Bearer {c.admin_token}")
    wait(c, c.images.build(BuildRequest(builder="busybox")).id)
    second = c.networks.create(admin, NetworkRequest(name="second", subnet=free_subnet()))
    default = c.networks.get()
    bridges = {default.bridge, second.bridge}
    prefix = settings.veth_prefix
    assert our_links(prefix, set()) == []          # nothing of ours before the first launch
    web = c.security_groups.create("web", admin)
    c.security_groups.add_rules("web", [RuleSpec("ingress", "tcp", 80, 80, "0.0.0.0/0")], admin)

    # one instance on each network (a and b with limits, b in the group), one with a NIC on both
    made = {}
    for name, kw in (("a", {"ingress": "10Mbit", "egress": "10Mbit"}),
                     ("b", {"nics": (NicRequest(network="second"),), "security_groups": ("web",),
                            "ingress": "20Mbit", "egress": "20Mbit"}),
                     ("ab", {"nics": (NicRequest(), NicRequest(network="second"))})):
        [(inst, op)] = c.instances.launch(LaunchRequest(image="busybox", name=name,
                                                        memory="64MiB", **kw),  # type: ignore[arg-type]
                                          caller=admin)
        assert op is not None
        wait(c, op.id)
        made[name] = inst.id
    veths = {n: [host_veth_name(iid, i, prefix) for i in range(2 if n == "ab" else 1)]
             for n, iid in made.items()}
    all_veths = {v for vs in veths.values() for v in vs}
    (va,), (vb,) = veths["a"], veths["b"]
    ifbs = {ifb_name(va), ifb_name(vb)}
    assert set(our_links(prefix, set())) == all_veths
    assert {str(x["ifname"]) for x in links()} >= ifbs
    assert qdiscs_on({va, vb} | ifbs), "the limits are tc qdiscs on the ports and their ifbs"
    # each reaches its network's gateway (the NICs are real)
    ok(c, "a", f"ping -c 1 -W 2 {default.gateway}")
    ok(c, "b", f"ping -c 1 -W 2 {second.gateway}")
    ok(c, "ab", f"ping -c 1 -W 2 {default.gateway} && ping -c 1 -W 2 {second.gateway}")
    assert len(dnsmasqs(settings.data_dir, bridges)) == 2
    table = nft_table(settings.nft_table)
    assert table is not None and f"{second.bridge}_forward" in table
    assert port_chain(vb, "ingress") in table and group_chain(web.id, "ingress") in table

    # a public address of a pool on the uplink, associated to a
    dev, net = uplink
    pool_range = f"{net.network_address + 100}-{net.network_address + 101}"
    c.addresses.create_pool("uplink", dev, pool_range, caller=admin)
    public = c.addresses.allocate(caller=admin)
    c.addresses.associate(public.id, "a", caller=admin)
    assert f"{public.address}/32" in addresses_on(dev)

    # direct attachment: a macvlan network on the uplink's far end, an instance on it
    direct = c.networks.create(admin, NetworkRequest(name="direct", subnet=free_subnet(),
                                                     driver="macvlan", parent=f"{dev}p",
                                                     macvlan_mode="bridge"))
    [(inst, op)] = c.instances.launch(LaunchRequest(image="busybox", name="m", memory="64MiB",
                                                    nics=(NicRequest(network="direct"),)),
                                      caller=admin)
    assert op is not None
    wait(c, op.id)
    made["m"] = inst.id
    assert str(inst.nics[0].ipv4) in ok(c, "m", "ip -o addr show eth0")   # configured

    doctor = {ch.name: ch for ch in c.doctor.run()}
    for name in ("network.default", "network.second", "network.direct", "nft_table",
                 "br_netfilter", f"uplink.{dev}"):
        assert doctor[name].status == "ok", doctor[name]

    # terminating an instance takes its veths, ifb, qdiscs and rules, and leaves the gateway's
    # MAC as it was (a bridge's own would follow its lowest port's: the neighbours' ARP entries
    # would go stale)
    gateway_mac = mac_of(default.bridge)
    for name in ("b", "ab", "m"):
        wait(c, c.instances.delete(name, force=True, caller=admin).id)
    assert macvlans_on(f"{dev}p") == []
    c.networks.delete(admin, "direct")
    assert direct.name not in [n.name for n in c.networks.list(admin)]
    wait_for(lambda: set(our_links(prefix, set())) == set(veths["a"]), 30,
             "only a's veth left after b and ab are terminated")
    assert ifb_name(vb) not in {str(x["ifname"]) for x in links()}
    assert ifb_name(va) in {str(x["ifname"]) for x in links()}
    table = nft_table(settings.nft_table) or ""
    assert not any(v in table for n, vs in veths.items() if n != "a" for v in vs), table
    assert mac_of(default.bridge) == gateway_mac
    ok(c, "a", f"ping -c 1 -W 2 {default.gateway}")

    # a NIC hot-attached to a and detached again leaves no veth of its own
    hot = host_veth_name(made["a"], 1, prefix)
    _inst, op = c.nics.attach("a", "second", caller=admin)
    wait(c, op.id)
    assert hot in our_links(prefix, set())
    ok(c, "a", f"ping -c 1 -W 2 {second.gateway}")
    _inst, op = c.nics.detach("a", "eth1", caller=admin)
    wait(c, op.id)
    wait_for(lambda: hot not in our_links(prefix, set()), 30, "the hot-plugged NIC's veth gone")
    assert hot not in (nft_table(settings.nft_table) or "")

    # deleting the group takes its chains; deleting the second network its bridge, chains and
    # dnsmasq, and nothing of default's
    c.security_groups.delete("web", admin)
    assert group_chain(web.id, "ingress") not in (nft_table(settings.nft_table) or "")
    c.networks.delete(admin, "second")
    assert second.bridge not in our_links(prefix, bridges)
    table = nft_table(settings.nft_table) or ""
    assert not any(ch in table for ch in chain_names(second.bridge).values()), table
    assert f"{default.bridge}_forward" in table
    wait_for(lambda: len(dnsmasqs(settings.data_dir, bridges)) == 1, 30,
             "the second network's dnsmasq gone, the default's still there")
    ok(c, "a", f"ping -c 1 -W 2 {default.gateway}")

    # the cloud stopped and purged: nothing of it is left on the host
    c.close()
    assert purge(str(settings.data_dir)) == 0
    assert our_links(prefix, bridges) == []
    assert not ifbs & {str(x["ifname"]) for x in links()}
    assert qdiscs_on(bridges | all_veths | ifbs | {dev}) == []
    assert nft_table(settings.nft_table) is None
    assert f"{public.address}/32" not in addresses_on(dev)
    wait_for(lambda: dnsmasqs(settings.data_dir, bridges) == [], 30, "no dnsmasq of this cloud")
    assert not (settings.lxcpath).exists() or not any(settings.lxcpath.iterdir())
    assert not settings.data_dir.exists()
