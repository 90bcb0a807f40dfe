"""The btrfs pool on a real loop-backed btrfs file: the storage contract, qgroup limits (simple
quotas on this kernel), snapshots restored in any order, nothing left behind, and a real
unprivileged container whose 64 MiB disk is enforced from inside."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import btrfsutil
import pytest

from lxcloud.core.errors import DriverError, InUse, InvalidInput
from lxcloud.core.instance import Disk
from lxcloud.core.instance_types import Limits
from lxcloud.core.proc import run
from lxcloud.drivers.compute.lxc import LxcDriver
from lxcloud.drivers.storage import btrfs, loop
from lxcloud.drivers.storage.base import PoolSpec, SnapshotOf
from lxcloud.drivers.storage.btrfs import BtrfsPool
from lxcloud.drivers.storage.registry import get_storage_driver
from tests.contracts.storage import *  # noqa: F403
from tests.contracts.storage import root_disk
from tests.integration.conftest import (
    IDMAP,
    Box,
    Template,
    busybox_spec,
    populate_busybox,
    unique,
    wait_for,
)

pytestmark = pytest.mark.root

MiB = 1 << 20
POOL_SIZE = 2 << 30          # sparse: only what is written


def _loops_under(d: Path) -> list[str]:
    out = run(["losetup", "-a"]).stdout.decode()
    return [line for line in out.splitlines() if f"({d}/" in line]


def make_btrfs_pool(work_dir: Path) -> BtrfsPool:
    p = BtrfsPool(PoolSpec("test", "btrfs", work_dir / "pool", size=POOL_SIZE))
    p.ensure()
    return p


@pytest.fixture
def pool(work_dir: Path) -> Iterator[BtrfsPool]:
    """The storage contract's pool: a loop-backed btrfs file, torn down after (no loop device
    or mount left)."""
    p = make_btrfs_pool(work_dir)
    yield p
    p.teardown()
    assert not loop.mounts_under(work_dir) and not _loops_under(work_dir)


def _qgroups(pool: BtrfsPool) -> set[str]:
    """The filesystem's qgroups ("0_257": a subvolume's, "1_257": a disk's), but the top's."""
    return {q.name for q in pool._qgroups().glob("[01]_*")} - {"0_5"}


def _subvolumes(pool: BtrfsPool) -> set[int]:
    return {info.id for _, info in btrfsutil.SubvolumeIterator(str(pool.path), info=True)}


def _settled(pool: BtrfsPool) -> bool:
    """Deleted subvolumes cleaned by the kernel (their empty qgroups go with them), and the
    qgroups that emptied only then (a root's extents a snapshot still shared when the root was
    dropped) reaped as the pool's next deletion would."""
    btrfsutil.sync(str(pool.path))
    if btrfsutil.deleted_subvolumes(str(pool.path)):
        return False
    pool._reap_qgroups()
    return True


def test_registered_and_declares_its_limits_honestly(pool: BtrfsPool) -> None:
    assert isinstance(get_storage_driver(PoolSpec("p", "btrfs", pool.path)), BtrfsPool)
    c = pool.caps
    assert c.quota and c.online_resize and c.cow_snapshots and c.copy_on_write
    assert not c.quota_visible and "df" in c.quota_note     # said, never silently
    assert pool.quota_mode == "squota"                       # kernel 6.18: simple quotas


def test_not_btrfs_is_refused(work_dir: Path) -> None:
    with pytest.raises(InvalidInput, match="not on a btrfs"):
        BtrfsPool(PoolSpec("p", "btrfs", work_dir / "plain" / "pool")).ensure()
    assert not (work_dir / "plain").exists()                 # nothing left behind
    (work_dir / "src").mkdir()
    with pytest.raises(InvalidInput, match="not on a btrfs"):
        BtrfsPool(PoolSpec("p", "btrfs", work_dir / "x", source=str(work_dir / "src"))).ensure()
    assert os.listdir(work_dir / "src") == []


