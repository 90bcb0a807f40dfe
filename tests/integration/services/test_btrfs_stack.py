"""A btrfs pool through the whole stack in-process (services + the real local node): made
loop-backed by `pools.create`, a busybox instance on it with a 64 MiB disk enforced from inside,
resized while it runs, snapshotted running and restored to an older snapshot, a volume with its
own limit hot-attached; then everything removed and the pool deleted without a mount or loop
device left."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.config import Settings
from lxcloud.core.errors import InvalidInput
from lxcloud.drivers.storage import loop
from lxcloud.drivers.storage.base import SnapshotOf
from lxcloud.node.agent import NodeAgent
from lxcloud.services.cloud import Cloud
from lxcloud.services.images import BuildRequest
from lxcloud.services.instances import LaunchRequest
from tests.subnets import free_subnet

pytestmark = pytest.mark.root
MiB = 1 << 20


def wait(cloud: Cloud, op_id: str, timeout: float = 120) -> None:
    op = cloud.ops.wait(op_id, timeout)
    assert op.status == "success", (op.status, op.error)


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    base = Path(tempfile.mkdtemp(prefix="lxcloud-btrfs-", dir="/tmp"))
    base.chmod(0o755)
    settings = Settings.load(base / "data", default_network_cidr=free_subnet(),
                             reconcile_interval=0)
    node = NodeAgent.local(settings)
    c = Cloud(settings, node)
    try:
        c.startup(reconcile_loop=False)
        wait(c, c.images.build(BuildRequest(builder="busybox")).id)
        yield c
    finally:
        for inst in c.instances.list():
            try:
                c.ops.wait(c.instances.delete(inst.id, force=True).id, 60)
            except Exception:
                pass
        for p in c.pools.list(with_usage=False):
            if p.driver == "btrfs":
                try:
                    c.pools.delete(p.name)
                except Exception:
                    pass
        net = c.networks.get()
        c.close()
        node.teardown_network(c.networks.spec(net))
        for name in node.list_instances():
            node.destroy(name)
        for p in loop.mounts_under(base):
            loop.umount(p, lazy=True)
        shutil.rmtree(base, ignore_errors=True)


def sh(cloud: Cloud, name: str, script: str, timeout: float = 30) -> tuple[int, str]:
    r = cloud.instances.exec(name, ["sh", "-c", script], timeout=timeout)
    return r.exit_code, r.stdout.decode() + r.stderr.decode()


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
