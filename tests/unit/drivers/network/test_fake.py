"""The fake network driver keeps the network contract (the same suite runs on the bridge driver)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from lxcloud.core.errors import Unsupported
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.drivers.network.fake import FakeNetwork
from lxcloud.drivers.network.registry import get_network_driver
from tests.contracts.network import *  # noqa: F403

_n = itertools.count()


@pytest.fixture
def network_driver() -> FakeNetwork:
    return FakeNetwork()


@pytest.fixture
def make_spec() -> Callable[..., NetworkSpec]:
    def make(**kw: Any) -> NetworkSpec:
        n = next(_n)
        return replace(NetworkSpec(name=f"n{n}", bridge=f"lxfake{n}", cidr=f"10.77.{n % 250}.0/24",
                                   gateway=f"10.77.{n % 250}.1"), **kw)
    return make


def test_registry() -> None:
    assert isinstance(get_network_driver("fake"), FakeNetwork)
    with pytest.raises(Unsupported, match="known: bridge, fake"):
        get_network_driver("openvswitch")
