"""The network driver contract: host bridges, NAT and firewall rules for one cloud."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class NetworkCaps:
    nat: bool = True
    dhcp: bool = False
    overlay: bool = False


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


class NetworkDriver(Protocol):
    name: str
    caps: NetworkCaps

    def ensure(self, spec: NetworkSpec) -> None:
        """Create or repair the bridge, its address and its NAT/forward rules. Idempotent."""

    def teardown(self, spec: NetworkSpec) -> None:
        """Remove the bridge and the rules. Missing: no-op."""

    def exists(self, spec: NetworkSpec) -> bool: ...
