"""The storage driver contract: pools of read-only image bases and per-instance roots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lxcloud.drivers.compute.base import RootfsSpec


@dataclass(frozen=True)
class StorageCaps:
    snapshots: bool = False
    quota: bool = False
    copy_on_write: bool = True


class StorageDriver(Protocol):
    name: str
    caps: StorageCaps
    path: Path

    def has_base(self, image_id: str) -> bool: ...

    def create_base(self, image_id: str, populate: Callable[[Path], None]) -> Path:
        """Make the read-only base for an image once: `populate(tmpdir)` fills it, then it is
        moved into place atomically. Concurrent callers for one image wait for the first.
        On failure nothing is left behind."""

    def delete_base(self, image_id: str) -> None: ...

    def create_root(self, instance_id: str, image_id: str, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        """A copy-on-write root over the image's base, owned by the mapped root uid/gid."""

    def delete_root(self, instance_id: str) -> None:
        """Remove the instance's root. Missing: no-op."""

    def root_usage(self, instance_id: str) -> int: ...
