"""The fake storage driver keeps the storage contract (the same suite runs on the dir pool)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lxcloud.core.errors import InvalidInput, Unsupported
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.storage.base import PoolSpec, SnapshotOf, StorageDriver
from lxcloud.drivers.storage.fake import NO_QUOTA_CAPS, FakePool
from lxcloud.drivers.storage.registry import get_storage_driver
from tests.contracts.storage import *  # noqa: F403
from tests.contracts.storage import LIMIT, Content, MiB, root_disk


class FakeContent(Content):
    """The fake keeps files in memory: an instance's writes go through its hooks."""

    def write_root(self, pool: StorageDriver, rootfs: RootfsSpec, name: str, data: bytes) -> None:
        assert isinstance(pool, FakePool)
        pool.write(SnapshotOf.ROOT, rootfs.path.parent.name, name, data)

    def write_volume(self, pool: StorageDriver, volume_id: str, name: str, data: bytes) -> None:
        assert isinstance(pool, FakePool)
        pool.write(SnapshotOf.VOLUME, volume_id, name, data)

    def read_volume(self, pool: StorageDriver, volume_id: str, name: str) -> bytes | None:
        assert isinstance(pool, FakePool)
        return pool.read(SnapshotOf.VOLUME, volume_id, name)


@pytest.fixture
def content() -> Content:
    return FakeContent()


@pytest.fixture(params=["quota", "no-quota"])
def pool(request: pytest.FixtureRequest) -> FakePool:
    return FakePool() if request.param == "quota" else FakePool(caps=NO_QUOTA_CAPS)


def test_registry() -> None:
    assert isinstance(get_storage_driver(PoolSpec("p", "fake", Path("/nonexistent"))), FakePool)
    with pytest.raises(Unsupported, match="known: (.*, )?dir, (.*, )?fake"):
        get_storage_driver(PoolSpec("p", "zfs", Path("/nonexistent")))


def test_a_set_usage_is_what_a_shrink_is_refused_against() -> None:
    pool = FakePool()
    pool.create_base("ami-1", lambda d: None)
    pool.create_root("i-1", root_disk("ami-1", LIMIT))
    pool.set_usage(SnapshotOf.ROOT, "i-1", 40 * MiB)
    assert pool.root_usage("i-1") == 40 * MiB and pool.usage().used == 40 * MiB
    with pytest.raises(InvalidInput, match="uses"):
        pool.resize_root("i-1", 32 * MiB)
    pool.set_usage(SnapshotOf.ROOT, "i-1", None)
    pool.resize_root("i-1", 32 * MiB)
    assert pool.roots["i-1"].size == 32 * MiB


def test_writing_past_the_limit_fails_like_a_full_disk() -> None:
    pool = FakePool()
    pool.create_volume("vol-1", 16 * MiB)
    pool.write(SnapshotOf.VOLUME, "vol-1", "a", b"x" * (10 * MiB))
    with pytest.raises(OSError, match="No space left"):
        pool.write(SnapshotOf.VOLUME, "vol-1", "b", b"x" * (10 * MiB))
    assert pool.read(SnapshotOf.VOLUME, "vol-1", "b") is None


def test_a_pool_without_quotas_keeps_no_limit() -> None:
    pool = FakePool(caps=NO_QUOTA_CAPS)
    pool.create_volume("vol-1", 16 * MiB)
    pool.write(SnapshotOf.VOLUME, "vol-1", "a", b"x" * (20 * MiB))    # not enforced
    assert pool.volumes["vol-1"].size == 0
