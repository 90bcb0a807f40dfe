"""Storage drivers by name: a name → constructor map."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxcloud.core.errors import NotFound
from lxcloud.drivers.storage.base import StorageDriver


def _dir(**kw: Any) -> StorageDriver:
    from lxcloud.drivers.storage.dir import DirPool
    return DirPool(**kw)


DRIVERS: dict[str, Callable[..., StorageDriver]] = {"dir": _dir}


def get_storage_driver(name: str, **kw: Any) -> StorageDriver:
    """A new storage driver `name` built with `kw` (dir: path=Path)."""
    try:
        ctor = DRIVERS[name]
    except KeyError:
        raise NotFound(f"storage driver {name!r} does not exist (known: {', '.join(DRIVERS)})",
                       resource="storage_driver") from None
    return ctor(**kw)
