"""Network drivers by name ("bridge", "macvlan"; vxlan later; "fake" for tests)."""

from __future__ import annotations

from typing import Any

from lxcloud.drivers.network.base import NetworkDriver
from lxcloud.drivers.registry import Registry

NETWORK: Registry[NetworkDriver] = Registry("network")
NETWORK.add("bridge", "lxcloud.drivers.network.bridge:BridgeDriver")
NETWORK.add("macvlan", "lxcloud.drivers.network.macvlan:MacvlanDriver")
NETWORK.add("fake", "lxcloud.drivers.network.fake:FakeNetwork")


def get_network_driver(name: str, **kw: Any) -> NetworkDriver:
    """A new network driver `name` built with `kw`; Unsupported for an unknown name."""
    return NETWORK.get(name, **kw)


def network_driver_names() -> list[str]:
    return NETWORK.names()
