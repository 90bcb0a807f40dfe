"""Compute drivers by name ("lxc" for containers, "fake" for tests; "kvm" later)."""

from __future__ import annotations

from typing import Any

from lxcloud.drivers.compute.base import ComputeDriver
from lxcloud.drivers.registry import Registry

COMPUTE: Registry[ComputeDriver] = Registry("compute")
COMPUTE.add("lxc", "lxcloud.drivers.compute.lxc:LxcDriver")
COMPUTE.add("fake", "lxcloud.drivers.compute.fake:FakeDriver")


def get_compute_driver(name: str, **kw: Any) -> ComputeDriver:
    """A new compute driver `name` built with `kw` (lxc: lxcpath, idmap, netns, veth_prefix)."""
    return COMPUTE.get(name, **kw)
