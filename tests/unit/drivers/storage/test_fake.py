"""The fake storage driver keeps the storage contract (the same suite runs on the dir pool)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lxcloud.core.errors import Unsupported
from lxcloud.drivers.storage.base import PoolSpec
from lxcloud.drivers.storage.fake import FakePool
from lxcloud.drivers.storage.registry import get_storage_driver
from tests.contracts.storage import *  # noqa: F403


@pytest.fixture
def pool() -> FakePool:
    return FakePool()


def test_registry() -> None:
    assert isinstance(get_storage_driver(PoolSpec("p", "fake", Path("/nonexistent"))), FakePool)
    with pytest.raises(Unsupported, match="known: dir, fake"):
        get_storage_driver(PoolSpec("p", "zfs", Path("/nonexistent")))
