"""publicnat's checks and element diffs, without the kernel (a recording Nft stand-in)."""

from __future__ import annotations

from typing import Any

import pytest

from lxcloud.core.errors import InvalidInput
from lxcloud.drivers.network import publicnat as pn
from lxcloud.drivers.network.publicnat import (
    AddressPool,
    Association,
    PortForward,
    PublicNat,
    check,
)


def test_pool_membership() -> None:
    pool = AddressPool("eth0", "192.0.2.10", "192.0.2.20")
    assert "192.0.2.10" in pool and "192.0.2.20" in pool
    assert "192.0.2.9" not in pool and "192.0.2.21" not in pool


@pytest.mark.parametrize("nat", [
    PublicNat("t", (AddressPool("eth0", "192.0.2.20", "192.0.2.10"),)),
    PublicNat("t", (AddressPool("", "192.0.2.1", "192.0.2.2"),)),
    PublicNat("t", (AddressPool("a-very-long-interface", "192.0.2.1", "192.0.2.2"),)),
    PublicNat("t", associations=(Association("192.0.2.1", "10.0.0.300", "eth0"),)),
    PublicNat("t", associations=(Association("192.0.2.1", "10.0.0.3", "eth0"),
                                 Association("192.0.2.1", "10.0.0.4", "eth0"))),
    PublicNat("t", associations=(Association("192.0.2.1", "10.0.0.3", "eth0"),
                                 Association("192.0.2.2", "10.0.0.3", "eth0"))),
    PublicNat("t", forwards=(PortForward("192.0.2.1", "icmp", 1, "10.0.0.3", 1),)),
    PublicNat("t", forwards=(PortForward("192.0.2.1", "tcp", 65536, "10.0.0.3", 1),)),
    PublicNat("t", forwards=(PortForward("192.0.2.1", "tcp", 80, "10.0.0.3", 80),
                             PortForward("192.0.2.1", "tcp", 80, "10.0.0.4", 80))),
])
def test_check_refuses(nat: PublicNat) -> None:
    with pytest.raises(InvalidInput):
        check(nat)


def test_check_accepts_one_address_per_interface_and_forwards_beside_it() -> None:
    check(PublicNat("t", (AddressPool("eth0", "192.0.2.1", "192.0.2.9"),),
                    (Association("192.0.2.1", "10.0.0.3", "eth0"),
                     Association("198.51.100.1", "10.0.0.3", "eth1")),
                    (PortForward("192.0.2.1", "tcp", 80, "10.0.0.4", 8080, "eth0"),
                     PortForward("192.0.2.1", "udp", 80, "10.0.0.4", 8080, "eth0"))))


def _elements(cmds: list[dict[str, Any]], op: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for c in cmds:
        if op in c and "element" in c[op]:
            out.setdefault(c[op]["element"]["name"], []).extend(c[op]["element"]["elem"])
    return out


def test_diff_touches_only_what_changed_and_deletes_before_adding() -> None:
    a1 = Association("192.0.2.1", "10.0.0.3", "eth0")
    a2 = Association("192.0.2.2", "10.0.0.4", "eth0")
    f = PortForward("192.0.2.5", "tcp", 80, "10.0.0.4", 8080)
    old = pn._state_of(PublicNat("t", (), (a1, a2), (f,)))
    new = pn._state_of(PublicNat("t", (), (a1, Association("192.0.2.2", "10.0.0.6", "eth0")),
                                 (PortForward("192.0.2.5", "tcp", 80, "10.0.0.4", 9090),)))
    cmds = pn._diff("t", old, new)
    deleted, added = _elements(cmds, "delete"), _elements(cmds, "add")
    assert deleted == {pn.DNAT: ["192.0.2.2"], pn.SNAT: [{"concat": ["10.0.0.4", "eth0"]}],
                       pn.FWD_PORT: [{"concat": ["192.0.2.5", "tcp", 80]}]}
    assert added == {pn.DNAT: [["192.0.2.2", "10.0.0.6"]],
                     pn.SNAT: [[{"concat": ["10.0.0.6", "eth0"]}, "192.0.2.2"]],
                     pn.FWD_PORT: [[{"concat": ["192.0.2.5", "tcp", 80]}, 9090]],
                     pn.TARGETS: ["10.0.0.6"]}      # 10.0.0.4 stays: the forward targets it
    last_delete = max(i for i, c in enumerate(cmds) if "delete" in c)
    assert last_delete < min(i for i, c in enumerate(cmds) if "add" in c)
    assert pn._diff("t", new, new) == []


def test_parse_reads_back_what_diff_writes() -> None:
    nat = PublicNat("t", (), (Association("192.0.2.1", "10.0.0.3", "eth0"),),
                    (PortForward("192.0.2.5", "udp", 53, "10.0.0.4", 5353),))
    state = pn._state_of(nat)
    listing: list[dict[str, Any]] = []
    for name, elems in _elements(pn._diff("t", pn._State(), state), "add").items():
        kind = "set" if pn.MAPS[name][1] is None else "map"
        listing.append({kind: {"name": name, "elem": elems}})
    assert pn._parse(listing) == state
    assert state.associations() == list(nat.associations)
