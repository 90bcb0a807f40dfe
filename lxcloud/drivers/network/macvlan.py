"""The macvlan network driver: instances sit directly on a host interface's segment ("direct
networking"), each with a macvlan device of its own on that parent, no bridge, no dnsmasq, no NAT.

The host makes nothing for such a network: liblxc makes each instance's macvlan device on the
parent when the instance starts (`lxc.net.N.type = macvlan`), and it goes with the instance.
`ensure` checks that the parent exists and is up, and the mode is one the kernel knows:

- private: macvlans of one parent never talk to each other, even when the outside would hairpin.
- bridge:  they talk to each other inside the host (and to the outside through the parent).
- vepa:    every frame goes out of the parent; two macvlans talk only when the switch beyond sends
           the frame back (a bridge with hairpin on that port: 802.1Qbg's reflective relay).

What needs a port of ours on the host cannot be promised: there is none (the instance's frames
leave by the parent without crossing anything of ours), so no security groups, no anti-spoofing,
no rate limits, and the host itself cannot reach its macvlan instances through their parent (the
kernel delivers a parent's frames to its macvlans only from the wire). Addresses are the database's
allocation, set statically (the segment's own DHCP server, if any, is not ours).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lxcloud.core.caps import NetworkCaps
from lxcloud.core.errors import DriverError, InvalidInput
from lxcloud.drivers.network.base import IFNAMSIZ, NetworkSpec, check_spec
from lxcloud.drivers.network.netlink import iproute

MODES = ("private", "bridge", "vepa")
_IFF_UP = 0x1


def macvlan_mode(mode: str) -> str:
    """`mode` checked ("" is bridge); InvalidInput naming the modes otherwise."""
    if not mode:
        return "bridge"
    if mode not in MODES:
        raise InvalidInput(f"unknown macvlan mode {mode!r} (one of {', '.join(MODES)})",
                           mode=mode)
    return mode


def check_parent_name(parent: str) -> None:
    if not parent:
        raise InvalidInput("a macvlan network needs a parent interface (--parent IFACE)")
    if len(parent) > IFNAMSIZ or any(c in parent for c in "/ \n\r\t\0:"):
        raise InvalidInput(f"invalid parent interface name {parent!r}", parent=parent)


class MacvlanDriver:
    """NetworkDriver of direct attachment. Stateless; one netlink socket per call."""

    name = "macvlan"
    caps = NetworkCaps(nat=False, dhcp=False, overlay=False, static_addresses=True,
                       security_groups=False, anti_spoofing=False, rate_limits=False,
                       host_reachable=False, hotplug=True)

    def check(self, spec: NetworkSpec) -> None:
        """What ensure checks, without changing anything: the subnet, the mode, the parent (it
        exists, it is up, it is not a loopback). InvalidInput naming what is wrong."""
        check_parent_name(spec.parent)
        check_spec(replace(spec, bridge=spec.parent))   # no bridge of ours: the subnet, gateway
        macvlan_mode(spec.macvlan_mode)
        link = self._parent(spec.parent)
        if link is None:
            raise InvalidInput(f"unknown parent interface {spec.parent!r} on this host",
                               parent=spec.parent)
        if link.get_attr("IFLA_ADDRESS") in (None, "00:00:00:00:00:00"):
            raise InvalidInput(f"parent interface {spec.parent!r} has no MAC address (a "
                               "loopback or a tunnel): macvlans need an Ethernet segment",
                               parent=spec.parent)
        if not link["flags"] & _IFF_UP:
            raise InvalidInput(f"parent interface {spec.parent!r} is down "
                               f"(ip link set {spec.parent} up)", parent=spec.parent)

    # --- the contract
    def ensure(self, spec: NetworkSpec) -> None:
        """Checks only: the devices are made with each instance."""
        self.check(spec)

    def teardown(self, spec: NetworkSpec) -> None:
        """Nothing of the network's own is on the host (the instances' devices go with them)."""

    def exists(self, spec: NetworkSpec) -> bool:
        """True when the parent is there (the network is usable)."""
        return bool(spec.parent) and self._parent(spec.parent) is not None

    @staticmethod
    def _parent(name: str) -> Any:
        ipr = iproute()
        try:
            found = ipr.link_lookup(ifname=name)
            return ipr.get_links(found[0])[0] if found else None
        except Exception as e:
            raise DriverError(f"cannot look up interface {name}: {e}") from e
        finally:
            ipr.close()
