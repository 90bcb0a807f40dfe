"""The FakeDriver keeps the compute contract (the same suite runs on LXC in integration), and its
own test double's rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from lxcloud.core.errors import DriverError, NotFound, Unsupported
from lxcloud.core.host import HostState
from lxcloud.core.instance import Disk, File, ImageRef, InstanceSpec, Kind
from lxcloud.core.instance_types import Limits, MiB
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.compute.fake import FakeDriver
from lxcloud.drivers.compute.registry import get_compute_driver
from tests.contracts.compute import *  # noqa: F403
from tests.contracts.compute import ComputeEnv

ROOT = RootfsSpec("dir", Path("/nonexistent"))


def _spec(name: str = "i-1", hostname: str = "web") -> InstanceSpec:
    return InstanceSpec(id=name, name=hostname, kind=Kind.CONTAINER,
                        image=ImageRef(id="ami-1", template="/nonexistent"),
                        limits=Limits(1, 64 * MiB, 0, 64, 0), disks=(Disk(pool="default"),),
                        first_boot=(File("/etc/x", b"y"),))


@pytest.fixture
def compute() -> ComputeEnv:
    d = FakeDriver()
    n = iter(range(1_000_000))

    def new() -> str:
        name = f"i-fake{next(n)}"
        d.create(_spec(name), ROOT)
        return name
    return ComputeEnv(d, new)


def test_lifecycle_and_state_rules() -> None:
    d = get_compute_driver("fake")
    assert isinstance(d, FakeDriver)
    d.create(_spec(), ROOT)
    assert d.list() == ["i-1"] and d.state("i-1") is HostState.STOPPED and d.init_pid("i-1") is None
    with pytest.raises(DriverError):
        d.freeze("i-1")
    with pytest.raises(DriverError):
        d.reboot("i-1")
    with pytest.raises(DriverError):
        d.exec("i-1", ["true"])
    d.start("i-1")
    pid = d.init_pid("i-1")
    assert pid and d.state("i-1") is HostState.RUNNING
    d.start("i-1")
    assert d.init_pid("i-1") == pid                 # start of a running container: no-op
    d.freeze("i-1")
    with pytest.raises(DriverError):
        d.start("i-1")
    assert d.exec("i-1", ["true"], timeout=1).timed_out
    d.unfreeze("i-1")
    d.reboot("i-1")
    assert d.init_pid("i-1") not in (None, pid)
    d.stop("i-1")
    d.stop("i-1")
    assert b"booted web" in d.console_log("i-1")
    d.destroy("i-1")
    d.destroy("i-1")
    assert d.state("i-1") is HostState.MISSING and d.list() == []
    assert ("start", "i-1") in d.calls


def test_exec_mini_shell() -> None:
    d = FakeDriver()
    d.create(_spec(), ROOT)
    d.start("i-1")
    assert d.exec("i-1", ["sh", "-c", "exit 3"]).exit_code == 3
    assert d.exec("i-1", ["cat"], stdin=b"abc").stdout == b"abc"
    assert d.exec("i-1", ["cat", "/etc/x"]).stdout == b"y"
    assert d.exec("i-1", ["hostname"]).stdout == b"web\n"
    assert d.exec("i-1", ["sleep", "5"], timeout=1).timed_out
    assert d.exec("i-1", ["nope"]).exit_code == 127


def test_missing_raises_not_found() -> None:
    d = FakeDriver()
    for call in (lambda: d.start("x"), lambda: d.stop("x"), lambda: d.exec("x", ["true"]),
                 lambda: d.console_log("x"), lambda: d.console_command("x")):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(Unsupported, match="known: fake, lxc"):
        get_compute_driver("vmware")