def test_root_is_a_snapshot_flat_in_image_size(pool: BtrfsPool) -> None:
    def big(dest: Path) -> None:
        (dest / "marker").write_text("base\n")
        (dest / "big").write_bytes(os.urandom(32 * MiB))

    base = pool.create_base("ami-big", big)
    assert btrfsutil.get_subvolume_read_only(str(base))
    rootfs = pool.create_root("i-flat", root_disk("ami-big", 64 * MiB), IDMAP.host_uid,
                              IDMAP.host_gid)
    assert rootfs.kind == "dir" and btrfsutil.is_subvolume(str(rootfs.path))
    st = rootfs.path.stat()
    assert (st.st_uid, st.st_gid) == (IDMAP.host_uid, IDMAP.host_gid)
    assert (rootfs.path / "big").stat().st_size == 32 * MiB
    assert pool.root_usage("i-flat") < 1 * MiB               # the base's extents are shared


def test_quota_enforced_shrink_refused_grow_online(pool: BtrfsPool) -> None:
    pool.create_base("ami-q", lambda d: (d / "marker").write_text("x"))
    rootfs = pool.create_root("i-q", root_disk("ami-q", 32 * MiB), 0, 0)
    with pytest.raises(OSError) as e:
        (rootfs.path / "fill").write_bytes(b"\0" * (64 * MiB))
    assert e.value.errno in (errno.EDQUOT, errno.ENOSPC)
    (rootfs.path / "fill").unlink()
    (rootfs.path / "data").write_bytes(b"\1" * (20 * MiB))
    with pytest.raises(InvalidInput, match="uses 20"):
        pool.resize_root("i-q", 16 * MiB)
    pool.resize_root("i-q", 96 * MiB)
    (rootfs.path / "more").write_bytes(b"\2" * (40 * MiB))  # fits the new limit
    assert pool.root_usage("i-q") >= 60 * MiB
    with pytest.raises(OSError):
        (rootfs.path / "fill").write_bytes(b"\0" * (64 * MiB))
    pool.create_snapshot(SnapshotOf.ROOT, "i-q", "full")    # a full disk: snapshot, delete
    pool.delete_root("i-q")
    assert not pool.has_root("i-q") and not pool.has_snapshot(SnapshotOf.ROOT, "i-q", "full")


def test_volume_quota_enforced(pool: BtrfsPool) -> None:
    path = pool.create_volume("vol-q", 16 * MiB, IDMAP.host_uid, IDMAP.host_gid)
    assert path.stat().st_uid == IDMAP.host_uid
    with pytest.raises(OSError):
        (path / "fill").write_bytes(b"\0" * (32 * MiB))
    (path / "fill").unlink()
    assert pool.volume_usage("vol-q") < 1 * MiB


def test_restore_an_older_snapshot_then_a_newer_one(pool: BtrfsPool) -> None:
    pool.create_base("ami-s", lambda d: (d / "marker").write_text("base\n"))
    rootfs = pool.create_root("i-s", root_disk("ami-s", 64 * MiB), 0, 0)
    for n in (1, 2, 3):
        (rootfs.path / "version").write_text(f"v{n}")
        pool.create_snapshot(SnapshotOf.ROOT, "i-s", f"s{n}")
    snap = pool._snapshot(SnapshotOf.ROOT, "i-s", "s1")
    assert btrfsutil.is_subvolume(str(snap)) and btrfsutil.get_subvolume_read_only(str(snap))
    pool.restore_snapshot(SnapshotOf.ROOT, "i-s", "s1")
    assert (rootfs.path / "version").read_text() == "v1"
    assert pool._limit(rootfs.path) == 64 * MiB               # the limit is kept
    pool.restore_snapshot(SnapshotOf.ROOT, "i-s", "s3")
    assert (rootfs.path / "version").read_text() == "v3"
    assert not btrfsutil.get_subvolume_read_only(str(rootfs.path))
    assert list((pool.path / "tmp").iterdir()) == []


