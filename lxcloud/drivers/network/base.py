"""The network driver contract: host bridges, NAT and firewall rules for one cloud."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from lxcloud.core.caps import NetworkCaps
from lxcloud.core.errors import InvalidInput
from lxcloud.core.ipam import NetworkPlan

IFNAMSIZ = 15


@dataclass(frozen=True)
class NetworkSpec:
    name: str          # the network's name in the cloud ("default")
    bridge: str        # host bridge interface (≤ 15 chars)
    cidr: str          # "10.213.4.0/24"
    gateway: str       # "10.213.4.1" (the bridge's own address)
    nat: bool = True
    nft_table: str = "lxcloud"   # one nftables table per cloud
    mtu: int = 1500
    # When set, instances' http://169.254.169.254/ is DNATed to gateway:metadata_port, where the
    # controller serves the EC2 metadata app (lxcloud.api.metadata).
    metadata_port: int | None = None
    driver: str = "bridge"       # the network driver that makes it
    mode: str = "nat"            # nat | routed | isolated
    dns_domain: str = ""         # instances resolve as name.<dns_domain> (and by bare name)
    dhcp_range: tuple[str, str] | None = None   # dnsmasq's range; the whole subnet when None
    parent: str = ""             # macvlan: the host interface whose segment the instances join
    macvlan_mode: str = ""       # macvlan: private | bridge | vepa
    host_ports: tuple[str, ...] = ()   # "tcp/22": what instances may reach on the host, beyond
    #                                    DHCP, DNS and metadata
    bridge_prefix: str = "lxcbr"  # every cloud's bridges start with it (isolation between clouds)


class NetworkDriver(Protocol):
    name: str
    caps: NetworkCaps

    def ensure(self, spec: NetworkSpec) -> None:
        """Create or repair the bridge, its address and its NAT/forward rules. Idempotent."""

    def teardown(self, spec: NetworkSpec) -> None:
        """Remove the bridge and the rules. Missing: no-op."""

    def exists(self, spec: NetworkSpec) -> bool: ...


def check_spec(spec: NetworkSpec) -> NetworkPlan:
    """What every driver refuses before touching the host: a bad interface name, a CIDR that is
    not a network, a gateway outside it. Returns the network's plan."""
    if not spec.bridge or len(spec.bridge) > IFNAMSIZ or "/" in spec.bridge or " " in spec.bridge:
        raise InvalidInput(f"invalid bridge name {spec.bridge!r} (1..{IFNAMSIZ} chars)")
    plan = NetworkPlan.from_cidr(spec.cidr)
    if ipaddress.ip_address(spec.gateway) not in ipaddress.ip_network(plan.cidr):
        raise InvalidInput(f"gateway {spec.gateway} is not inside {spec.cidr}")
    return plan
