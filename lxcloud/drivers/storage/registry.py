"""Storage drivers by name ("dir" today; btrfs and shared later; "fake" for tests)."""

from __future__ import annotations

from typing import Any

from lxcloud.drivers.registry import Registry
from lxcloud.drivers.storage.base import StorageDriver

STORAGE: Registry[StorageDriver] = Registry("storage")
STORAGE.add("dir", "lxcloud.drivers.storage.dir:DirPool")
STORAGE.add("fake", "lxcloud.drivers.storage.fake:FakePool")


def get_storage_driver(name: str, **kw: Any) -> StorageDriver:
    """A new storage driver `name` built with `kw` (dir: path=Path)."""
    return STORAGE.get(name, **kw)
