"""The dir pool: read-only bases made once, overlay roots, under real overlayfs and real containers."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.core.errors import Conflict, DriverError, InUse, InvalidInput, NotFound, Unsupported
from lxcloud.core.host import HostState
from lxcloud.core.instance import Disk
from lxcloud.core.instance_types import Limits
from lxcloud.core.proc import run
from lxcloud.drivers.storage import loop
from lxcloud.drivers.storage.base import PoolSpec, SnapshotOf
from lxcloud.drivers.storage.dir import DirPool
from lxcloud.drivers.storage.registry import get_storage_driver
from lxcloud.images.builders.busybox import build_busybox_tree
from tests.contracts.storage import *  # noqa: F403
from tests.contracts.storage import root_disk
from tests.integration.conftest import (
    IDMAP,
    Box,
    Launcher,
    Template,
    busybox_spec,
    make_dir_pool,
    populate_busybox,
    unique,
)

pytestmark = pytest.mark.root


@pytest.fixture(params=["plain", "loop", "source"])
def pool(work_dir: Path, request: pytest.FixtureRequest) -> Iterator[DirPool]:
    """The storage contract's pool (tests/contracts/storage.py), of each kind: a plain directory
    (no quotas), a loop-backed XFS file (ext4 images, reflinked), an existing directory (ext4
    images, formatted per disk where its filesystem has no reflinks)."""
    p = make_dir_pool(work_dir, request.param)
    yield p
    p.teardown()
    assert not loop.mounts_under(work_dir) and not _loops_under(work_dir)


def _loops_under(d: Path) -> list[str]:
    """Loop devices bound to files below `d`."""
    out = run(["losetup", "-a"]).stdout.decode()
    return [line for line in out.splitlines() if f"({d}/" in line]


def test_base_made_once_under_concurrency(dir_pool: DirPool, busybox_template: Template) -> None:
    calls: list[int] = []
    inner = populate_busybox(busybox_template)

    def populate(dest: Path) -> None:
        calls.append(1)
        inner(dest)

    barrier = threading.Barrier(6)
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(dir_pool.create_base("ami-conc", populate))
        except BaseException as e:   # noqa: BLE001 - collected and re-raised by the test below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(calls) == 1 and len(set(results)) == 1
    base = results[0]
    assert (base / "bin/busybox").is_file() and base.stat().st_uid == IDMAP.host_uid
    assert dir_pool.has_base("ami-conc")
    assert [p.name for p in (dir_pool.path / "bases").iterdir()] == ["ami-conc"]   # no temp dirs left


def test_failed_populate_leaves_nothing(dir_pool: DirPool) -> None:
    def bad(dest: Path) -> None:
        build_busybox_tree(dest)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        dir_pool.create_base("ami-bad", bad)
    assert not dir_pool.has_base("ami-bad")
    assert list((dir_pool.path / "bases").iterdir()) == []


def test_root_is_an_empty_layer_owned_by_mapped_root(dir_pool: DirPool, busybox_image: str) -> None:
    spec = dir_pool.create_root("i-root1", root_disk(busybox_image), IDMAP.host_uid, IDMAP.host_gid)
    assert spec.kind == "overlay" and spec.lower == dir_pool.base_path(busybox_image)
    assert spec.path == dir_pool.instance_path("i-root1") / "upper"
    work = spec.path.parent / "work"   # where liblxc 5.0 puts overlayfs' workdir
    for d in (spec.path, work):
        st = d.stat()
        assert (st.st_uid, st.st_gid) == (IDMAP.host_uid, IDMAP.host_gid)
    assert list(spec.path.iterdir()) == []          # nothing copied: independent of image size
    usage0 = dir_pool.root_usage("i-root1")
    (spec.path / "big").write_bytes(b"x" * 1_000_000)
    assert dir_pool.root_usage("i-root1") >= usage0 + 1_000_000
    dir_pool.create_root("i-root1", root_disk(busybox_image), IDMAP.host_uid, IDMAP.host_gid)   # idempotent
    dir_pool.delete_root("i-root1")
    assert not dir_pool.instance_path("i-root1").exists()
    dir_pool.delete_root("i-root1")                 # missing: no-op
    with pytest.raises(NotFound):
        dir_pool.root_usage("i-root1")


def test_errors(dir_pool: DirPool) -> None:
    with pytest.raises(NotFound):
        dir_pool.create_root("i-x", root_disk("ami-none"))
    for bad in ("../etc", "a/b", ".hidden", ""):
        with pytest.raises(InvalidInput):
            dir_pool.create_root(bad, root_disk("ami-none"))
    assert isinstance(get_storage_driver(PoolSpec("p", "dir", dir_pool.path)), DirPool)
    with pytest.raises(Unsupported):
        get_storage_driver(PoolSpec("p", "zfs", dir_pool.path))


def test_overlay_in_a_real_container(launch: Launcher, dir_pool: DirPool, busybox_image: str) -> None:
    a = launch(nic=False)
    b = launch(nic=False)
    d = launch.driver
    d.exec(a.name, ["sh", "-c", "echo A > /etc/who; rm /bin/vi"])
    assert d.exec(b.name, ["cat", "/etc/who"]).exit_code != 0       # b does not see a's layer
    assert d.exec(b.name, ["ls", "/bin/vi"]).exit_code == 0
    base = dir_pool.base_path(busybox_image)
    assert (base / "bin/vi").is_symlink() and not (base / "etc/who").exists()
    assert (a.rootfs.path / "etc/who").read_text() == "A\n"
    d.destroy(a.name)
    dir_pool.delete_root(a.name)
    assert not dir_pool.instance_path(a.name).exists()
    assert d.state(b.name) is HostState.RUNNING


def test_delete_base(dir_pool: DirPool, busybox_template: Template) -> None:
    dir_pool.create_base("ami-del", populate_busybox(busybox_template))
    dir_pool.delete_base("ami-del")
    assert not dir_pool.has_base("ami-del")
    assert list((dir_pool.path / "bases").iterdir()) == []
    dir_pool.delete_base("ami-del")                 # missing: no-op


# --- limits, snapshots and clones with real containers (a loop-backed pool: ext4 image per disk)

LOOP = pytest.mark.parametrize("dir_pool", ["loop"], indirect=True)
MiB = 1 << 20


def boot(launch: Launcher, size: int, *, start: bool = True) -> Box:
    """A busybox container whose root disk is limited to `size` (removed by the launcher)."""
    name = unique("i-q")
    disk = Disk(pool="test", source=launch.image_id, size=size)
    rootfs = launch.pool.create_root(name, disk, IDMAP.host_uid, IDMAP.host_gid)
    spec = busybox_spec(name, launch.image_id, hostname=unique("bb-"),
                        limits=Limits(vcpus=1, memory=128 * MiB, swap=0, pids=256, disk=size),
                        halt_signal=launch.metadata.get("halt_signal"))
    box = Box(spec, rootfs, launch.driver)
    launch.boxes.append(box)
    launch.driver.create(spec, rootfs)
    if start:
        launch.driver.start(name)
    return box


def sh(box: Box, script: str) -> tuple[int, str]:
    r = box.driver.exec(box.name, ["sh", "-c", script])
    return r.exit_code, (r.stdout + r.stderr).decode()


def df_root(box: Box) -> tuple[int, int]:
    """(size, used) in bytes of / as `df` inside the container shows it."""
    code, out = sh(box, "df -kP / | tail -1")
    assert code == 0, out
    fields = out.split()
    return int(fields[1]) * 1024, int(fields[2]) * 1024


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@LOOP
def test_the_limit_is_enforced_and_seen_from_inside(launch: Launcher, dir_pool: DirPool) -> None:
    assert dir_pool.caps.quota and dir_pool.caps.quota_visible
    box = boot(launch, 64 * MiB)
    other = boot(launch, 64 * MiB)
    size, _ = df_root(box)
    assert 0.9 * 64 * MiB <= size <= 64 * MiB          # the limit, less ext4's own metadata
    pool_file = loop.image_of(dir_pool.path)
    host_before, pool_before = os.statvfs("/"), allocated(pool_file)
    code, out = sh(box, "dd if=/dev/zero of=/fill bs=1M count=200")
    assert code != 0 and "No space left on device" in out
    _, used = df_root(box)
    assert used >= 0.9 * size
    # the pool's file grew by at most the limit; the other instance is untouched
    assert allocated(pool_file) - pool_before <= 70 * MiB
    host_after = os.statvfs("/")
    assert (host_before.f_bavail - host_after.f_bavail) * host_after.f_frsize <= 70 * MiB
    code, out = sh(other, "dd if=/dev/zero of=/f bs=1M count=8")
    assert code == 0, out
    assert dir_pool.root_usage(box.name) >= 0.9 * size
    sh(box, "rm /fill")
    assert dir_pool.root_usage(box.name) < 8 * MiB     # given back (discard)


@LOOP
def test_resize_grow_and_shrink(launch: Launcher, dir_pool: DirPool) -> None:
    box = boot(launch, 64 * MiB)
    assert sh(box, "dd if=/dev/zero of=/data bs=1M count=40")[0] == 0
    d = launch.driver
    if dir_pool.caps.online_resize:
        dir_pool.resize_root(box.name, 128 * MiB)      # while it runs
        assert df_root(box)[0] > 100 * MiB
    else:
        # without CAP_SYS_RESOURCE ext4 cannot grow mounted: refused while it runs, untouched
        with pytest.raises(InUse):
            dir_pool.resize_root(box.name, 128 * MiB)
        assert d.state(box.name) is HostState.RUNNING and df_root(box)[0] <= 64 * MiB
        assert sh(box, "echo still > /w && cat /w")[1].strip() == "still"
        d.stop(box.name, force=True)
        dir_pool.resize_root(box.name, 128 * MiB)
        d.start(box.name)
        assert df_root(box)[0] > 100 * MiB
    assert sh(box, "ls -l /data")[0] == 0
    with pytest.raises(InUse):                          # shrinking: only stopped
        dir_pool.resize_root(box.name, 48 * MiB)
    d.stop(box.name, force=True)
    with pytest.raises(InvalidInput, match="uses 4"):  # below what is used: says how much
        dir_pool.resize_root(box.name, 32 * MiB)
    dir_pool.resize_root(box.name, 48 * MiB)
    d.start(box.name)
    size, _ = df_root(box)
    assert 40 * MiB < size <= 48 * MiB
    assert sh(box, "wc -c < /data")[1].strip() == str(40 * MiB)


@LOOP
def test_snapshot_a_running_instance_and_restore_an_older_one(launch: Launcher,
                                                              dir_pool: DirPool) -> None:
    box = boot(launch, 64 * MiB)
    d = launch.driver
    for n in (1, 2, 3):
        assert sh(box, f"echo v{n} > /etc/version; rm -f /bin/vi{n}")[0] == 0
        d.freeze(box.name)                              # the caller's part: consistency
        try:
            dir_pool.create_snapshot(SnapshotOf.ROOT, box.name, f"s{n}")
        finally:
            d.unfreeze(box.name)
    assert dir_pool.caps.cow_snapshots
    assert sh(box, "echo v4 > /etc/version")[0] == 0
    d.stop(box.name, force=True)
    with pytest.raises(Conflict):
        dir_pool.create_snapshot(SnapshotOf.ROOT, box.name, "s2")
    dir_pool.restore_snapshot(SnapshotOf.ROOT, box.name, "s1")     # not the latest
    d.start(box.name)
    assert sh(box, "cat /etc/version")[1].strip() == "v1"
    d.stop(box.name, force=True)
    dir_pool.restore_snapshot(SnapshotOf.ROOT, box.name, "s3")
    d.start(box.name)
    assert sh(box, "cat /etc/version")[1].strip() == "v3"
    assert 0.9 * 64 * MiB <= df_root(box)[0] <= 64 * MiB           # the limit is kept


@LOOP
def test_restore_is_refused_while_the_instance_runs(launch: Launcher, dir_pool: DirPool) -> None:
    box = boot(launch, 64 * MiB)
    dir_pool.create_snapshot(SnapshotOf.ROOT, box.name, "s1")
    sh(box, "echo after > /etc/version")
    with pytest.raises(InUse):
        dir_pool.restore_snapshot(SnapshotOf.ROOT, box.name, "s1")
    assert sh(box, "cat /etc/version")[1].strip() == "after"      # untouched, still mounted
    with pytest.raises(DriverError, match=box.name):
        dir_pool.delete_root(box.name)
    assert dir_pool.has_root(box.name) and sh(box, "cat /etc/version")[0] == 0


@pytest.mark.parametrize("dir_pool", ["plain", "loop"], indirect=True)
def test_clone_and_root_tree_honour_deletions(launch: Launcher, dir_pool: DirPool) -> None:
    box = boot(launch, 64 * MiB if dir_pool.caps.quota else 0)
    code, out = sh(box, "echo mine > /etc/own; rm /bin/vi; rm -rf /usr/bin; mkdir /usr/bin && "
                        "echo new > /usr/bin/only")
    assert code == 0, out                                 # an opaque dir (userxattr) works
    launch.driver.stop(box.name, force=True)
    with dir_pool.root_tree(box.name) as tree:
        assert (tree / "etc/own").read_text() == "mine\n"
        assert not (tree / "bin/vi").exists() and not (tree / "bin/vi").is_symlink()
        assert sorted(os.listdir(tree / "usr/bin")) == ["only"]  # the base's are hidden
        assert (tree / "bin/busybox").is_file()                  # the base shows through
        with pytest.raises(OSError):
            (tree / "x").write_text("read-only")
    assert not loop.mounts_under(dir_pool.path / "tmp")
    name = unique("i-c")
    clone = dir_pool.clone_root(box.name, name, Disk(pool="test", source=launch.image_id,
                                                     size=box.spec.limits.disk),
                                IDMAP.host_uid, IDMAP.host_gid)
    spec = busybox_spec(name, launch.image_id, hostname=unique("bb-"), limits=box.spec.limits,
                        halt_signal=launch.metadata.get("halt_signal"))
    c = Box(spec, clone, launch.driver)
    launch.boxes.append(c)
    launch.driver.create(spec, clone)
    launch.driver.start(name)
    assert sh(c, "cat /etc/own")[1] == "mine\n" and sh(c, "ls /usr/bin")[1] == "only\n"
    assert sh(c, "ls /bin/vi")[0] != 0
    sh(c, "echo clone > /etc/own")
    launch.driver.start(box.name)
    assert sh(box, "cat /etc/own")[1].strip() == "mine"            # its own copy


@LOOP
def test_a_root_is_mounted_again_after_a_reboot(launch: Launcher, dir_pool: DirPool) -> None:
    box = boot(launch, 64 * MiB)
    sh(box, "echo kept > /etc/kept")
    launch.driver.stop(box.name, force=True)
    area = dir_pool.instance_path(box.name)
    loop.umount(area)                                   # what a reboot does to the mount
    assert not loop.is_mounted(area) and dir_pool.has_root(box.name)
    rootfs = dir_pool.create_root(box.name, Disk(pool="test", source=launch.image_id,
                                                 size=64 * MiB), IDMAP.host_uid, IDMAP.host_gid)
    assert rootfs == box.rootfs and loop.is_mounted(area)
    launch.driver.start(box.name)
    assert sh(box, "cat /etc/kept")[1].strip() == "kept"


def test_a_loop_backed_pool_leaves_nothing(work_dir: Path) -> None:
    pool = DirPool(PoolSpec("lp", "dir", work_dir / "lp", size=1 << 30))
    pool.ensure()
    pool.ensure()
    assert loop.mount_of(pool.path) is not None and loop.mount_of(pool.path)[0] == "xfs"
    pool.create_base("ami-1", lambda d: (d / "f").write_text("x"))
    pool.create_root("i-1", Disk(pool="lp", source="ami-1", size=32 * MiB))
    pool.create_volume("vol-1", 32 * MiB)
    pool.create_snapshot(SnapshotOf.VOLUME, "vol-1", "s1")
    assert len(loop.mounts_under(pool.path)) == 2 and len(_loops_under(work_dir)) == 3
    pool.teardown()
    assert not loop.mounts_under(work_dir) and not loop.is_mounted(pool.path)
    assert not _loops_under(work_dir) and list(work_dir.iterdir()) == []
    pool.teardown()                                     # gone: no-op


def test_failures_midway_leave_nothing(work_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = DirPool(PoolSpec("lp", "dir", work_dir / "lp", size=320 * MiB))   # XFS' least
    pool.ensure()
    try:
        pool.create_base("ami-1", lambda d: (d / "f").write_text("x"))

        def listing() -> list[str]:
            # locks and the blank images kept to be cloned are the pool's, not a disk's
            return sorted(str(p.relative_to(pool.path)) for p in pool.path.rglob("*")
                          if not p.is_relative_to(pool.path / "locks")
                          and not p.is_relative_to(pool.path / "blanks"))

        before = listing()
        # the pool full: formatting the new disk's image fails
        with open(pool.path / "hog", "wb") as f:
            free = os.statvfs(pool.path).f_bavail * os.statvfs(pool.path).f_frsize
            os.posix_fallocate(f.fileno(), 0, free - 64 * 1024)
        with pytest.raises(DriverError):
            pool.create_root("i-full", Disk(pool="lp", source="ami-1", size=200 * MiB))
        (pool.path / "hog").unlink()
        assert listing() == before and not loop.mounts_under(pool.path)
        assert not _loops_under(work_dir / "lp")
        # the mount failing after the image is made: the image and the directory go again
        monkeypatch.setattr(loop, "mount_image", _refuse_mount)
        for call in (lambda: pool.create_root("i-m", Disk(pool="lp", source="ami-1", size=32 * MiB)),
                     lambda: pool.create_volume("vol-m", 32 * MiB)):
            with pytest.raises(DriverError, match="refused"):
                call()
        assert not pool.has_root("i-m") and not pool.has_volume("vol-m")
        assert listing() == before
    finally:
        pool.teardown()
    assert not _loops_under(work_dir) and not loop.mounts_under(work_dir)


def _refuse_mount(*args: object, **kwargs: object) -> str:
    raise DriverError("mount refused (injected)")


@LOOP
def test_volume_limit_and_snapshots(dir_pool: DirPool) -> None:
    path = dir_pool.create_volume("vol-q", 64 * MiB, IDMAP.host_uid, IDMAP.host_gid)
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (IDMAP.host_uid, IDMAP.host_gid)
    # a disk of that size: what it shows is the limit less ext4's journal and inode tables
    assert 0.9 * 64 * MiB <= os.statvfs(path).f_blocks * os.statvfs(path).f_frsize <= 64 * MiB
    with pytest.raises(OSError, match="No space left"):
        (path / "big").write_bytes(b"x" * (70 * MiB))
    (path / "big").unlink()
    (path / "v").write_text("1")
    dir_pool.create_snapshot(SnapshotOf.VOLUME, "vol-q", "s1")
    (path / "v").write_text("2")
    dir_pool.restore_snapshot(SnapshotOf.VOLUME, "vol-q", "s1")
    assert (dir_pool.volume_path("vol-q") / "v").read_text() == "1"


def test_a_pool_in_a_source_dir_removes_only_its_own(work_dir: Path) -> None:
    src = work_dir / "operator"
    src.mkdir()
    (src / "theirs").write_text("keep me")
    pool = DirPool(PoolSpec("sp", "dir", work_dir / "unused", source=str(src)))
    assert pool.path == src
    pool.ensure()
    pool.create_base("ami-1", lambda d: (d / "f").write_text("x"))
    pool.create_root("i-1", Disk(pool="sp", source="ami-1", size=32 * MiB))
    assert pool.caps.quota and loop.mounts_under(src)
    pool.teardown()
    assert sorted(os.listdir(src)) == ["theirs"] and not loop.mounts_under(src)
    assert not (work_dir / "unused").exists() and not _loops_under(src)
    with pytest.raises(InvalidInput):
        DirPool(PoolSpec("sp", "dir", work_dir / "x", source=str(work_dir / "nosuch"))).ensure()


@LOOP
def test_a_remounted_loop_pool_says_why_it_has_no_project_quotas(dir_pool: DirPool) -> None:
    again = DirPool(dir_pool.spec)      # an agent restarting: the pool is mounted already
    again.ensure()
    assert again.caps == dir_pool.caps and again.caps.quota_note
