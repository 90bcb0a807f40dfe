"""A fake node (the node protocol in memory) for unit tests of the services and APIs."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from lxcloud.core.errors import DriverError, NotFound
from lxcloud.drivers.compute.base import ExecResult, HostState
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.node.protocol import LaunchRequest


class FakeNode:
    name = "local"

    def __init__(self) -> None:
        self.states: dict[str, HostState] = {}
        self.requests: dict[str, LaunchRequest] = {}
        self.networks: list[NetworkSpec] = []
        self.dns: dict[str, str] = {}
        self.bases: set[str] = set()
        self.fail_launch: str | None = None
        self.gate: threading.Event | None = None   # when set, launches wait on it
        self.mu = threading.Lock()

    def prepare(self) -> None:
        pass

    def ensure_network(self, spec: NetworkSpec) -> None:
        self.networks.append(spec)

    def update_dns(self, spec: NetworkSpec, hosts: dict[str, str]) -> None:
        self.dns = dict(hosts)

    def launch(self, req: LaunchRequest, progress: Any = None) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_launch:
            raise DriverError(self.fail_launch)
        with self.mu:
            self.bases.add(req.image_id)
            self.requests[req.instance_id] = req
            self.states[req.instance_id] = HostState.RUNNING if req.start else HostState.STOPPED

    def sync_ports(self, addresses: dict[str, str]) -> None:
        self.ports = dict(addresses)

    def redefine(self, req: LaunchRequest) -> None:
        self._get(req.instance_id)
        self.requests[req.instance_id] = req

    def _get(self, iid: str) -> HostState:
        if iid not in self.states:
            raise NotFound(f"container {iid} not found")
        return self.states[iid]

    def start(self, iid: str) -> None:
        self._get(iid)
        self.states[iid] = HostState.RUNNING

    def stop(self, iid: str, force: bool = False, timeout: float = 30) -> None:
        self._get(iid)
        self.states[iid] = HostState.STOPPED

    def reboot(self, iid: str) -> None:
        self._get(iid)

    def freeze(self, iid: str) -> None:
        self._get(iid)
        self.states[iid] = HostState.FROZEN

    def unfreeze(self, iid: str) -> None:
        self._get(iid)
        self.states[iid] = HostState.RUNNING

    def destroy(self, iid: str) -> None:
        self.states.pop(iid, None)

    def state(self, iid: str) -> HostState:
        return self.states.get(iid, HostState.MISSING)

    def list_instances(self) -> list[str]:
        return list(self.states)

    def exec(self, iid: str, argv: Sequence[str], stdin: bytes | None, timeout: float,
             env: dict[str, str] | None) -> ExecResult:
        self._get(iid)
        if argv[0] == "echo":
            return ExecResult(0, (" ".join(argv[1:]) + "\n").encode(), b"")
        if argv[0] == "cat":
            return ExecResult(0, stdin or b"", b"")
        if argv[0] == "false":
            return ExecResult(1, b"", b"")
        return ExecResult(127, b"", f"{argv[0]}: not found\n".encode())

    def console_log(self, iid: str) -> bytes:
        self._get(iid)
        return b"boot ok\n"

    def console_command(self, iid: str) -> list[str]:
        return ["cat"]

    def has_base(self, image_id: str) -> bool:
        return image_id in self.bases

    def delete_base(self, image_id: str) -> None:
        self.bases.discard(image_id)

    def heal(self) -> None:
        self.healed = getattr(self, "healed", 0) + 1

    def facts(self) -> dict[str, object]:
        return {"cpus": 2, "fake": True}
