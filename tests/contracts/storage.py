"""The storage driver contract (lxcloud/drivers/storage/base.py), for any StorageDriver.

A module using it provides the fixture `pool` (a fresh, empty StorageDriver) and imports these
tests: `from tests.contracts.storage import *  # noqa: F403`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import InvalidInput, NotFound
from lxcloud.core.instance import Disk
from lxcloud.drivers.storage.base import StorageDriver

UID = GID = 1_000_000


def root_disk(image_id: str) -> Disk:
    return Disk(pool="contract", source=image_id)


def _fill(dest: Path) -> None:
    (dest / "marker").write_text("base\n")


def test_contract_storage_declares_its_capabilities(pool: StorageDriver) -> None:
    assert isinstance(pool.caps, StorageCaps) and pool.name


def test_contract_storage_base_is_made_once(pool: StorageDriver) -> None:
    calls: list[Path] = []

    def populate(dest: Path) -> None:
        calls.append(dest)
        _fill(dest)

    barrier = threading.Barrier(4)
    made: list[Path] = []

    def first_launch() -> None:
        barrier.wait()
        made.append(pool.create_base("ami-contract1", populate))

    threads = [threading.Thread(target=first_launch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(calls) == 1 and len(set(made)) == 1 and pool.has_base("ami-contract1")
    assert pool.create_base("ami-contract1", populate) == made[0] and len(calls) == 1
    assert not pool.has_base("ami-contract2")


def test_contract_storage_failed_populate_leaves_no_base(pool: StorageDriver) -> None:
    def boom(dest: Path) -> None:
        _fill(dest)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        pool.create_base("ami-contract3", boom)
    assert not pool.has_base("ami-contract3")


def test_contract_storage_roots_over_a_base(pool: StorageDriver) -> None:
    base = pool.create_base("ami-contract4", _fill)
    with pytest.raises(NotFound):
        pool.create_root("i-contract0", root_disk("ami-missing"), UID, GID)
    assert not pool.has_root("i-contract0")
    root = pool.create_root("i-contract1", root_disk("ami-contract4"), UID, GID)
    assert pool.has_root("i-contract1")
    if pool.caps.copy_on_write:
        assert root.kind == "overlay" and root.lower == base
    assert pool.create_root("i-contract1", root_disk("ami-contract4"), UID, GID) == root   # idempotent
    assert pool.root_usage("i-contract1") >= 0
    pool.delete_root("i-contract1")
    assert not pool.has_root("i-contract1")
    pool.delete_root("i-contract1")                                             # missing: no-op
    with pytest.raises(NotFound):
        pool.root_usage("i-contract1")
    pool.delete_base("ami-contract4")
    assert not pool.has_base("ami-contract4")
    pool.delete_base("ami-contract4")                                           # missing: no-op


def test_contract_storage_a_root_disk_names_its_image(pool: StorageDriver) -> None:
    with pytest.raises(InvalidInput):
        pool.create_root("i-contract5", Disk(pool="contract"), UID, GID)


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "", ".."])
def test_contract_storage_ids_cannot_walk_out_of_the_pool(pool: StorageDriver, bad: str) -> None:
    for call in (lambda: pool.create_base(bad, _fill), lambda: pool.has_base(bad),
                 lambda: pool.create_root(bad, root_disk("ami-x"), UID, GID), lambda: pool.delete_root(bad)):
        with pytest.raises(InvalidInput):
            call()