def test_a_restore_does_not_reset_what_the_disk_holds(pool: BtrfsPool) -> None:
    """What the replaced subvolume wrote, and a snapshot still holds, stays charged to the disk:
    snapshot-and-restore cannot be used to grow past the limit."""
    pool.create_base("ami-rr", lambda d: (d / "marker").write_text("x"))
    rootfs = pool.create_root("i-rr", root_disk("ami-rr", 64 * MiB), 0, 0)
    (rootfs.path / "a").write_bytes(b"\1" * (40 * MiB))
    pool.create_snapshot(SnapshotOf.ROOT, "i-rr", "s1")
    pool.restore_snapshot(SnapshotOf.ROOT, "i-rr", "s1")
    assert pool.root_usage("i-rr") >= 40 * MiB
    with pytest.raises(OSError) as e:
        (rootfs.path / "b").write_bytes(b"\2" * (40 * MiB))
    assert e.value.errno in (errno.EDQUOT, errno.ENOSPC)
    pool.restore_snapshot(SnapshotOf.ROOT, "i-rr", "s1")     # a full disk restores too
    assert not (rootfs.path / "b").exists()
    clone = pool.clone_root("i-rr", "i-rr2", root_disk("ami-rr", 64 * MiB), 0, 0)
    (clone.path / "b").write_bytes(b"\2" * (40 * MiB))   # a disk of its own: its own limit
    assert pool.root_usage("i-rr2") < 48 * MiB
    pool.delete_snapshot(SnapshotOf.ROOT, "i-rr", "s1")


def test_failures_midway_leave_nothing(pool: BtrfsPool, monkeypatch: pytest.MonkeyPatch) -> None:
    pool.create_base("ami-f", lambda d: (d / "marker").write_text("x"))
    wait_for(lambda: _settled(pool), 30, "the cleaner")
    before_subvols, before_qgroups = _subvolumes(pool), _qgroups(pool)

    def refuse(path: Path, group: int, size: int) -> None:
        raise DriverError("the host refused the limit")
    monkeypatch.setattr(btrfs, "set_limit", refuse)
    with pytest.raises(DriverError):
        pool.create_root("i-f", root_disk("ami-f", 64 * MiB), 0, 0)
    with pytest.raises(DriverError):
        pool.create_volume("vol-f", 64 * MiB, 0, 0)
    monkeypatch.undo()

    def boom(dest: Path) -> None:
        (dest / "half").write_text("x")
        raise RuntimeError("archive truncated")
    with pytest.raises(RuntimeError):
        pool.create_base("ami-boom", boom)
    assert not pool.has_root("i-f") and not pool.has_volume("vol-f")
    assert not pool.has_base("ami-boom") and list((pool.path / "tmp").iterdir()) == []
    wait_for(lambda: _settled(pool) and _subvolumes(pool) == before_subvols
             and _qgroups(pool) == before_qgroups, 30, "no stray subvolume or qgroup")


def test_deleting_leaves_no_qgroup(pool: BtrfsPool) -> None:
    pool.create_base("ami-d", lambda d: (d / "f").write_bytes(b"\3" * MiB))
    wait_for(lambda: _settled(pool), 30, "the cleaner")
    before = _qgroups(pool)
    rootfs = pool.create_root("i-d", root_disk("ami-d", 64 * MiB), 0, 0)
    (rootfs.path / "own").write_bytes(b"\4" * MiB)
    pool.create_snapshot(SnapshotOf.ROOT, "i-d", "s1")
    pool.create_volume("vol-d", 64 * MiB)
    pool.create_snapshot(SnapshotOf.VOLUME, "vol-d", "s1")
    assert len(_qgroups(pool)) == len(before) + 6    # 2 disks (a subvolume and a group each), 2 snapshots
    pool.delete_root("i-d")
    pool.delete_volume("vol-d")
    wait_for(lambda: _settled(pool) and _qgroups(pool) == before, 30, "the qgroups gone")
    pool.delete_base("ami-d")
    wait_for(lambda: _settled(pool) and not _qgroups(pool), 30, "the base's qgroup gone")


