"""What a host reports about an instance: its state there, the outcome of a command inside."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class HostState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    FROZEN = "frozen"
    MISSING = "missing"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
