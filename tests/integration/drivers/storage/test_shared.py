"""The shared pool on a real CephFS (a single-node Ceph the tests start, tests/integration/cephfs.py):
the storage contract, CephFS quotas enforced and shown by `df`, CephFS snapshots, and the pool's
data seen through a second mount of the same filesystem (standing in for a second host)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.core.errors import InUse
from lxcloud.core.instance import Disk
from lxcloud.core.instance_types import Limits
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


@pytest.fixture
def pool(cephfs: CephFS, work_dir: Path) -> Iterator[SharedPool]:
    """The storage contract's pool (tests/contracts/storage.py): a shared pool in a fresh
    directory of the CephFS."""
    source = cephfs.fresh_dir("contract-")
    p = shared_pool(cephfs, source, work_dir / "host-a")
    yield p
    _gone(p, source)


def test_the_pool_on_cephfs_declares_what_it_does(pool: SharedPool) -> None:
    c = pool.caps
    assert c.remote and c.quota and c.quota_visible and c.online_resize
    assert c.snapshots and c.cow_snapshots and c.volumes and c.copy_on_write


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


def test_quota_is_enforced_and_shown(pool: SharedPool) -> None:
    pool.create_base("ami-q", lambda d: (d / "marker").write_text("base\n"))
    rootfs = pool.create_root("i-q", Disk(pool="shared", source="ami-q", size=32 * MiB),
                              IDMAP.host_uid, IDMAP.host_gid)
    st = os.statvfs(rootfs.path)
    assert st.f_blocks * st.f_frsize == 32 * MiB          # what df inside shows
    assert loop.mount_of(rootfs.path.parent)[0] == "fuse.ceph-fuse"
    written = _write_until_edquot(rootfs.path / "big", 32 * MiB)
    assert 24 * MiB <= written
    (rootfs.path / "big").unlink()
    vol = pool.create_volume("vol-q", 16 * MiB, IDMAP.host_uid, IDMAP.host_gid)
    assert _write_until_edquot(vol / "big", 16 * MiB) >= 8 * MiB
    (vol / "big").unlink()
    pool.resize_root("i-q", 64 * MiB)                      # online: the limit and df follow
    wait_for(lambda: os.statvfs(rootfs.path).f_blocks * os.statvfs(rootfs.path).f_frsize
             == 64 * MiB, 30, "df showing the new limit")
