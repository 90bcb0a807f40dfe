"""Domain records passed between layers: plain dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Image:
    id: str
    name: str
    os: str
    release: str
    architecture: str
    format: str
    size: int
    sha256: str
    created: datetime
    kind: str = "container"        # container | vm
    halt_signal: str | None = None
    init: str | None = None
    project_id: str | None = None
    public: bool = True
    description: str | None = None
    launch_projects: list[str] = field(default_factory=list)   # other projects that may launch it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Instance:
    id: str
    name: str
    state: str
    image_id: str
    instance_type: str
    limits: dict[str, Any]
    node: str | None
    ipv4: str | None
    network: str | None
    created: datetime
    updated: datetime
    user_data: str | None = None
    state_reason: str | None = None
    mac: str | None = None
    launched_at: datetime | None = None
    terminated_at: datetime | None = None
    project_id: str | None = None
    image_name: str | None = None
    operation_id: str | None = None
    disable_api_termination: bool = False     # termination protection
    shutdown_behavior: str = "stop"           # what a halt from inside means: stop | terminate


@dataclass
class Operation:
    id: str
    kind: str
    target: str
    status: str            # pending | running | success | failure
    progress: int
    message: str
    error: str | None
    error_code: str | None
    created: datetime
    updated: datetime
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in ("success", "failure")


@dataclass
class Network:
    id: str
    name: str
    cidr: str
    gateway: str
    bridge: str
    created: datetime


@dataclass
class Node:
    id: str
    name: str
    address: str
    status: str
    created: datetime
    facts: dict[str, Any] = field(default_factory=dict)
