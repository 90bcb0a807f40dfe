"""The LXC config of NICs: a veth on its bridge (with the rate limit hooks when limited), a
macvlan on its parent, the default route on the first NIC only, host ports named after ethN."""

from __future__ import annotations

from pathlib import Path

import pytest

from lxcloud.core.errors import InvalidInput
from lxcloud.core.instance import Disk, ImageRef, InstanceSpec, Kind, Nic
from lxcloud.core.instance_types import Limits
from lxcloud.core.units import format_rate, parse_rate
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.compute.lxc import host_veth_name, nic_ports, render_config
from lxcloud.drivers.network import ratelimit


def spec_with(*nics: Nic) -> InstanceSpec:
    return InstanceSpec(id="i-1", name="h", kind=Kind.CONTAINER,
                        image=ImageRef(id="ami-1", template=""),
                        limits=Limits(vcpus=1, memory=64 << 20, swap=0, pids=64, disk=0),
                        nics=nics, disks=(Disk(pool="p", source="ami-1"),))


def config(spec: InstanceSpec) -> list[str]:
    return render_config(spec, RootfsSpec(kind="dir", path=Path("/r")), lxcpath=Path("/lxc"),
                         veth=nic_ports(spec, "vx"), idmap=None, cgroup=2, lxcfs_dir=None,
                         cpus=(0,)).splitlines()


def nic(name: str, **kw: object) -> Nic:
    base: dict[str, object] = {"network": "n", "mac": "02:00:00:00:00:01", "ipv4": "10.0.0.5",
                               "prefix": 24, "gateway": "10.0.0.1", "link": "br0"}
    return Nic(name=name, **{**base, **kw})  # type: ignore[arg-type]


def keys(lines: list[str], i: int) -> dict[str, str]:
    p = f"lxc.net.{i}."
    return {ln.split(" = ")[0][len(p):]: ln.split(" = ", 1)[1] for ln in lines if ln.startswith(p)}


def test_a_second_nic_has_its_address_but_not_the_default_route() -> None:
    lines = config(spec_with(nic("eth0"), nic("eth1", ipv4="10.0.1.5", gateway="10.0.1.1",
                                               link="br1")))
    eth0, eth1 = keys(lines, 0), keys(lines, 1)
    assert eth0["ipv4.gateway"] == "10.0.0.1" and "ipv4.gateway" not in eth1
    assert eth1["ipv4.address"] == "10.0.1.5/24 10.0.1.255" and eth1["link"] == "br1"
    assert "script.up" not in eth0


def test_unconfigured_nic_is_up_with_no_address() -> None:
    eth1 = keys(config(spec_with(nic("eth0"), nic("eth1", ipv4=None))), 1)
    assert eth1["flags"] == "up" and "ipv4.address" not in eth1


def test_ports_are_named_after_ethN_not_the_position() -> None:
    spec = spec_with(nic("eth0"), nic("eth2"))
    assert nic_ports(spec, "vx") == [host_veth_name("i-1", 0, "vx"), host_veth_name("i-1", 2, "vx")]
    assert keys(config(spec), 1)["veth.pair"] == host_veth_name("i-1", 2, "vx")


def test_macvlan_nic() -> None:
    eth0 = keys(config(spec_with(nic("eth0", driver="macvlan", link="enp1s0", mode="vepa"))), 0)
    assert (eth0["type"], eth0["link"], eth0["macvlan.mode"]) == ("macvlan", "enp1s0", "vepa")
    assert "veth.pair" not in eth0 and eth0["hwaddr"] == "02:00:00:00:00:01"
    assert keys(config(spec_with(nic("eth0", driver="macvlan", link="e0"))), 0)["macvlan.mode"] \
        == "bridge"
    with pytest.raises(InvalidInput, match="unknown macvlan mode"):
        config(spec_with(nic("eth0", driver="macvlan", link="e0", mode="passthru")))


def test_a_limited_nic_runs_the_rate_hooks() -> None:
    eth0 = keys(config(spec_with(nic("eth0", ingress=10**7, egress=2 * 10**6))), 0)
    assert eth0["script.up"] == "/bin/sh /lxc/i-1/rates-eth0.up"
    assert eth0["script.down"] == "/bin/sh /lxc/i-1/rates-eth0.down"


def test_the_hook_scripts_are_the_limiters_steps() -> None:
    port = "vxabc0"
    up = ratelimit.script(port, ratelimit.Rates(10**7, 2 * 10**6)).splitlines()
    assert up[0] == "#!/bin/sh"
    ifb = ratelimit.ifb_name(port)
    assert f"tc qdisc replace dev {port} root handle 1: tbf rate 10000000bit burst 32768 " \
        "latency 50ms || exit 1" in up
    assert f"ip link add {ifb} type ifb 2>/dev/null || true" in up
    assert f"ip link set dev {ifb} alias 'lxcloud-rate {port}' up || exit 1" in up
    assert any(ln.startswith(f"tc filter replace dev {port} parent ffff: ") and
               f"mirred egress redirect dev {ifb} || exit 1" in ln for ln in up)
    down = ratelimit.script(port, ratelimit.Rates()).splitlines()
    assert all(ln.endswith("|| true") for ln in down if ln and not ln.startswith(("#", "PATH")))
    assert f"ip link del {ifb} 2>/dev/null || true" in down
    assert ratelimit.steps(port, ratelimit.Rates(ingress=10**6))[0].argv[:4] == (
        "tc", "qdisc", "replace", "dev")
    assert ratelimit.burst(8000) == ratelimit.MIN_BURST


@pytest.mark.parametrize("text, bits", [
    ("10Mbit", 10**7), ("10mbit", 10**7), ("512Kbit", 512_000), ("1Gbit/s", 10**9),
    ("8000bit/s", 8000), ("0", 0), (None, 0), (2_500_000, 2_500_000), ("1.5Mbit", 1_500_000),
])
def test_rates_parse(text: str | int | None, bits: int) -> None:
    assert parse_rate(text) == bits


@pytest.mark.parametrize("text", ["fast", "10MB", "10 Mbps", "-1Mbit", "100bit", "101Gbit"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_rate(text, "egress")


def test_rates_print() -> None:
    assert [format_rate(n) for n in (0, 10**7, 512_000, 10**9, 1_500_000, 8001)] == [
        "", "10Mbit", "512Kbit", "1Gbit", "1500Kbit", "8001bit"]
