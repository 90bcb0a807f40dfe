"""Storage drivers by name: "dir", "btrfs", "shared" (and "fake" for tests)."""

from __future__ import annotations

from lxcloud.drivers.registry import Registry
from lxcloud.drivers.storage.base import PoolSpec, StorageDriver

STORAGE: Registry[StorageDriver] = Registry("storage")
STORAGE.add("dir", "lxcloud.drivers.storage.dir:DirPool")
STORAGE.add("btrfs", "lxcloud.drivers.storage.btrfs:BtrfsPool")
STORAGE.add("shared", "lxcloud.drivers.storage.shared:SharedPool")
STORAGE.add("fake", "lxcloud.drivers.storage.fake:FakePool")


def get_storage_driver(spec: PoolSpec) -> StorageDriver:
    """A new driver for the pool `spec` (of its driver; Unsupported for an unknown one). Nothing
    on the host is touched until its `ensure()`."""
    return STORAGE.get(spec.driver, spec=spec)
