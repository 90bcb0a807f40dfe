"""The node protocol: what the controller asks of a host's agent (typed requests and answers).

In the all-in-one mode the controller calls a NodeAgent in-process; a remote agent would serve the
same methods as HTTP+JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lxcloud.core.instance_types import Limits
from lxcloud.drivers.compute.base import ExecResult, HostState
from lxcloud.drivers.network.base import NetworkSpec


@dataclass(frozen=True)
class LaunchRequest:
    instance_id: str
    hostname: str
    image_id: str
    template: Path
    limits: Limits
    bridge: str
    ipv4: str            # "10.1.2.3/24"
    gateway: str
    mac: str
    halt_signal: str | None = None
    nameservers: Sequence[str] = ()
    extra_files: dict[str, bytes] = field(default_factory=dict)
    start: bool = True


class NodeClient(Protocol):
    name: str

    def ensure_network(self, spec: NetworkSpec) -> None: ...
    def update_dns(self, spec: NetworkSpec, hosts: dict[str, str]) -> None: ...
    def launch(self, req: LaunchRequest,
               progress: Callable[[int, str], None] | None = None) -> None: ...
    def start(self, instance_id: str) -> None: ...
    def stop(self, instance_id: str, force: bool = False, timeout: float = 30) -> None: ...
    def reboot(self, instance_id: str) -> None: ...
    def freeze(self, instance_id: str) -> None: ...
    def unfreeze(self, instance_id: str) -> None: ...
    def destroy(self, instance_id: str) -> None: ...
    def state(self, instance_id: str) -> HostState: ...
    def list_instances(self) -> list[str]: ...
    def exec(self, instance_id: str, argv: Sequence[str], stdin: bytes | None, timeout: float,
             env: dict[str, str] | None) -> ExecResult: ...
    def console_log(self, instance_id: str) -> bytes: ...
    def console_command(self, instance_id: str) -> list[str]: ...
    def has_base(self, image_id: str) -> bool: ...
    def delete_base(self, image_id: str) -> None: ...
    def facts(self) -> dict[str, object]: ...
