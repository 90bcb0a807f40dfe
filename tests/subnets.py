"""Test subnets: a random 10.250.x.0/24 that nothing on the host (nor another test of this run) uses."""

from __future__ import annotations

import ipaddress
import random

_reserved: set[str] = set()


def free_subnet() -> str:
    from lxcloud.drivers.network.bridge import host_networks

    used = [ipaddress.ip_network(n, strict=False) for n in host_networks()]
    for _ in range(500):
        cand = f"10.250.{random.randint(0, 255)}.0/24"
        net = ipaddress.ip_network(cand)
        if cand not in _reserved and not any(net.overlaps(u) for u in used):
            _reserved.add(cand)
            return cand
    raise RuntimeError("no free 10.250.x.0/24 on this host")
