"""An in-memory NetworkDriver with the bridge driver's contract, for unit tests."""

from __future__ import annotations

import threading

from lxcloud.core.caps import NetworkCaps
from lxcloud.drivers.network.base import NetworkSpec, check_spec


class FakeNetwork:
    """Networks as records keyed by bridge; `ensure` checks what the bridge driver checks."""

    name = "fake"
    caps = NetworkCaps(nat=True, dhcp=True, overlay=False)

    def __init__(self) -> None:
        self.networks: dict[str, NetworkSpec] = {}
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def ensure(self, spec: NetworkSpec) -> None:
        check_spec(spec)
        with self._lock:
            self.calls.append(("ensure", spec.bridge))
            self.networks[spec.bridge] = spec

    def teardown(self, spec: NetworkSpec) -> None:
        with self._lock:
            self.calls.append(("teardown", spec.bridge))
            self.networks.pop(spec.bridge, None)

    def exists(self, spec: NetworkSpec) -> bool:
        return spec.bridge in self.networks
