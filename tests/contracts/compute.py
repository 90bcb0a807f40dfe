"""The compute driver contract (lxcloud/drivers/compute/base.py), for any ComputeDriver.

A module using it provides the fixture `compute` (a `ComputeEnv`: the driver, and a callable that
defines a new stopped instance on it and returns its name) and imports these tests:
`from tests.contracts.compute import *  # noqa: F403`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from lxcloud.core.caps import ComputeCaps
from lxcloud.core.errors import NotFound
from lxcloud.core.host import HostState
from lxcloud.drivers.compute.base import ComputeDriver
from tests.waiting import wait_for


@dataclass
class ComputeEnv:
    driver: ComputeDriver
    new: Callable[[], str]          # defines a stopped instance, returns its name


def test_contract_compute_declares_its_capabilities(compute: ComputeEnv) -> None:
    assert isinstance(compute.driver.caps, ComputeCaps) and compute.driver.caps.max_nics >= 1


def test_contract_compute_lifecycle(compute: ComputeEnv) -> None:
    d = compute.driver
    name = compute.new()
    assert name in d.list()
    assert d.state(name) is HostState.STOPPED and d.init_pid(name) is None
    d.start(name)
    assert d.state(name) is HostState.RUNNING and d.init_pid(name)
    d.start(name)                                   # running: start is a no-op
    r = d.exec(name, ["sh", "-c", "exit 7"])
    assert r.exit_code == 7 and not r.timed_out
    assert d.exec(name, ["cat"], stdin=b"in\n").stdout == b"in\n"
    d.freeze(name)
    assert d.state(name) is HostState.FROZEN
    d.unfreeze(name)
    assert d.state(name) is HostState.RUNNING
    old = d.init_pid(name)
    d.reboot(name)
    assert d.state(name) is HostState.RUNNING and d.init_pid(name) not in (None, old)
    d.stop(name, force=True)
    assert d.state(name) is HostState.STOPPED
    d.stop(name)                                    # stopped: stop is a no-op
    d.destroy(name)
    assert d.state(name) is HostState.MISSING and name not in d.list()
    d.destroy(name)                                 # missing: destroy is a no-op


def test_contract_compute_missing(compute: ComputeEnv) -> None:
    d = compute.driver
    ghost = f"i-ghost{secrets.token_hex(4)}"
    assert d.state(ghost) is HostState.MISSING
    assert d.init_pid(ghost) is None
    for call in (lambda: d.start(ghost), lambda: d.stop(ghost), lambda: d.exec(ghost, ["true"]),
                 lambda: d.console_log(ghost), lambda: d.freeze(ghost),
                 lambda: d.console_command(ghost)):
        with pytest.raises(NotFound):
            call()


def test_contract_compute_exec_timeout(compute: ComputeEnv) -> None:
    d = compute.driver
    name = compute.new()
    d.start(name)
    r = d.exec(name, ["sleep", "30"], timeout=0.5)
    assert r.timed_out
    if d.name != "fake":
        # the timed-out command was killed, not left running behind the answer
        # (busybox ps shows a killed, not yet reaped process as "[sleep]")
        wait_for(lambda: b"sleep 30" not in d.exec(name, ["ps"]).stdout, 10,
                 "the timed-out sleep to be killed")
