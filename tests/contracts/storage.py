"""The storage driver contract (lxcloud/drivers/storage/base.py), for any StorageDriver.

A module using it provides the fixture `pool` (a fresh, ensured, empty StorageDriver) and imports
these tests: `from tests.contracts.storage import *  # noqa: F403`. What an instance writes into
its root, and what a volume holds, go through the fixture `content` (a `Content`: by default the
real paths a driver returns; the fake driver's test overrides it with its in-memory hooks).
Capabilities decide what is expected: a pool without quotas answers Unsupported to a resize, one
without snapshots or volumes skips those tests.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import Conflict, InvalidInput, NotFound, Unsupported
from lxcloud.core.instance import Disk
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.storage.base import PoolUsage, Populate, SnapshotOf, StorageDriver

UID = GID = 1_000_000
MiB = 1 << 20
LIMIT = 64 * MiB          # a disk limit every driver can make (the dir pool's images: >= 16 MiB)
ROOT, VOLUME = SnapshotOf.ROOT, SnapshotOf.VOLUME


def root_disk(image_id: str, size: int = 0) -> Disk:
    return Disk(pool="contract", source=image_id, size=size)


def _fill(dest: Path) -> None:
    (dest / "marker").write_text("base\n")


class Content:
    """How the contract writes into a root or a volume and reads it back: through the paths a
    real driver returns (a root's upper dir; a volume's directory), reading roots through
    `root_tree` (so what is read is the merged view an image or an export is made from)."""

    def write_root(self, pool: StorageDriver, rootfs: RootfsSpec, name: str, data: bytes) -> None:
        (rootfs.path / name).write_bytes(data)

    def read_root(self, pool: StorageDriver, instance_id: str, name: str,
                  snapshot: str | None = None) -> bytes | None:
        with pool.root_tree(instance_id, snapshot) as tree:
            p = tree / name
            return p.read_bytes() if p.is_file() else None

    def write_volume(self, pool: StorageDriver, volume_id: str, name: str, data: bytes) -> None:
        (pool.volume_path(volume_id) / name).write_bytes(data)

    def read_volume(self, pool: StorageDriver, volume_id: str, name: str) -> bytes | None:
        p = pool.volume_path(volume_id) / name
        return p.read_bytes() if p.is_file() else None


@pytest.fixture
def content() -> Content:
    return Content()


def _need(pool: StorageDriver, *caps: str) -> None:
    for c in caps:
        if not getattr(pool.caps, c):
            pytest.skip(f"{pool.name} declares no {c}")


def _root(pool: StorageDriver, image_id: str, instance_id: str, size: int = 0) -> RootfsSpec:
    if not pool.has_base(image_id):
        pool.create_base(image_id, _fill)
    return pool.create_root(instance_id, root_disk(image_id, size), UID, GID)


def test_contract_storage_declares_its_capabilities(pool: StorageDriver) -> None:
    assert isinstance(pool.caps, StorageCaps) and pool.name
    if not pool.caps.quota:
        assert pool.caps.quota_note     # never silently unlimited


def test_contract_storage_pool_lifecycle(pool: StorageDriver) -> None:
    pool.ensure()                                         # idempotent
    u = pool.usage()
    assert isinstance(u, PoolUsage) and u.capacity > 0 and 0 <= u.used <= u.capacity
    assert 0 <= u.free <= u.capacity
    pool.create_base("ami-life", _fill)
    pool.teardown()
    pool.teardown()                                       # gone: no-op
    pool.ensure()                                         # made again, empty
    assert not pool.has_base("ami-life")
    assert pool.usage().capacity > 0


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
    if pool.caps.copy_on_write and root.kind != "dir":   # "dir": a snapshot of the base (btrfs)
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


def test_contract_storage_root_usage_and_resize(pool: StorageDriver, content: Content) -> None:
    rootfs = _root(pool, "ami-size", "i-size", LIMIT)
    before = pool.root_usage("i-size")
    content.write_root(pool, rootfs, "data", b"\1" * (24 * MiB))
    assert pool.root_usage("i-size") >= before + 24 * MiB
    if not pool.caps.quota:
        with pytest.raises(Unsupported):
            pool.resize_root("i-size", 2 * LIMIT)
        return
    with pytest.raises(InvalidInput, match="uses"):
        pool.resize_root("i-size", 16 * MiB)              # below what it holds: refused
    assert content.read_root(pool, "i-size", "data") == b"\1" * (24 * MiB)    # untouched
    pool.resize_root("i-size", 2 * LIMIT)
    pool.resize_root("i-size", 32 * MiB)                  # shrink, above what is used
    assert content.read_root(pool, "i-size", "data") == b"\1" * (24 * MiB)
    pool.resize_root("i-size", 0)                         # no limit
    pool.create_root("i-size", root_disk("ami-size", LIMIT), UID, GID)    # limit set again
    assert content.read_root(pool, "i-size", "data") == b"\1" * (24 * MiB)
    with pytest.raises(NotFound):
        pool.resize_root("i-nosuch", LIMIT)


def test_contract_storage_root_snapshots_any_one_restored(pool: StorageDriver,
                                                          content: Content) -> None:
    _need(pool, "snapshots")
    rootfs = _root(pool, "ami-snap", "i-snap", LIMIT)
    for n in (1, 2, 3):
        content.write_root(pool, rootfs, "version", f"v{n}".encode())
        pool.create_snapshot(ROOT, "i-snap", f"s{n}")
        assert pool.has_snapshot(ROOT, "i-snap", f"s{n}")
    with pytest.raises(Conflict):
        pool.create_snapshot(ROOT, "i-snap", "s1")
    content.write_root(pool, rootfs, "version", b"v4")
    assert content.read_root(pool, "i-snap", "version", snapshot="s2") == b"v2"
    for n in (1, 3, 2):                                  # any one, in any order
        pool.restore_snapshot(ROOT, "i-snap", f"s{n}")
        rootfs = pool.create_root("i-snap", root_disk("ami-snap", LIMIT), UID, GID)
        assert content.read_root(pool, "i-snap", "version") == f"v{n}".encode()
        assert content.read_root(pool, "i-snap", "marker") == b"base\n"     # over its base
    assert all(pool.has_snapshot(ROOT, "i-snap", f"s{n}") for n in (1, 2, 3))  # all kept
    with pytest.raises(NotFound):
        pool.restore_snapshot(ROOT, "i-snap", "nosuch")
    with pytest.raises(NotFound):
        pool.create_snapshot(ROOT, "i-nosuch", "s1")
    pool.delete_snapshot(ROOT, "i-snap", "s3")
    assert not pool.has_snapshot(ROOT, "i-snap", "s3")
    pool.delete_snapshot(ROOT, "i-snap", "s3")           # missing: no-op
    pool.delete_root("i-snap")                           # takes its snapshots along
    assert not pool.has_snapshot(ROOT, "i-snap", "s1")


def test_contract_storage_clone_root(pool: StorageDriver, content: Content) -> None:
    rootfs = _root(pool, "ami-clone", "i-src", LIMIT)
    content.write_root(pool, rootfs, "version", b"v1")
    if pool.caps.snapshots:
        pool.create_snapshot(ROOT, "i-src", "s1")
    content.write_root(pool, rootfs, "version", b"v2")
    clone = pool.clone_root("i-src", "i-copy", root_disk("ami-clone", LIMIT), UID, GID)
    assert pool.has_root("i-copy")
    if pool.caps.copy_on_write:
        assert clone.lower == rootfs.lower                # the same base under it
    assert content.read_root(pool, "i-copy", "version") == b"v2"
    assert content.read_root(pool, "i-copy", "marker") == b"base\n"
    content.write_root(pool, clone, "version", b"mine")  # its own from now on
    assert content.read_root(pool, "i-src", "version") == b"v2"
    if pool.caps.snapshots:
        pool.clone_root("i-src", "i-old", root_disk("ami-clone", LIMIT), UID, GID, snapshot="s1")
        assert content.read_root(pool, "i-old", "version") == b"v1"
        with pytest.raises(NotFound):
            pool.clone_root("i-src", "i-none", root_disk("ami-clone"), UID, GID, snapshot="nosuch")
    with pytest.raises(NotFound):
        pool.clone_root("i-nosuch", "i-none", root_disk("ami-clone"), UID, GID)
    with pytest.raises(Conflict):
        pool.clone_root("i-src", "i-copy", root_disk("ami-clone"), UID, GID)
    assert not pool.has_root("i-none")


def _tree(files: dict[str, bytes]) -> Populate:
    def populate(dest: Path) -> None:
        for name, data in files.items():
            p = dest / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    return populate


def test_contract_storage_import_root_and_snapshots(pool: StorageDriver, content: Content) -> None:
    rootfs = pool.import_root("i-imp", root_disk("ami-unused", LIMIT),
                              _tree({"etc/hostname": b"now\n", "bin/sh": b"sh"}),
                              UID, GID)
    assert pool.has_root("i-imp") and rootfs.kind in ("overlay", "dir")
    assert content.read_root(pool, "i-imp", "etc/hostname") == b"now\n"
    assert content.read_root(pool, "i-imp", "marker") is None     # over no image's base
    with pytest.raises(Conflict):
        pool.import_root("i-imp", root_disk("ami-unused"), _tree({}), UID, GID)

    def boom(dest: Path) -> None:
        (dest / "half").write_text("x")
        raise RuntimeError("archive truncated")
    with pytest.raises(RuntimeError):
        pool.import_root("i-imp-bad", root_disk("ami-unused", LIMIT), boom, UID, GID)
    assert not pool.has_root("i-imp-bad")                # nothing left behind
    if not pool.caps.snapshots:
        return
    pool.import_snapshot("i-imp", "old", _tree({"etc/hostname": b"then\n"}))
    assert pool.has_snapshot(ROOT, "i-imp", "old")
    with pytest.raises(Conflict):
        pool.import_snapshot("i-imp", "old", _tree({}))
    with pytest.raises(NotFound):
        pool.import_snapshot("i-nosuch", "old", _tree({}))
    assert content.read_root(pool, "i-imp", "etc/hostname", snapshot="old") == b"then\n"
    assert content.read_root(pool, "i-imp", "bin/sh", snapshot="old") is None    # whole tree
    pool.create_snapshot(ROOT, "i-imp", "now")
    pool.restore_snapshot(ROOT, "i-imp", "old")
    assert content.read_root(pool, "i-imp", "etc/hostname") == b"then\n"
    pool.clone_root("i-imp", "i-imp2", root_disk("ami-unused"), UID, GID, snapshot="now")
    assert content.read_root(pool, "i-imp2", "etc/hostname") == b"now\n"


def test_contract_storage_root_tree_merges_base_and_layer(pool: StorageDriver,
                                                          content: Content) -> None:
    rootfs = _root(pool, "ami-tree", "i-tree")
    content.write_root(pool, rootfs, "own", b"mine")
    with pool.root_tree("i-tree") as tree:
        assert (tree / "marker").read_text() == "base\n" and (tree / "own").read_bytes() == b"mine"
    with pytest.raises(NotFound):
        with pool.root_tree("i-nosuch"):
            pass
    if pool.caps.snapshots:
        with pytest.raises(NotFound):
            with pool.root_tree("i-tree", "nosuch"):
                pass


def test_contract_storage_volumes(pool: StorageDriver, content: Content) -> None:
    _need(pool, "volumes")
    path = pool.create_volume("vol-a", LIMIT, UID, GID)
    assert pool.has_volume("vol-a") and pool.volume_path("vol-a") == path
    assert pool.create_volume("vol-a", LIMIT, UID, GID) == path            # idempotent
    content.write_volume(pool, "vol-a", "data", b"\2" * (24 * MiB))
    assert pool.volume_usage("vol-a") >= 24 * MiB
    if pool.caps.quota:
        with pytest.raises(InvalidInput, match="uses"):
            pool.resize_volume("vol-a", 16 * MiB)
        pool.resize_volume("vol-a", 2 * LIMIT)
    else:
        with pytest.raises(Unsupported):
            pool.resize_volume("vol-a", 2 * LIMIT)
    assert content.read_volume(pool, "vol-a", "data") == b"\2" * (24 * MiB)
    pool.clone_volume("vol-a", "vol-b", LIMIT, uid=UID, gid=GID)
    content.write_volume(pool, "vol-a", "data", b"changed")
    assert content.read_volume(pool, "vol-b", "data") == b"\2" * (24 * MiB)
    with pytest.raises(Conflict):
        pool.clone_volume("vol-a", "vol-b", LIMIT, uid=UID, gid=GID)
    with pytest.raises(NotFound):
        pool.clone_volume("vol-nosuch", "vol-c", LIMIT, uid=UID, gid=GID)
    pool.delete_volume("vol-a")
    assert not pool.has_volume("vol-a") and pool.has_volume("vol-b")
    pool.delete_volume("vol-a")                                            # missing: no-op
    for call in (lambda: pool.volume_path("vol-a"), lambda: pool.volume_usage("vol-a"),
                 lambda: pool.resize_volume("vol-a", LIMIT)):
        with pytest.raises(NotFound):
            call()


def test_contract_storage_volume_snapshots(pool: StorageDriver, content: Content) -> None:
    _need(pool, "volumes", "snapshots")
    pool.create_volume("vol-s", LIMIT, UID, GID)
    for n in (1, 2):
        content.write_volume(pool, "vol-s", "version", f"v{n}".encode())
        pool.create_snapshot(VOLUME, "vol-s", f"s{n}")
    with pytest.raises(Conflict):
        pool.create_snapshot(VOLUME, "vol-s", "s2")
    pool.restore_snapshot(VOLUME, "vol-s", "s1")
    assert content.read_volume(pool, "vol-s", "version") == b"v1"
    pool.restore_snapshot(VOLUME, "vol-s", "s2")
    assert content.read_volume(pool, "vol-s", "version") == b"v2"
    pool.clone_volume("vol-s", "vol-from-snap", LIMIT, snapshot="s1", uid=UID, gid=GID)
    assert content.read_volume(pool, "vol-from-snap", "version") == b"v1"
    assert not pool.has_snapshot(ROOT, "vol-s", "s1")           # a volume's, not a root's
    pool.delete_volume("vol-s")
    assert not pool.has_snapshot(VOLUME, "vol-s", "s1")


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "", ".."])
def test_contract_storage_ids_cannot_walk_out_of_the_pool(pool: StorageDriver, bad: str) -> None:
    pool.create_base("ami-ok", _fill)
    pool.create_root("i-ok", root_disk("ami-ok"), UID, GID)
    calls = [
        lambda: pool.create_base(bad, _fill), lambda: pool.has_base(bad),
        lambda: pool.delete_base(bad),
        lambda: pool.create_root(bad, root_disk("ami-ok"), UID, GID),
        lambda: pool.has_root(bad), lambda: pool.delete_root(bad), lambda: pool.root_usage(bad),
        lambda: pool.clone_root("i-ok", bad, root_disk("ami-ok"), UID, GID),
        lambda: pool.import_root(bad, root_disk("ami-ok"), _fill, UID, GID),
        lambda: pool.create_volume(bad, LIMIT, UID, GID), lambda: pool.has_volume(bad),
        lambda: pool.volume_path(bad), lambda: pool.delete_volume(bad),
        lambda: pool.create_snapshot(ROOT, "i-ok", bad),
        lambda: pool.has_snapshot(ROOT, "i-ok", bad),
        lambda: pool.has_snapshot(VOLUME, bad, "s1"),
        lambda: pool.restore_snapshot(ROOT, "i-ok", bad),
        lambda: pool.delete_snapshot(ROOT, "i-ok", bad),
        lambda: pool.import_snapshot("i-ok", bad, _fill),
    ]
    for call in calls:
        with pytest.raises(InvalidInput):
            call()
    assert pool.has_root("i-ok")
