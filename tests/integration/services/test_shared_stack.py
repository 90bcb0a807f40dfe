"""A shared pool through the whole stack in-process (services + the real local node, real LXC) on a
real CephFS (tests/integration/cephfs.py): made by `pools.create` over a directory of the
ceph-fuse mount, a busybox instance on it with a 64 MiB disk (its root an overlay layer on an
ext4 image in the CephFS) enforced and shown from inside, snapshotted running and restored, a
volume with its own CephFS quota hot-attached; then everything removed and the pool deleted
with no mount, loop device or ceph-fuse process left."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.drivers.storage import loop
from lxcloud.drivers.storage.base import SnapshotOf
from lxcloud.services.cloud import Cloud
from lxcloud.services.instances import LaunchRequest
from tests.integration.cephfs import CephFS, cephfs_session  # noqa: F401 - the fixture
from tests.integration.services.stack import df_kib, ok, running_stack, sh, wait

pytestmark = pytest.mark.root
MiB = 1 << 20


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with running_stack("lxcloud-shstack-") as st:
        yield st.cloud


def ceph_fuse_pids() -> set[int]:
    """Every ceph-fuse process on the host (by its command name)."""
    found = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() == "ceph-fuse":
                    found.add(int(p.name))
            except OSError:
                continue
    return found


def loops_under(path: Path) -> list[str]:
    """Loop devices whose backing file lies under `path`."""
    found = []
    for d in Path("/sys/block").glob("loop*"):
        try:
            backing = (d / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(str(path) + "/"):
            found.append(d.name)
    return found


def test_an_instance_on_a_shared_pool(cloud: Cloud, cephfs: CephFS) -> None:
    source = cephfs.fresh_dir("stack-")
    source.chmod(0o711)        # the operator's directory: traversable by the containers' root
    fuse_before = ceph_fuse_pids()
    try:
        pool = cloud.pools.create("sh", "shared", source=str(source))
        assert pool.driver == "shared" and pool.caps["remote"] and pool.caps["copy_on_write"]
        assert pool.quota and pool.caps["quota_visible"], pool.quota_note
        shown = cloud.pools.get("sh")                       # what `pool show` says
        assert shown.caps["remote"] and shown.quota and shown.capacity

        image = cloud.images.list()[0].id
        [(inst, op)] = cloud.instances.launch(LaunchRequest(image=image, name="sh1", pool="sh",
                                                            disk="64MiB", memory="64MiB"))
        assert op is not None
        wait(cloud, op.id)
        assert cloud.instances.get("sh1").state == "running"
        # the root: an overlay layer on an ext4 image in the CephFS, its limit shown and kept
        images = list(Path(shown.path, "instances").glob("*/root.img"))
        assert len(images) == 1 and loop.filesystem_of(images[0])[1] == "fuse.ceph-fuse"
        assert 50 * 1024 <= df_kib(cloud, "sh1") <= 64 * 1024
        code, out = sh(cloud, "sh1", "dd if=/dev/zero of=/fill bs=1M count=100 2>&1")
        assert code != 0 and "No space left" in out, out
        ok(cloud, "sh1", "rm /fill")

        # a snapshot of the running instance, another later, the first restored
        ok(cloud, "sh1", "echo v1 > /etc/version")
        s1, op = cloud.snapshots.create(SnapshotOf.ROOT, "sh1", name="s1")
        wait(cloud, op.id)
        assert cloud.instances.get("sh1").state == "running"      # thawed afterwards
        ok(cloud, "sh1", "echo v2 > /etc/version; echo later > /later")
        s2, op = cloud.snapshots.create(SnapshotOf.ROOT, "sh1", name="s2")
        wait(cloud, op.id)
        wait(cloud, cloud.snapshots.restore(s1.id).id)
        assert cloud.instances.get("sh1").state == "running"
        assert ok(cloud, "sh1", "cat /etc/version").strip() == "v1"
        assert sh(cloud, "sh1", "test -e /later")[0] != 0
        assert 50 * 1024 <= df_kib(cloud, "sh1") <= 64 * 1024    # the limit survives it

        # a volume of the pool, hot-attached: its own CephFS quota, written inside
        vol, op = cloud.volumes.create("shv", "16MiB", pool="sh")
        wait(cloud, op.id)
        wait(cloud, cloud.volumes.attach(vol.id, "sh1").id)
        media = f"/media/{vol.id}"
        ok(cloud, "sh1", f"echo inside > {media}/note")
        code, out = sh(cloud, "sh1", f"dd if=/dev/zero of={media}/big bs=1M count=200 "
                                     "conv=fsync 2>&1")
        assert code != 0 and ("Disk quota exceeded" in out or "No space left" in out), out
        ok(cloud, "sh1", f"rm {media}/big")
        assert (Path(shown.path, "volumes", vol.id, "note")).read_text() == "inside\n"

        wait(cloud, cloud.instances.delete("sh1", force=True).id, 60)
        wait(cloud, cloud.volumes.delete(vol.id).id, 60)
        assert not cloud.snapshots.list(target=s2.target_id)
        path = Path(shown.path)
        cloud.pools.delete("sh")
        assert not path.exists() and list(source.iterdir()) == []
        assert not loop.mounts_under(source) and not loops_under(source)
        assert ceph_fuse_pids() == fuse_before
    finally:
        shutil.rmtree(source, ignore_errors=True)
