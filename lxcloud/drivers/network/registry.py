"""Network drivers by name: a name → constructor map (add "macvlan", "vxlan", "fake" here)."""

from __future__ import annotations

from collections.abc import Callable

from lxcloud.core.errors import Unsupported
from lxcloud.drivers.network.base import NetworkDriver


def _bridge() -> NetworkDriver:
    from lxcloud.drivers.network.bridge import BridgeDriver  # late: keeps pyroute2 off import paths
    return BridgeDriver()


DRIVERS: dict[str, Callable[[], NetworkDriver]] = {
    "bridge": _bridge,
}


def get_network_driver(name: str) -> NetworkDriver:
    """A new driver instance for name. Raises Unsupported for an unknown name."""
    try:
        factory = DRIVERS[name]
    except KeyError:
        raise Unsupported(f"unknown network driver {name!r} (known: {', '.join(sorted(DRIVERS))})",
                          driver=name) from None
    return factory()


def network_driver_names() -> list[str]:
    return sorted(DRIVERS)