def test_concurrent_launches_and_deletions(pool: BtrfsPool) -> None:
    pool.create_base("ami-c", lambda d: (d / "marker").write_text("x"))
    wait_for(lambda: _settled(pool), 30, "the cleaner")
    before = _qgroups(pool)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(6):
                rootfs = pool.create_root(f"i-c{n}-{i}", root_disk("ami-c", 32 * MiB), 0, 0)
                (rootfs.path / "f").write_bytes(b"\7" * MiB)
                if i % 2:
                    pool.delete_root(f"i-c{n}-{i - 1}")
        except BaseException as e:   # noqa: BLE001 - collected, asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    for n in range(6):
        for i in range(6):
            assert pool.has_root(f"i-c{n}-{i}") == bool(i % 2)
            assert i % 2 == 0 or pool._limit(pool.instance_path(f"i-c{n}-{i}")) == 32 * MiB
            pool.delete_root(f"i-c{n}-{i}")
    wait_for(lambda: _settled(pool) and _qgroups(pool) == before, 30, "no stray qgroup")


def test_teardown_after_a_remount_leaves_no_loop_or_mount(work_dir: Path) -> None:
    p = make_btrfs_pool(work_dir)
    p.create_base("ami-r", lambda d: (d / "marker").write_text("kept\n"))
    p.create_root("i-r", root_disk("ami-r", 64 * MiB), 0, 0)
    loop.umount(p.path)                                  # as after a host reboot
    assert not loop.is_mounted(p.path) and not _loops_under(work_dir)
    again = BtrfsPool(p.spec)
    again.ensure()
    assert again.has_root("i-r") and again.caps == p.caps
    assert again._limit(again.instance_path("i-r")) == 64 * MiB    # quotas survive
    again.teardown()
    assert not loop.mounts_under(work_dir) and not _loops_under(work_dir)
    assert not p.path.exists() and not loop.image_of(p.path).exists()


def test_a_btrfs_directory_as_source_keeps_the_operators_data(pool: BtrfsPool) -> None:
    src = pool.path / "volumes"                # any directory on btrfs: here, the first pool's
    (src / "operator").write_text("mine")
    inner = BtrfsPool(PoolSpec("inner", "btrfs", Path("/nonexistent"), source=str(src)))
    inner.ensure()
    assert inner.caps.quota and inner.path == src
    inner.create_base("ami-i", lambda d: (d / "marker").write_text("x"))
    inner.create_root("i-i", root_disk("ami-i", 32 * MiB), 0, 0)
    inner.teardown()
    assert sorted(os.listdir(src)) == ["operator"]


# --- a real unprivileged container on a btrfs pool


@pytest.fixture
def boxes(lxc_driver: LxcDriver, pool: BtrfsPool) -> Iterator[list[Box]]:
    made: list[Box] = []
    yield made
    for box in made:
        lxc_driver.destroy(box.name)
        pool.delete_root(box.name)


def _boot(lxc_driver: LxcDriver, pool: BtrfsPool, image_id: str, size: int,
          boxes: list[Box], start: bool = True) -> Box:
    name = unique("i-b")
    rootfs = pool.create_root(name, Disk(pool="test", source=image_id, size=size),
                              IDMAP.host_uid, IDMAP.host_gid)
    spec = busybox_spec(name, image_id, hostname=unique("bb-"),
                        limits=Limits(vcpus=1, memory=128 * MiB, swap=0, pids=256, disk=size))
    box = Box(spec, rootfs, lxc_driver)
    boxes.append(box)
    lxc_driver.create(spec, rootfs)
    if start:
        lxc_driver.start(name)
    return box


def sh(box: Box, script: str) -> tuple[int, str]:
    r = box.driver.exec(box.name, ["sh", "-c", script])
    return r.exit_code, (r.stdout + r.stderr).decode()


