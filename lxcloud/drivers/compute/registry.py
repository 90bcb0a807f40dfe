"""Compute drivers by name: a name → constructor map (as Incus' instance/drivers/load.go)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxcloud.core.errors import NotFound
from lxcloud.drivers.compute.base import ComputeDriver


def _lxc(**kw: Any) -> ComputeDriver:
    from lxcloud.drivers.compute.lxc import LxcDriver  # imports the liblxc binding lazily
    return LxcDriver(**kw)


def _fake(**kw: Any) -> ComputeDriver:
    from lxcloud.drivers.compute.fake import FakeDriver
    return FakeDriver(**kw)


DRIVERS: dict[str, Callable[..., ComputeDriver]] = {"lxc": _lxc, "fake": _fake}


def get_compute_driver(name: str, **kw: Any) -> ComputeDriver:
    """A new compute driver `name` built with `kw` (lxc: lxcpath=Path, netns=None)."""
    try:
        ctor = DRIVERS[name]
    except KeyError:
        raise NotFound(f"compute driver {name!r} does not exist (known: {', '.join(DRIVERS)})",
                       resource="compute_driver") from None
    return ctor(**kw)
