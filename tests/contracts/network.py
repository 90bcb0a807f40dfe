"""The network driver contract (lxcloud/drivers/network/base.py), for any NetworkDriver.

A module using it provides the fixtures `network_driver` (a NetworkDriver) and `make_spec` (a
callable giving a fresh NetworkSpec nobody else uses, `**overrides` applied, whatever it makes
removed when the test ends) and imports these tests:
`from tests.contracts.network import *  # noqa: F403`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from lxcloud.core.caps import NetworkCaps
from lxcloud.core.errors import InvalidInput
from lxcloud.drivers.network.base import NetworkDriver, NetworkSpec

MakeSpec = Callable[..., NetworkSpec]


def test_contract_network_declares_its_capabilities(network_driver: NetworkDriver) -> None:
    assert isinstance(network_driver.caps, NetworkCaps) and network_driver.name


def test_contract_network_ensure_is_idempotent_and_teardown_too(network_driver: NetworkDriver,
                                                                  make_spec: MakeSpec) -> None:
    spec = make_spec()
    assert not network_driver.exists(spec)
    network_driver.ensure(spec)
    assert network_driver.exists(spec)
    network_driver.ensure(spec)                  # again: repairs, changes nothing
    assert network_driver.exists(spec)
    network_driver.teardown(spec)
    assert not network_driver.exists(spec)
    network_driver.teardown(spec)                # missing: no-op


@pytest.mark.parametrize("change", [
    {"bridge": "x" * 16}, {"bridge": "bad/name"}, {"bridge": ""}, {"cidr": "10.0.0.0/33"},
    {"cidr": "not-a-network"}, {"gateway": "192.0.2.1"},
])
def test_contract_network_bad_specs_are_refused_before_anything_is_made(
        network_driver: NetworkDriver, make_spec: MakeSpec, change: dict[str, str]) -> None:
    spec = replace(make_spec(), **change)
    with pytest.raises(InvalidInput):
        network_driver.ensure(spec)
    if spec.bridge and "/" not in spec.bridge and len(spec.bridge) <= 15:
        assert not network_driver.exists(spec)
