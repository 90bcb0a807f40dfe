"""An in-memory NetworkDriver with the bridge driver's contract, for unit tests."""

from __future__ import annotations

import threading

from lxcloud.core.caps import NetworkCaps
from lxcloud.core.errors import DriverError
from lxcloud.drivers.network.base import NetworkSpec, check_spec


class FakeNetwork:
    """Networks as records keyed by bridge; `ensure` checks what the bridge driver checks."""

    name = "fake"
    caps = NetworkCaps(nat=True, dhcp=True, overlay=False)

    def __init__(self, caps: NetworkCaps | None = None) -> None:
        self.networks: dict[str, NetworkSpec] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail: str | None = None      # when set, ensure raises a DriverError with it
        if caps is not None:
            self.caps = caps
        self._lock = threading.Lock()

    @staticmethod
    def key(spec: NetworkSpec) -> str:
        """Its bridge; a network without one (macvlan) by its parent and name."""
        return spec.bridge or f"{spec.parent}:{spec.name}"

    def ensure(self, spec: NetworkSpec) -> None:
        if spec.bridge or spec.driver == "bridge":
            check_spec(spec)
        if self.fail:
            raise DriverError(self.fail)
        with self._lock:
            self.calls.append(("ensure", self.key(spec)))
            self.networks[self.key(spec)] = spec

    def teardown(self, spec: NetworkSpec) -> None:
        with self._lock:
            self.calls.append(("teardown", self.key(spec)))
            self.networks.pop(self.key(spec), None)

    def exists(self, spec: NetworkSpec) -> bool:
        return self.key(spec) in self.networks
