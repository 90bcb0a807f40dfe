"""IP address management helpers: subnet plans, free-address search, subnet choice, stable MACs.

Pure functions, no I/O: the database's allocator calls them with what it knows is taken.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from lxcloud.core.errors import Exhausted, InvalidInput

IPv4Net = ipaddress.IPv4Network


def _net(cidr: str) -> IPv4Net:
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as e:
        raise InvalidInput(f"invalid network {cidr!r}: {e}", cidr=cidr) from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidInput(f"only IPv4 networks are supported, not {cidr!r}", cidr=cidr)
    return net


@dataclass(frozen=True)
class NetworkPlan:
    """The fixed layout of one subnet: the gateway is the first host, instances get the rest."""

    cidr: str        # "10.213.4.0/24"
    network: str     # "10.213.4.0"
    prefix: int      # 24
    netmask: str     # "255.255.255.0"
    gateway: str     # "10.213.4.1"
    first: str       # first address an instance may get: "10.213.4.2"
    last: str        # last one: "10.213.4.254"
    broadcast: str   # "10.213.4.255"

    @classmethod
    def from_cidr(cls, cidr: str) -> NetworkPlan:
        """Raises InvalidInput for a malformed CIDR or one too small to hold gateway + one instance."""
        net = _net(cidr)
        if net.prefixlen > 30:
            raise InvalidInput(f"network {cidr} is too small: need at least a /30", cidr=cidr)
        base = int(net.network_address)
        addr = ipaddress.IPv4Address
        return cls(cidr=str(net), network=str(net.network_address), prefix=net.prefixlen,
                   netmask=str(net.netmask), gateway=str(addr(base + 1)), first=str(addr(base + 2)),
                   last=str(addr(int(net.broadcast_address) - 1)), broadcast=str(net.broadcast_address))

    @property
    def size(self) -> int:
        """How many addresses instances may get."""
        return int(ipaddress.IPv4Address(self.last)) - int(ipaddress.IPv4Address(self.first)) + 1

    def is_usable(self, ip: str) -> bool:
        """True if ip may be given to an instance (inside, not network/gateway/broadcast)."""
        try:
            n = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return False
        return int(ipaddress.IPv4Address(self.first)) <= n <= int(ipaddress.IPv4Address(self.last))


def next_free(cidr: str, used: set[str]) -> str:
    """The lowest usable address of cidr not in used. Raises Exhausted when none is left."""
    plan = NetworkPlan.from_cidr(cidr)
    first = int(ipaddress.IPv4Address(plan.first))
    last = int(ipaddress.IPv4Address(plan.last))
    # Only addresses inside the usable range can collide; anything else in `used` is ignored.
    # (inet_aton, not ipaddress: this runs on every launch over every address of the network)
    taken = set()
    for ip in used:
        try:
            n = int.from_bytes(socket.inet_aton(ip), "big") if ip.count(".") == 3 else -1
        except OSError:
            continue
        if first <= n <= last:
            taken.add(n)
    if len(taken) >= last - first + 1:
        raise Exhausted(f"network {plan.cidr} has no free address left ({plan.size} in use)",
                        cidr=plan.cidr, size=plan.size)
    for n in range(first, last + 1):
        if n not in taken:
            return str(ipaddress.IPv4Address(n))
    raise AssertionError("unreachable: a free address was counted")  # pragma: no cover


def _seed_int(seed: str, salt: str = "") -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}{seed}".encode()).digest()[:8], "big")


def pick_subnet(candidates_base: str = "10.0.0.0/8", prefix: int = 24, *, taken: Iterable[str] = (),
                seed: str) -> str:
    """Choose a /prefix inside candidates_base that overlaps none of `taken`.

    Deterministic: the same seed (the cloud id) and the same taken list give the same subnet, so a
    restarted cloud picks again what it picked before. Raises Exhausted when every candidate overlaps.
    """
    base = _net(candidates_base)
    if not base.prefixlen <= prefix <= 30:
        raise InvalidInput(f"prefix /{prefix} must be between /{base.prefixlen} and /30",
                           prefix=prefix)
    taken_nets: list[IPv4Net] = []
    for t in taken:
        try:
            n = ipaddress.ip_network(t, strict=False)
        except ValueError:
            raise InvalidInput(f"invalid taken network {t!r}") from None
        # Default routes (/0) say nothing about which addresses are in use; IPv6 cannot overlap.
        if isinstance(n, ipaddress.IPv4Network) and n.prefixlen > 0 and n.overlaps(base):
            taken_nets.append(n)
    count = 1 << (prefix - base.prefixlen)
    step = 1 << (32 - prefix)
    start = _seed_int(seed) % count
    base_int = int(base.network_address)
    for i in range(count):
        k = (start + i) % count
        cand = ipaddress.IPv4Network((base_int + k * step, prefix))
        if not any(cand.overlaps(t) for t in taken_nets):
            return str(cand)
    raise Exhausted(f"no free /{prefix} left in {base}: every one overlaps a host network",
                    base=str(base), prefix=prefix)


def mac_for(ip: str, seed: str) -> str:
    """A stable locally administered unicast MAC for (seed, ip): same inputs, same MAC."""
    b = bytearray(hashlib.sha256(f"{seed}|{ip}".encode()).digest()[:6])
    b[0] = (b[0] & 0xFC) | 0x02   # clear multicast bit, set locally-administered bit
    return ":".join(f"{x:02x}" for x in b)
