"""IPAM helpers: plans, free-address search, exhaustion, subnet choice avoiding host networks, MACs."""

from __future__ import annotations

import ipaddress

import pytest

from lxcloud.core.errors import Exhausted, InvalidInput
from lxcloud.core.ipam import NetworkPlan, mac_for, next_free, pick_subnet


def test_plan_layout() -> None:
    p = NetworkPlan.from_cidr("10.213.4.0/24")
    assert (p.network, p.gateway, p.first, p.last, p.broadcast) == (
        "10.213.4.0", "10.213.4.1", "10.213.4.2", "10.213.4.254", "10.213.4.255")
    assert p.prefix == 24 and p.netmask == "255.255.255.0" and p.size == 253
    assert p.is_usable("10.213.4.2") and p.is_usable("10.213.4.254")
    for bad in ("10.213.4.0", "10.213.4.1", "10.213.4.255", "10.213.5.2", "nonsense"):
        assert not p.is_usable(bad)


@pytest.mark.parametrize("cidr", ["10.0.0.1/24", "10.0.0.0/31", "fd00::/64", "banana", "10.0.0.0/33"])
def test_plan_rejects(cidr: str) -> None:
    with pytest.raises(InvalidInput):
        NetworkPlan.from_cidr(cidr)


def test_next_free_skips_gateway_and_used() -> None:
    assert next_free("10.1.2.0/24", set()) == "10.1.2.2"
    assert next_free("10.1.2.0/24", {"10.1.2.2", "10.1.2.3", "10.1.2.5"}) == "10.1.2.4"
    # Addresses outside the usable range don't count as taken.
    assert next_free("10.1.2.0/24", {"10.1.2.1", "10.1.2.0", "192.168.0.2", "junk"}) == "10.1.2.2"


def test_next_free_exhaustion() -> None:
    cidr = "10.9.9.0/29"   # usable .2 .. .6
    used: set[str] = set()
    for _ in range(5):
        used.add(next_free(cidr, used))
    assert used == {f"10.9.9.{i}" for i in range(2, 7)}
    with pytest.raises(Exhausted, match="10.9.9.0/29"):
        next_free(cidr, used)


def test_next_free_30() -> None:
    assert next_free("10.0.0.4/30", set()) == "10.0.0.6"
    with pytest.raises(Exhausted):
        next_free("10.0.0.4/30", {"10.0.0.6"})


def test_pick_subnet_deterministic_and_seeded() -> None:
    a = pick_subnet(taken=[], seed="cloud-a")
    assert a == pick_subnet(taken=[], seed="cloud-a")
    net = ipaddress.ip_network(a)
    assert net.prefixlen == 24 and net.subnet_of(ipaddress.ip_network("10.0.0.0/8"))
    # Different seeds spread over the space (not all the same /24).
    assert len({pick_subnet(taken=[], seed=f"c{i}") for i in range(20)}) > 15


def test_pick_subnet_avoids_overlap() -> None:
    first = pick_subnet(taken=[], seed="s")
    # The address of a host interface inside the chosen subnet pushes the choice elsewhere.
    host_addr = str(ipaddress.ip_network(first)[7]) + "/32"
    second = pick_subnet(taken=[host_addr, "0.0.0.0/0", "fd00::/64"], seed="s")
    assert second != first
    assert not ipaddress.ip_network(second).overlaps(ipaddress.ip_network(first))
    # A wide route covering most of the base leaves only the rest.
    got = pick_subnet("10.0.0.0/22", 24, taken=["10.0.0.0/23", "10.0.3.0/24"], seed="x")
    assert got == "10.0.2.0/24"


def test_pick_subnet_exhausted() -> None:
    with pytest.raises(Exhausted):
        pick_subnet("10.250.0.0/23", 24, taken=["10.250.0.0/24", "10.250.1.77/32"], seed="x")
    with pytest.raises(Exhausted):
        pick_subnet("10.0.0.0/8", 24, taken=["10.0.0.0/8"], seed="x")


def test_pick_subnet_bad_prefix() -> None:
    with pytest.raises(InvalidInput):
        pick_subnet("10.0.0.0/16", 8, seed="x")


def test_mac_for_stable_local_unicast() -> None:
    m = mac_for("10.0.0.2", "cloud")
    assert m == mac_for("10.0.0.2", "cloud")
    assert m != mac_for("10.0.0.3", "cloud") and m != mac_for("10.0.0.2", "other")
    octets = [int(x, 16) for x in m.split(":")]
    assert len(octets) == 6
    assert octets[0] & 0x01 == 0 and octets[0] & 0x02 == 0x02
    macs = {mac_for(f"10.0.{i // 256}.{i % 256}", "c") for i in range(2000)}
    assert len(macs) == 2000
