"""The shared pool on a real CephFS (a single-node Ceph the tests start, tests/integration/cephfs.py):
the storage contract, copy-on-write roots on ext4 images in the CephFS (their limit enforced and
shown by `df`), CephFS quotas and snapshots for volumes, and the pool's data seen through a
second mount of the same filesystem (standing in for a second host)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.core.errors import DriverError, InUse, InvalidInput
from lxcloud.core.instance import Disk
from lxcloud.core.instance_types import Limits
from lxcloud.drivers.compute.base import Mount
from lxcloud.drivers.compute.lxc import LxcDriver
from lxcloud.drivers.storage import loop
from lxcloud.drivers.storage.base import PoolSpec, SnapshotOf
from lxcloud.drivers.storage.registry import get_storage_driver
from lxcloud.drivers.storage.shared import SharedPool
from tests.contracts.storage import *  # noqa: F403
from tests.integration.cephfs import CephFS, cephfs_session  # noqa: F401 - the fixture
from tests.integration.conftest import (
    IDMAP,
    Box,
    BridgeNet,
    Launcher,
    Template,
    busybox_spec,
    populate_busybox,
    unique,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.root
MiB = 1 << 20


def shared_pool(cephfs: CephFS, source: Path, local: Path, name: str = "shared") -> SharedPool:
    """A shared pool over `source` (a directory in a ceph-fuse mount), its subtree mounts under
    `local` (this "host"'s own directory), ensured."""
    pool = SharedPool(PoolSpec(name, "shared", source, source=str(source)), local=local,
                      ceph_args=("--conf", str(cephfs.cluster.conf)))
    pool.ensure()
    return pool


def _gone(pool: SharedPool, source: Path) -> None:
    """Teardown left no mount (nor its ceph-fuse) and none of the pool's directories."""
    pool.teardown()
    assert not loop.mounts_under(pool.local) and not pool.local.exists()
    assert not source.exists() or list(source.iterdir()) == []
    shutil.rmtree(source, ignore_errors=True)


@pytest.fixture(params=["cephfs", "plain"])
def pool(request: pytest.FixtureRequest, work_dir: Path) -> Iterator[SharedPool]:
    """The storage contract's pool (tests/contracts/storage.py): a shared pool in a fresh
    directory of the CephFS; or in a directory of the host's own filesystem (no quota
    mechanism there: the pool says so, snapshots are copies)."""
    if request.param == "cephfs":
        cephfs: CephFS = request.getfixturevalue("cephfs")
        source = cephfs.fresh_dir("contract-")
        p = shared_pool(cephfs, source, work_dir / "host-a")
    else:
        source = work_dir / "plain"
        source.mkdir()
        p = SharedPool(PoolSpec("plain", "shared", source, source=str(source)),
                       local=work_dir / "host-a")
        p.ensure()
        assert not p.caps.quota and "not enforced" in p.caps.quota_note
        assert not p.caps.cow_snapshots and not p.caps.quota_visible and p.caps.remote
    yield p
    _gone(p, source)


def test_the_pool_on_cephfs_declares_what_it_does(cephfs: CephFS, work_dir: Path) -> None:
    source = cephfs.fresh_dir("caps-")
    p = shared_pool(cephfs, source, work_dir / "host-a")
    c = p.caps
    _gone(p, source)
    assert c.remote and c.quota and c.quota_visible
    # a root grows online where ext4 lets this agent (it demands CAP_SYS_RESOURCE)
    assert c.online_resize == p.roots.caps.online_resize
    assert c.snapshots and c.volumes and c.copy_on_write
    assert c.cow_snapshots              # CephFS's own: of a root's directory (its image), a volume


def test_the_registry_names_it(cephfs: CephFS) -> None:
    source = cephfs.fresh_dir("reg-")
    try:
        driver = get_storage_driver(PoolSpec("r", "shared", source, source=str(source)))
        assert isinstance(driver, SharedPool) and driver.name == "shared"
    finally:
        shutil.rmtree(source)


def _write_until_edquot(path: Path, limit: int) -> int:
    """Write 1 MiB chunks into `path` until the filesystem says "Disk quota exceeded"; the bytes
    written by then. CephFS clients learn usage with a lag: the error may come a little past
    the limit, so this waits on it (with a byte budget and a deadline), not on time."""
    written = 0
    chunk = b"\xab" * MiB
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def refused() -> bool:
        nonlocal written
        assert written < limit + 256 * MiB, f"{written} bytes written past a {limit} limit"
        try:
            os.write(fd, chunk)
            os.fsync(fd)
        except OSError as e:
            assert e.errno == errno.EDQUOT, e
            return True
        written += len(chunk)
        return False
    try:
        wait_for(refused, 120, f"EDQUOT writing {path}")
    finally:
        try:
            os.close(fd)
        except OSError as e:      # the close's own flush says it again
            assert e.errno == errno.EDQUOT, e
    return written


def test_quota_is_enforced_and_shown(cephfs: CephFS, work_dir: Path) -> None:
    source = cephfs.fresh_dir("quota-")
    pool = shared_pool(cephfs, source, work_dir / "host-a")
    try:
        _quota_is_enforced_and_shown(pool)
    finally:
        _gone(pool, source)


def _quota_is_enforced_and_shown(pool: SharedPool) -> None:
    pool.create_base("ami-q", lambda d: (d / "marker").write_text("base\n"))
    rootfs = pool.create_root("i-q", Disk(pool="shared", source="ami-q", size=32 * MiB),
                              IDMAP.host_uid, IDMAP.host_gid)
    assert rootfs.kind == "overlay" and rootfs.lower == pool.base_path("ami-q")
    assert _capacity(rootfs.path) <= 32 * MiB            # what df inside shows
    assert 0.85 * 32 * MiB <= _capacity(rootfs.path)
    area = rootfs.path.parent                              # an ext4 image in the CephFS
    assert loop.mount_of(area)[0] == "ext4" and (pool.path / "instances/i-q/root.img").is_file()
    assert loop.filesystem_of(pool.path / "instances/i-q/root.img")[1] == "fuse.ceph-fuse"
    with pytest.raises(OSError, match="No space left"):
        (rootfs.path / "big").write_bytes(b"x" * (40 * MiB))
    (rootfs.path / "big").unlink()
    vol = pool.create_volume("vol-q", 16 * MiB, IDMAP.host_uid, IDMAP.host_gid)
    assert _write_until_edquot(vol / "big", 16 * MiB) >= 8 * MiB
    (vol / "big").unlink()
    pool.resize_root("i-q", 64 * MiB)                      # online: the limit and df follow
    assert 0.85 * 64 * MiB <= _capacity(rootfs.path) <= 64 * MiB


def _capacity(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def _fill(dest: Path) -> None:
    (dest / "marker").write_text("base\n")


def test_a_second_host_sees_the_same_pool(cephfs: CephFS, work_dir: Path) -> None:
    """A second ceph-fuse mount of the same filesystem stands in for a second host: a second
    driver over the same directory through it sees the bases, roots, volumes and snapshots the
    first made, and data written through one mount is read through the other."""
    source = cephfs.fresh_dir("two-")
    a = shared_pool(cephfs, source, work_dir / "host-a")
    other = cephfs.cluster.mount(work_dir / "host-b-mnt")
    b: SharedPool | None = None
    try:
        a.create_base("ami-2", _fill)
        ra = a.create_root("i-2", Disk(pool="shared", source="ami-2", size=32 * MiB),
                           IDMAP.host_uid, IDMAP.host_gid)
        (ra.path / "own").write_bytes(b"v1")
        vol = a.create_volume("vol-2", 16 * MiB, IDMAP.host_uid, IDMAP.host_gid)
        (vol / "data").write_bytes(b"from a")
        a.create_snapshot(SnapshotOf.ROOT, "i-2", "s1")
        a.create_snapshot(SnapshotOf.VOLUME, "vol-2", "s1")
        (ra.path / "own").write_bytes(b"v2")
        a.release_root("i-2")                       # the instance leaves host A
        assert not loop.mounts_under(a.path)

        b = shared_pool(cephfs, other / source.relative_to(cephfs.mount), work_dir / "host-b")
        assert b.path != a.path and b.caps == a.caps
        assert b.has_base("ami-2") and b.has_root("i-2") and b.has_volume("vol-2")
        assert b.has_snapshot(SnapshotOf.ROOT, "i-2", "s1")
        assert b.has_snapshot(SnapshotOf.VOLUME, "vol-2", "s1")
        rb = b.create_root("i-2", Disk(pool="shared", source="ami-2", size=32 * MiB),
                           IDMAP.host_uid, IDMAP.host_gid)   # host B takes the root: no copy
        assert rb.path.is_relative_to(b.path) and rb.kind == "overlay"
        assert rb.lower == b.base_path("ami-2")
        assert (rb.path / "own").read_bytes() == b"v2"
        assert 0.85 * 32 * MiB <= _capacity(rb.path) <= 32 * MiB   # the limit travels with it
        (rb.path / "from-b").write_bytes(b"B")
        b.release_root("i-2")                                 # one host at a time
        with a.root_tree("i-2") as tree:                      # read back through mount A
            assert (tree / "from-b").read_bytes() == b"B"
            assert (tree / "marker").read_text() == "base\n"
        a.release_root("i-2")
        with b.root_tree("i-2", "s1") as tree:                # A's snapshot, through mount B
            assert (tree / "own").read_bytes() == b"v1"
        assert (b.volume_path("vol-2") / "data").read_bytes() == b"from a"
        (b.volume_path("vol-2") / "data").write_bytes(b"from b")
        assert (vol / "data").read_bytes() == b"from b"
        b.restore_snapshot(SnapshotOf.VOLUME, "vol-2", "s1")  # B restores A's snapshot
        wait_for(lambda: (vol / "data").read_bytes() == b"from a", 30,
                 "host A reading the restored volume")
        b.restore_snapshot(SnapshotOf.ROOT, "i-2", "s1")
        b.release_root("i-2")
        with a.root_tree("i-2") as tree:
            assert (tree / "own").read_bytes() == b"v1" and not (tree / "from-b").exists()
        b.release()                                   # host B leaves; the data stays
        assert not loop.mounts_under(b.path) and a.has_root("i-2")
    finally:
        if b is not None:
            b.release()
        cephfs.cluster.unmount(other)
        _gone(a, source)
    assert not loop.is_mounted(other)


@pytest.fixture
def shared_launch(cephfs: CephFS, work_dir: Path, lxc_driver: LxcDriver, bridge: BridgeNet,
                  busybox_template: Template) -> Iterator[Launcher]:
    """A Launcher of busybox containers whose roots are in a shared pool on the CephFS."""
    source = cephfs.fresh_dir("boxes-")
    pool = shared_pool(cephfs, source, work_dir / "host-a")
    image_id = "ami-busybox" + unique("")
    launcher = Launcher(lxc_driver, pool, image_id, bridge,     # type: ignore[arg-type]
                        busybox_template.metadata)
    try:
        pool.create_base(image_id, populate_busybox(busybox_template))
        yield launcher
    finally:
        for box in launcher.boxes:
            lxc_driver.destroy(box.name)
            pool.delete_root(box.name)
        _gone(pool, source)


def _boot(launch: Launcher, size: int, mounts: tuple[Mount, ...] = ()) -> Box:
    name = unique("i-s")
    rootfs = launch.pool.create_root(name, Disk(pool="shared", source=launch.image_id, size=size),
                                     IDMAP.host_uid, IDMAP.host_gid)
    spec = busybox_spec(name, launch.image_id, hostname=unique("bb-"),
                        limits=Limits(vcpus=1, memory=128 * MiB, swap=0, pids=256, disk=size),
                        halt_signal=launch.metadata.get("halt_signal"))
    box = Box(spec, rootfs, launch.driver)
    launch.boxes.append(box)
    launch.driver.create(spec, rootfs, mounts)
    launch.driver.start(box.name)
    return box


def _sh(box: Box, script: str) -> tuple[int, str]:
    r = box.driver.exec(box.name, ["sh", "-c", script])
    return r.exit_code, (r.stdout + r.stderr).decode()


def test_an_instance_on_the_shared_pool_sees_its_limit(shared_launch: Launcher) -> None:
    """Inside, `df /` shows the root's limit and writing past it fails with EDQUOT."""
    box = _boot(shared_launch, 48 * MiB)
    code, out = _sh(box, "df -kP / | tail -1")
    assert code == 0, out
    assert 0.85 * 48 * MiB <= int(out.split()[1]) * 1024 <= 48 * MiB, out
    code, out = _sh(box, "echo hello > /etc/own && cat /etc/own && rm /bin/vi && "
                         "mkdir -p /usr/new && echo n > /usr/new/f")
    assert code == 0 and "hello" in out, out                 # the overlay works over CephFS
    code, out = _sh(box, "dd if=/dev/zero of=/big bs=1M count=300 conv=fsync")
    assert code != 0 and "No space left on device" in out, out
    code, out = _sh(box, "ls -l /big")
    assert code == 0 and int(out.split()[4]) < 300 * MiB, out
    _sh(box, "rm /big")
    pool = shared_launch.pool
    assert isinstance(pool, SharedPool)
    if not pool.caps.online_resize:                          # no CAP_SYS_RESOURCE here
        with pytest.raises(InUse):
            pool.resize_root(box.name, 96 * MiB)
    else:
        pool.resize_root(box.name, 96 * MiB)                 # online: df inside follows
        wait_for(lambda: int(_sh(box, "df -kP / | tail -1")[1].split()[1]) * 1024 > 64 * MiB,
                 30, "df inside showing the new limit")
    with pytest.raises(DriverError, match=box.name):
        pool.delete_root(box.name)                           # refused while it runs
    with pytest.raises(InUse):
        _snapshot_then_restore(pool, box)
    box.driver.stop(box.name, force=True)
    with pool.root_tree(box.name) as tree:
        assert (tree / "etc/own").read_text() == "hello\n" and not (tree / "bin/vi").exists()


def _snapshot_then_restore(pool: SharedPool, box: Box) -> None:
    box.driver.freeze(box.name)
    try:
        pool.create_snapshot(SnapshotOf.ROOT, box.name, "s1")
    finally:
        box.driver.unfreeze(box.name)
    pool.restore_snapshot(SnapshotOf.ROOT, box.name, "s1")     # refused: it runs


def test_failures_midway_leave_nothing(cephfs: CephFS, work_dir: Path) -> None:
    source = cephfs.fresh_dir("fail-")
    pool = shared_pool(cephfs, source, work_dir / "host-a")
    try:
        pool.create_base("ami-f", lambda d: (d / "big").write_bytes(b"x" * (20 * MiB)))

        def listing() -> list[str]:
            return sorted(str(p.relative_to(source)) for p in source.rglob("*")
                          if not p.is_relative_to(source / "locks"))

        before = listing()
        with pytest.raises(InvalidInput, match="too small"):   # no room for an ext4
            pool.create_root("i-f", Disk(pool="shared", source="ami-f", size=4 * MiB))
        assert listing() == before and not pool.has_root("i-f")

        def boom(dest: Path) -> None:
            (dest / "half").write_bytes(b"x" * MiB)
            raise RuntimeError("archive truncated")
        devices = loop.loop_users(pool.path / "instances" / "i-m" / "root.img")
        with pytest.raises(RuntimeError):                  # an import failing midway
            pool.import_root("i-m", Disk(pool="shared", source="ami-f", size=64 * MiB), boom)
        assert listing() == before and not loop.mounts_under(pool.path)
        assert loop.loop_users(pool.path / "instances" / "i-m" / "root.img") == devices == []
    finally:
        _gone(pool, source)


def test_a_pool_in_its_own_dir_of_the_source_removes_only_its_own(work_dir: Path) -> None:
    """As the pool service lays it out (source/lxcloud-<cloud>-<name>): the operator's files
    in the source stay; no mount is left."""
    src = work_dir / "operator"
    src.mkdir()
    (src / "theirs").write_text("keep me")
    pool = SharedPool(PoolSpec("sp", "shared", src / "lxcloud-c1-sp", source=str(src)),
                      local=work_dir / "host-a")
    assert pool.path == src / "lxcloud-c1-sp"
    pool.ensure()
    pool.create_base("ami-1", lambda d: (d / "f").write_text("x"))
    pool.create_root("i-1", Disk(pool="sp", source="ami-1"))
    pool.create_volume("vol-1", 0)
    pool.teardown()
    assert sorted(os.listdir(src)) == ["theirs"] and not (work_dir / "host-a").exists()


def test_a_volume_of_the_shared_pool_in_an_instance(shared_launch: Launcher, cephfs: CephFS,
                                                    work_dir: Path) -> None:
    """A volume bind-mounted into a running instance: written inside, limited (EDQUOT inside),
    and what it holds read through another mount of the filesystem."""
    pool = shared_launch.pool
    assert isinstance(pool, SharedPool)
    vol = pool.create_volume("vol-in", 24 * MiB, IDMAP.host_uid, IDMAP.host_gid)
    box = _boot(shared_launch, 0, (Mount(vol, "/media/vol-in"),))
    code, out = _sh(box, "echo inside > /media/vol-in/note && ls -ln /media/vol-in/note")
    assert code == 0 and " 0 " in out, out                    # owned by the instance's root
    code, out = _sh(box, "dd if=/dev/zero of=/media/vol-in/big bs=1M count=200 conv=fsync")
    assert code != 0 and "Disk quota exceeded" in out, out
    _sh(box, "rm /media/vol-in/big")
    other = cephfs.cluster.mount(work_dir / "other")     # another client of the filesystem
    try:
        assert (other / vol.relative_to(cephfs.mount) / "note").read_text() == "inside\n"
    finally:
        cephfs.cluster.unmount(other)
    assert not loop.is_mounted(other)