def test_a_container_cannot_write_past_its_64mib_disk(lxc_driver: LxcDriver, pool: BtrfsPool,
                                                      busybox_template: Template,
                                                      boxes: list[Box]) -> None:
    image = unique("ami-bb")
    pool.create_base(image, populate_busybox(busybox_template))
    box = _boot(lxc_driver, pool, image, 64 * MiB, boxes)
    other = _boot(lxc_driver, pool, image, 64 * MiB, boxes)
    code, out = sh(box, "dd if=/dev/zero of=/fill bs=1M count=200")
    assert code != 0 and ("Disk quota exceeded" in out or "No space left" in out), out
    assert 56 * MiB <= pool.root_usage(box.name) <= 66 * MiB
    assert sh(other, "dd if=/dev/zero of=/f bs=1M count=8")[0] == 0     # the other is untouched
    with pytest.raises(DriverError, match=box.name):                     # in use: refused
        pool.delete_root(box.name)
    pool.create_snapshot(SnapshotOf.ROOT, box.name, "s1")
    with pytest.raises(InUse):
        pool.restore_snapshot(SnapshotOf.ROOT, box.name, "s1")
    pool.resize_root(box.name, 128 * MiB)                                # online, running
    assert sh(box, "dd if=/dev/zero of=/more bs=1M count=32")[0] == 0
    with pytest.raises(InvalidInput, match="uses"):
        pool.resize_root(box.name, 64 * MiB)
    sh(box, "rm /fill /more")
    # what snapshot s1 still holds (/fill) stays charged to the root (simple quotas charge an
    # extent to the subvolume that wrote it for as long as anything references it)
    wait_for(lambda: pool.root_usage(box.name) < 66 * MiB, 30, "/more given back")
    assert pool.root_usage(box.name) >= 56 * MiB
    pool.delete_snapshot(SnapshotOf.ROOT, box.name, "s1")
    wait_for(lambda: pool.root_usage(box.name) < 8 * MiB, 30, "the space given back")


