"""The bridge network driver: one Linux bridge per network, its gateway address, NAT and forward rules.

Netlink through pyroute2 (an order of magnitude faster than spawning `ip`); rules through firewall.py.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from lxcloud.core.caps import NetworkCaps
from lxcloud.core.errors import DriverError
from lxcloud.core.ipam import NetworkPlan, mac_for
from lxcloud.drivers.network.base import NetworkSpec, check_spec
from lxcloud.drivers.network.firewall import Firewall
from lxcloud.drivers.network.netlink import NetlinkSocket, iproute

log = logging.getLogger(__name__)

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
_IFF_UP = 0x1
_ENODEV = 19
_EEXIST = 17
_EADDRNOTAVAIL = 99


def host_networks(interface: str | None = None) -> list[str]:
    """Every IPv4 network the host already uses: its addresses' subnets and its routes (all tables);
    `interface`: only those on that interface.

    Default routes are left out (they would overlap everything). Feed this to ipam.pick_subnet.
    """
    ipr = iproute()
    try:
        idx = None
        if interface is not None:
            found = ipr.link_lookup(ifname=interface)
            if not found:
                return []
            idx = found[0]
        nets: set[ipaddress.IPv4Network] = set()
        for a in ipr.get_addr(family=2):
            addr = a.get("IFA_ADDRESS") or a.get("IFA_LOCAL")
            if addr and (idx is None or a["index"] == idx):
                nets.add(ipaddress.IPv4Network(f"{addr}/{a['prefixlen']}", strict=False))
        for r in ipr.get_routes(family=2):   # no table filter: a dump of every routing table
            dst, plen = r.get("RTA_DST"), r["dst_len"]
            if idx is not None and r.get("RTA_OIF") != idx:
                continue
            if dst and plen > 0:
                nets.add(ipaddress.IPv4Network(f"{dst}/{plen}", strict=False))
        # The local table repeats every address as a /32: collapse into the covering networks.
        return [str(n) for n in ipaddress.collapse_addresses(nets)]
    finally:
        ipr.close()


def host_interfaces() -> list[str]:
    """The names of the host's network interfaces (this network namespace)."""
    ipr = iproute()
    try:
        return sorted(str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links())
    finally:
        ipr.close()


def enable_ip_forward() -> None:
    """Turn on IPv4 forwarding (per network namespace); a no-op when it already is."""
    try:
        if IP_FORWARD.read_text().strip() != "1":
            IP_FORWARD.write_text("1\n")
    except OSError as e:
        raise DriverError(f"cannot enable IPv4 forwarding: {e}") from e


class BridgeDriver(NetlinkSocket):
    """NetworkDriver over a Linux bridge + nftables. Thread-safe; one netlink socket, opened lazily."""

    name = "bridge"
    # DHCP is served next to it by dns.DnsmasqSupervisor; no overlay (that is vxlan's job).
    caps = NetworkCaps(nat=True, dhcp=True, overlay=False)

    def __init__(self, firewall: Firewall | None = None) -> None:
        super().__init__()
        self.firewall = firewall or Firewall()

    def __enter__(self) -> BridgeDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the contract
    def ensure(self, spec: NetworkSpec) -> None:
        """Create or repair the bridge (no STP, no forward delay), its gateway address, MTU, up,
        then the nftables rules and IPv4 forwarding. Idempotent."""
        plan = check_spec(spec)
        with self._lock:
            try:
                idx = self._ensure_link(spec)
                self._ensure_addr(idx, spec, plan)
            except DriverError:
                raise
            except Exception as e:   # pyroute2's NetlinkError and friends
                raise DriverError(f"bridge {spec.bridge}: {e}") from e
        self.firewall.apply(spec)
        enable_ip_forward()

    def teardown(self, spec: NetworkSpec) -> None:
        """Remove the rules, then the bridge. Missing: no-op."""
        self.firewall.remove_network(spec)
        with self._lock:
            idx = self._index(spec.bridge)
            if idx is None:
                return
            try:
                self._nl().link("del", index=idx)
            except Exception as e:
                if getattr(e, "code", None) != _ENODEV:
                    raise DriverError(f"cannot delete bridge {spec.bridge}: {e}") from e

    def exists(self, spec: NetworkSpec) -> bool:
        """True when the bridge exists (rules are repaired by ensure, not checked here)."""
        with self._lock:
            return self._index(spec.bridge) is not None

    # --- helpers
    def _index(self, ifname: str) -> int | None:
        found = self._nl().link_lookup(ifname=ifname)
        return found[0] if found else None

    def _ensure_link(self, spec: NetworkSpec) -> int:
        ipr = self._nl()
        idx = self._index(spec.bridge)
        if idx is None:
            try:
                ipr.link("add", ifname=spec.bridge, kind="bridge", br_stp_state=0,
                         br_forward_delay=0, mtu=spec.mtu)
            except Exception as e:
                if getattr(e, "code", None) != _EEXIST:   # lost a race with another ensure: fine
                    raise
            idx = self._index(spec.bridge)
            if idx is None:
                raise DriverError(f"bridge {spec.bridge} vanished right after creation")
        link = ipr.get_links(idx)[0]
        kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        if kind != "bridge":
            raise DriverError(f"interface {spec.bridge} exists but is a {kind or 'plain'} link, "
                              "not a bridge")
        data = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        if data is not None and (data.get("IFLA_BR_STP_STATE") or data.get("IFLA_BR_FORWARD_DELAY")):
            ipr.link("set", index=idx, kind="bridge", br_stp_state=0, br_forward_delay=0)
        if link.get("IFLA_MTU") != spec.mtu:
            ipr.link("set", index=idx, mtu=spec.mtu)
        # A bridge without an address of its own takes its lowest port's: each instance joining
        # or leaving could change the gateway's MAC under its neighbours' ARP caches (their
        # gateway unreachable until the entries expire). A fixed one, set once, stays.
        mac = mac_for(spec.bridge, "bridge")
        if link.get_attr("IFLA_ADDRESS") != mac:
            ipr.link("set", index=idx, address=mac)
        if not link["flags"] & _IFF_UP:
            ipr.link("set", index=idx, state="up")
        return int(idx)

    def _ensure_addr(self, idx: int, spec: NetworkSpec, plan: NetworkPlan) -> None:
        ipr = self._nl()
        have = [(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)]
        for addr, plen in have:
            # Our gateway with a wrong prefix would route the subnet wrong: replace it.
            if addr == spec.gateway and plen != plan.prefix:
                log.info("bridge %s: replacing %s/%s with /%s", spec.bridge, addr, plen, plan.prefix)
                ipr.addr("del", index=idx, address=addr, prefixlen=plen)
        if (spec.gateway, plan.prefix) not in have:
            try:
                ipr.addr("add", index=idx, address=spec.gateway, prefixlen=plan.prefix,
                         broadcast=plan.broadcast)
            except Exception as e:
                if getattr(e, "code", None) != _EEXIST:
                    raise
