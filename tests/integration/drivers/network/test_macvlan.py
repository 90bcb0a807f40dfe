"""Direct attachment (macvlan) with real containers: what each mode lets through, as the kernel
does it. A veth pair stands in for the physical interface: one end is the parent on the host, the
other end is in a network namespace playing the outside host (the segment's router, gateway .1),
optionally behind a bridge with hairpin on that port (a switch doing 802.1Qbg reflective relay).
Two containers sit on the parent, each with a macvlan device of the mode under test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from lxcloud.core.errors import InvalidInput
from lxcloud.core.instance import Nic
from lxcloud.core.proc import run
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.drivers.network.macvlan import MacvlanDriver
from lxcloud.drivers.network.registry import get_network_driver
from tests.integration.conftest import Box, Launcher, free_subnet, wait_for

pytestmark = pytest.mark.root


@dataclass
class Segment:
    parent: str          # the host end: what the macvlans sit on
    outside: str         # the network namespace beyond the wire
    net: str             # "10.250.N"
    hairpin: bool

    def nic(self, host: int, mode: str) -> Nic:
        return Nic(network="net-direct", mac="02:02:" + secrets.token_bytes(4).hex(":"),
                   ipv4=f"{self.net}.{host}", prefix=24, gateway=f"{self.net}.1",
                   link=self.parent, driver="macvlan", mode=mode)


def make_segment(hairpin: bool) -> Iterator[Segment]:
    tag = secrets.token_hex(3)
    seg = Segment(parent=f"lxmp{tag}", outside=f"lxmo{tag}",
                  net=str(free_subnet().network_address).rsplit(".", 1)[0], hairpin=hairpin)
    wire = f"lxmw{tag}"
    ns = ["ip", "netns", "exec", seg.outside]
    try:
        run(["ip", "netns", "add", seg.outside])
        run(["ip", "link", "add", seg.parent, "type", "veth", "peer", "name", wire])
        run(["ip", "link", "set", wire, "netns", seg.outside])
        run(["ip", "link", "set", seg.parent, "up"])
        run([*ns, "ip", "link", "set", "lo", "up"])
        run([*ns, "ip", "link", "set", wire, "up"])
        if hairpin:
            run([*ns, "ip", "link", "add", "br0", "type", "bridge"])
            run([*ns, "ip", "link", "set", wire, "master", "br0"])
            run([*ns, "ip", "link", "set", "dev", wire, "type", "bridge_slave", "hairpin", "on"])
            run([*ns, "ip", "link", "set", "br0", "up"])
            run([*ns, "ip", "addr", "add", f"{seg.net}.1/24", "dev", "br0"])
        else:
            run([*ns, "ip", "addr", "add", f"{seg.net}.1/24", "dev", wire])
        yield seg
    finally:
        run(["ip", "link", "del", seg.parent], check=False)     # takes the wire with it
        run(["ip", "netns", "del", seg.outside], check=False)


@pytest.fixture
def segment() -> Iterator[Segment]:
    yield from make_segment(hairpin=False)


@pytest.fixture
def hairpin_segment() -> Iterator[Segment]:
    yield from make_segment(hairpin=True)


def on_segment(launch: Launcher, seg: Segment, host: int, mode: str) -> Box:
    box = launch(nic=False, start=False)
    box.spec = replace(box.spec, nics=(seg.nic(host, mode),))
    box.driver.create(box.spec, box.rootfs)
    box.driver.start(box.name)
    return box


def pings(box: Box, ip: str, tries: int = 1) -> bool:
    r = box.driver.exec(box.name, ["ping", "-c", str(tries), "-W", "1", ip], timeout=30)
    return r.exit_code == 0


def pair(launch: Launcher, seg: Segment, mode: str) -> tuple[Box, Box]:
    """Two containers on the segment, each seen reaching the outside host (both are up)."""
    a, b = on_segment(launch, seg, 10, mode), on_segment(launch, seg, 11, mode)
    for box in (a, b):
        wait_for(lambda box=box: pings(box, f"{seg.net}.1"), 15,   # type: ignore[misc]
                 f"{box.name} reaching the outside host over its {mode} macvlan")
    return a, b


def test_macvlan_definition_puts_the_container_on_the_parents_segment(
        launch: Launcher, segment: Segment) -> None:
    box = on_segment(launch, segment, 10, "bridge")
    pid = box.driver.init_pid(box.name)
    out = run(["nsenter", "-t", str(pid), "-n", "ip", "-d", "-o", "link", "show", "eth0"]
              ).stdout.decode()          # the host's ip, in the container's network namespace
    assert "macvlan mode bridge" in out and box.spec.nics[0].mac in out
    wait_for(lambda: pings(box, f"{segment.net}.1"), 15, "the outside host answering")
    # the outside host sees the container's own MAC, straight on the wire (no NAT, no bridge)
    neigh = run(["ip", "netns", "exec", segment.outside, "ip", "neigh", "show",
                 f"{segment.net}.10"]).stdout.decode()
    assert box.spec.nics[0].mac in neigh
    cfg = (box.driver.lxcpath / box.name / "config").read_text()
    assert f"lxc.net.0.link = {segment.parent}" in cfg and "veth" not in cfg


def test_private_macvlans_do_not_reach_each_other_but_reach_the_outside(
        launch: Launcher, segment: Segment) -> None:
    a, b = pair(launch, segment, "private")
    assert not pings(a, f"{segment.net}.11", 2) and not pings(b, f"{segment.net}.10", 2)


def test_private_macvlans_stay_apart_even_when_the_outside_hairpins(
        launch: Launcher, hairpin_segment: Segment) -> None:
    a, b = pair(launch, hairpin_segment, "private")
    assert not pings(a, f"{hairpin_segment.net}.11", 2)


def test_bridge_macvlans_reach_each_other_inside_the_host(launch: Launcher,
                                                          segment: Segment) -> None:
    a, b = pair(launch, segment, "bridge")
    assert pings(a, f"{segment.net}.11") and pings(b, f"{segment.net}.10")


def test_vepa_macvlans_do_not_reach_each_other_without_a_hairpin_outside(
        launch: Launcher, segment: Segment) -> None:
    a, b = pair(launch, segment, "vepa")
    assert not pings(a, f"{segment.net}.11", 2)


def test_vepa_macvlans_reach_each_other_through_the_outside_hairpin(
        launch: Launcher, hairpin_segment: Segment) -> None:
    a, b = pair(launch, hairpin_segment, "vepa")
    assert pings(a, f"{hairpin_segment.net}.11") and pings(b, f"{hairpin_segment.net}.10")


# --- the driver's checks
def spec_on(parent: str, **kw: str) -> NetworkSpec:
    return NetworkSpec(name="direct", bridge="", cidr="10.250.0.0/24", gateway="10.250.0.1",
                       driver="macvlan", parent=parent, **kw)   # type: ignore[arg-type]


def test_the_driver_checks_the_parent_and_the_mode(segment: Segment) -> None:
    drv = get_network_driver("macvlan")
    assert isinstance(drv, MacvlanDriver)
    assert not (drv.caps.dhcp or drv.caps.security_groups or drv.caps.rate_limits
                or drv.caps.anti_spoofing)
    drv.ensure(spec_on(segment.parent, macvlan_mode="vepa"))
    assert drv.exists(spec_on(segment.parent))
    drv.teardown(spec_on(segment.parent))
    assert run(["ip", "link", "show", segment.parent], check=False).returncode == 0   # untouched
    with pytest.raises(InvalidInput, match="unknown parent interface 'lxmpnothere'"):
        drv.ensure(spec_on("lxmpnothere"))
    assert not drv.exists(spec_on("lxmpnothere"))
    with pytest.raises(InvalidInput, match="unknown macvlan mode"):
        drv.ensure(spec_on(segment.parent, macvlan_mode="passthru"))
    with pytest.raises(InvalidInput, match="parent interface"):
        drv.ensure(spec_on("lo"))
    run(["ip", "link", "set", segment.parent, "down"])
    with pytest.raises(InvalidInput, match="is down"):
        drv.ensure(spec_on(segment.parent))