PROBE_C = r"""
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
int main(int argc, char **argv) {        /* probe subvol|subvol2|snap|snap2 DIR NAME */
    if (argc != 4) return 2;
    int dir = open(argv[2], O_RDONLY | O_DIRECTORY);
    if (dir < 0) { perror("open"); return 2; }
    struct btrfs_ioctl_vol_args v1; struct btrfs_ioctl_vol_args_v2 v2;
    memset(&v1, 0, sizeof v1); memset(&v2, 0, sizeof v2);
    strncpy(v1.name, argv[3], sizeof v1.name - 1); strncpy(v2.name, argv[3], sizeof v2.name - 1);
    v1.fd = v2.fd = dir;             /* a snapshot of DIR itself (a subvolume's top) */
    int r;
    if (!strcmp(argv[1], "subvol")) r = ioctl(dir, BTRFS_IOC_SUBVOL_CREATE, &v1);
    else if (!strcmp(argv[1], "subvol2")) r = ioctl(dir, BTRFS_IOC_SUBVOL_CREATE_V2, &v2);
    else if (!strcmp(argv[1], "snap")) r = ioctl(dir, BTRFS_IOC_SNAP_CREATE, &v1);
    else r = ioctl(dir, BTRFS_IOC_SNAP_CREATE_V2, &v2);
    if (r < 0) { fprintf(stderr, "%s: %s\n", argv[1], strerror(errno)); return 1; }
    return 0;
}
"""
KINDS = ("subvol", "subvol2", "snap", "snap2")


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static program that makes a subvolume (or a snapshot of a directory) with each of the
    four ioctls: busybox has no `btrfs`."""
    d = tmp_path_factory.mktemp("probe")
    (d / "probe.c").write_text(PROBE_C)
    run(["gcc", "-static", "-O2", "-o", str(d / "probe"), str(d / "probe.c")], timeout=120)
    return d / "probe"


def test_the_nested_subvolume_escape_is_closed(lxc_driver: LxcDriver, pool: BtrfsPool,
                                              busybox_template: Template, probe: Path,
                                              boxes: list[Box]) -> None:
    """The escape an earlier attempt found: with a limit on a root's own qgroup only, a
    subvolume made inside it is a qgroup of its own, outside the limit (measured here too
    before disks became level-1 qgroups: 32 MiB written into one under a 16 MiB root). Closed
    twice now: the disk is a level-1 qgroup, which simple quotas make every subvolume created
    inside it a member of; and the LXC driver refuses the ioctls (full qgroups inherit nothing)."""
    image = unique("ami-bb")
    pool.create_base(image, populate_busybox(busybox_template))
    box = _boot(lxc_driver, pool, image, 16 * MiB, boxes)
    root = box.rootfs.path
    shutil.copy(probe, root / "probe")
    # made from the host (where no seccomp rule applies): charged to the disk all the same
    run([str(probe), "subvol2", str(root), "outside"])
    with pytest.raises(OSError) as e:
        (root / "outside" / "big").write_bytes(b"\5" * (32 * MiB))    # twice the limit
    assert e.value.errno == errno.EDQUOT
    assert pool.root_usage(box.name) >= 15 * MiB
    (root / "outside" / "big").unlink()
    # inside, every way of making one is refused, the container's root user included
    for kind in KINDS:
        code, out = sh(box, f"/probe {kind} / nested-{kind}")
        assert code == 1 and "Operation not permitted" in out, (kind, out)
        code, out = sh(box, f"mkdir -p /d && /probe {kind} /d n-{kind}")
        assert code == 1 and "Operation not permitted" in out, (kind, out)
    assert not [e for e in os.listdir(root) if e.startswith("nested")]
    assert [p for p, _ in btrfsutil.SubvolumeIterator(str(root))] == ["outside"]
    assert sh(box, "mkdir /d/plain && echo ok > /d/plain/f && cat /d/plain/f")[1].strip() == "ok"
    lxc_driver.destroy(box.name)
    with pytest.raises(OSError):
        (root / "outside" / "big").write_bytes(b"\5" * (32 * MiB))    # full again
    pool.delete_root(box.name)          # a full disk with a subvolume inside: removed whole
    boxes.remove(box)
    assert not root.exists()


def test_without_the_rule_a_subvolume_made_inside_is_still_charged(
        lxc_driver: LxcDriver, pool: BtrfsPool, busybox_template: Template, probe: Path,
        boxes: list[Box]) -> None:
    """liblxc's own profile lets the ioctls through: an unprivileged container's root can make
    a subvolume, and simple quotas still charge what it writes there to the disk."""
    image = unique("ami-bb")
    pool.create_base(image, populate_busybox(busybox_template))
    box = _boot(lxc_driver, pool, image, 16 * MiB, boxes, start=False)
    config = lxc_driver.lxcpath / box.name / "config"
    lines = [ln for ln in config.read_text().splitlines() if not ln.startswith("lxc.seccomp")]
    config.write_text("\n".join(lines) + "\n")
    shutil.copy(probe, box.rootfs.path / "probe")
    lxc_driver.start(box.name)
    code, out = sh(box, "/probe subvol2 / nested && dd if=/dev/zero of=/nested/big bs=1M count=32")
    assert code == 1 and "Disk quota exceeded" in out, out
    assert btrfsutil.is_subvolume(str(box.rootfs.path / "nested"))


@pytest.fixture
def device(work_dir: Path) -> Iterator[str]:
    """A block device of its own (a loop device over a sparse file), detached afterwards."""
    img = work_dir / "disk.img"
    with open(img, "wb") as f:
        f.truncate(1 << 30)
    dev = run(["losetup", "-f", "--show", str(img)]).stdout.decode().strip()
    try:
        yield dev
    finally:
        run(["losetup", "-d", dev], check=False)


def test_a_block_device_as_source(work_dir: Path, device: str) -> None:
    spec = PoolSpec("dev", "btrfs", work_dir / "devpool", source=device)
    p = BtrfsPool(spec)
    p.ensure()                                       # blank: formatted, then mounted
    assert loop.is_mounted(p.path) and p.caps.quota
    p.create_base("ami-dv", lambda d: (d / "marker").write_text("x"))
    p.create_root("i-dv", root_disk("ami-dv", 32 * MiB), 0, 0)
    loop.umount(p.path)                              # a reboot: mounted again, data kept
    again = BtrfsPool(spec)
    again.ensure()
    assert again.has_root("i-dv") and again._limit(again.instance_path("i-dv")) == 32 * MiB
    again.teardown()
    assert not loop.is_mounted(p.path) and not p.path.exists()
    run(["mkfs.ext4", "-q", "-F", device])
    with pytest.raises(InvalidInput, match="ext4"):  # never formats a device holding data
        BtrfsPool(spec).ensure()
    assert not loop.is_mounted(p.path)
