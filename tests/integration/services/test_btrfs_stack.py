"""A btrfs pool through the whole stack in-process (services + the real local node): made
loop-backed by `pools.create`, a busybox instance on it with a 64 MiB disk enforced from inside,
resized while it runs, snapshotted running and restored to an older snapshot, a volume with its
own limit hot-attached; then everything removed and the pool deleted without a mount or loop
device left."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.core.errors import InvalidInput
from lxcloud.drivers.storage import loop
from lxcloud.drivers.storage.base import SnapshotOf
from lxcloud.services.cloud import Cloud
from lxcloud.services.instances import LaunchRequest
from tests.integration.services.stack import running_stack, sh, wait

pytestmark = pytest.mark.root
MiB = 1 << 20


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with running_stack("lxcloud-btrfs-") as st:
        yield st.cloud


def test_an_instance_on_a_btrfs_pool(cloud: Cloud) -> None:
    pool = cloud.pools.create("bt", "btrfs", size="2GiB")
    assert pool.quota and pool.caps["online_resize"] and not pool.caps["quota_visible"]
    assert "df" in pool.quota_note                       # `pool show` says df shows the pool
    image = cloud.images.list()[0].id
    [(inst, op)] = cloud.instances.launch(LaunchRequest(image=image, name="bt1", pool="bt",
                                                        disk="64MiB"))
    assert op is not None
    wait(cloud, op.id, 180)
    code, out = sh(cloud, "bt1", "dd if=/dev/zero of=/fill bs=1M count=200")
    assert code != 0 and ("Disk quota exceeded" in out or "No space left" in out), out
    sh(cloud, "bt1", "rm /fill")

    wait(cloud, cloud.instances.resize("bt1", "128MiB").id)      # while it runs
    assert sh(cloud, "bt1", "dd if=/dev/zero of=/data bs=1M count=80")[0] == 0
    done = cloud.ops.wait(cloud.instances.resize("bt1", "32MiB").id, 60)   # below its 80 MiB
    assert done.status == "failure" and "uses" in (done.error or ""), done
    assert done.error_code == InvalidInput.code

    snaps = []
    for n in (1, 2):
        assert sh(cloud, "bt1", f"echo v{n} > /etc/version")[0] == 0
        snap, op = cloud.snapshots.create(SnapshotOf.ROOT, "bt1", name=f"s{n}")   # running
        wait(cloud, op.id)
        snaps.append(snap)
    wait(cloud, cloud.instances.action("bt1", "stop", force=True).id)
    wait(cloud, cloud.snapshots.restore(snaps[0].id).id)                # the older one
    wait(cloud, cloud.instances.action("bt1", "start").id)
    assert sh(cloud, "bt1", "cat /etc/version")[1].strip() == "v1"

    vol, op = cloud.volumes.create("bv1", "16MiB", pool="bt")
    wait(cloud, op.id)
    wait(cloud, cloud.volumes.attach(vol.id, "bt1").id)
    code, out = sh(cloud, "bt1", f"dd if=/dev/zero of=/media/{vol.id}/f bs=1M count=64")
    assert code != 0 and ("Disk quota exceeded" in out or "No space left" in out), out

    wait(cloud, cloud.instances.delete("bt1", force=True).id, 60)
    wait(cloud, cloud.volumes.delete(vol.id).id, 60)
    path = Path(cloud.pools.get("bt", with_usage=False).path)
    cloud.pools.delete("bt")
    assert not loop.is_mounted(path) and not path.exists()
    assert not loop.image_of(path).exists()
