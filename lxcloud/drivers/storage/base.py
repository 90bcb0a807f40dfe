"""The storage driver contract: one pool of read-only image bases and per-instance roots.

A driver is a stateless adapter over one pool (a directory, later a btrfs filesystem or a shared
mount): no database, no instances beyond the ids it is given. Every method raises `DriverError`
when the host refuses and `InvalidInput` for an id that could walk out of the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import InvalidInput
from lxcloud.core.instance import Disk
from lxcloud.drivers.compute.base import RootfsSpec


class StorageDriver(Protocol):
    name: str
    caps: StorageCaps
    path: Path

    def has_base(self, image_id: str) -> bool: ...

    def create_base(self, image_id: str, populate: Callable[[Path], None]) -> Path:
        """Make the read-only base for an image once: `populate(tmpdir)` fills it, then it is
        moved into place atomically. Concurrent callers for one image wait for the first.
        On failure nothing is left behind."""

    def delete_base(self, image_id: str) -> None:
        """Remove an image's base. Missing: no-op."""

    def create_root(self, instance_id: str, disk: Disk, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        """The instance's root disk as the description says it (`disk.source` is its image): a
        copy-on-write root over the image's base, owned by the mapped root uid/gid. NotFound when
        the image has no base here. Idempotent: an existing root is kept as is."""

    def has_root(self, instance_id: str) -> bool: ...

    def delete_root(self, instance_id: str) -> None:
        """Remove the instance's root. Missing: no-op."""

    def root_usage(self, instance_id: str) -> int:
        """Bytes the instance's own layer holds; NotFound when it has no root here."""


def root_source(disk: Disk) -> str:
    """The image a root disk is made from (InvalidInput for a disk that names none)."""
    if not disk.source:
        raise InvalidInput(f"disk {disk.name!r} names no image to make a root from")
    return disk.source
