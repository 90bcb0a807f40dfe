"""Storage through the whole stack in-process (services + the real local node, real LXC): the
default pool's disk limits enforced and seen from inside, resize, volumes hot-plugged into a
running container (and the refusal while a process holds one), snapshots of a running instance
and the restore of an older one, clones with their own identity, an export/import round trip,
attachments across restarts of the instance and of the controller, and failures that leave
nothing behind."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lxcloud.core.errors import InUse, InvalidInput, LxcloudError
from lxcloud.core.instance_types import MiB
from lxcloud.drivers.storage.base import SnapshotOf
from lxcloud.services.cloud import Cloud
from lxcloud.services.instances import LaunchRequest
from tests.integration.services.stack import (
    Stack,
    df_kib,
    failed,
    ok,
    running_stack,
    sh,
    wait,
)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("lxcloud-storage-", default_pool_size="4GiB") as st:
        yield st


@pytest.fixture
def cloud(stack: Stack) -> Cloud:
    return stack.cloud


def launch(cloud: Cloud, name: str, **kw: object) -> str:
    [(inst, op)] = cloud.instances.launch(LaunchRequest(image="busybox", name=name,
                                                        memory="64MiB", **kw))  # type: ignore[arg-type]
    assert op is not None
    wait(cloud, op.id)
    assert cloud.instances.get(name).state == "running"
    return inst.id


def refused(cloud: Cloud, start: Callable[[], str]) -> str:
    """The message of a request refused at once (InvalidInput) or by its operation."""
    try:
        op_id = start()
    except InvalidInput as e:
        return str(e)
    return failed(cloud, op_id)


def remove(cloud: Cloud, name: str) -> None:
    wait(cloud, cloud.instances.delete(name, force=True).id)


def test_the_default_pool_enforces_disk_limits(cloud: Cloud) -> None:
    pool = cloud.pools.get("default")
    assert pool.quota, pool.quota_note
    assert pool.capacity and pool.free and pool.capacity >= pool.free
    launch(cloud, "st-quota", disk="64MiB")
    try:
        # df inside shows the limit, not the pool's or the host's disk
        assert 50 * 1024 <= df_kib(cloud, "st-quota") <= 64 * 1024
        host_free = shutil.disk_usage("/").free
        code, out = sh(cloud, "st-quota", "dd if=/dev/zero of=/big bs=1M count=100 2>&1")
        assert code != 0 and ("No space left" in out or "quota" in out), out
        # the host lost nothing like 100 MiB, and a second instance still writes
        assert shutil.disk_usage("/").free > host_free - 80 * MiB
        used = cloud.instances.get("st-quota").disks[0]
        assert used.size == 64 * MiB
        ok(cloud, "st-quota", "rm /big; echo kept > /kept; dd if=/dev/zero of=/k40 bs=1M count=40")
        # resize: stopped (the dir pool grows a limit offline), never below what is used
        wait(cloud, cloud.instances.action("st-quota", "stop", force=True).id)
        assert "cannot be limited" in refused(cloud, lambda: cloud.instances.resize("st-quota", "32MiB").id)
        wait(cloud, cloud.instances.resize("st-quota", "128MiB").id)
        wait(cloud, cloud.instances.action("st-quota", "start").id)
        assert 110 * 1024 <= df_kib(cloud, "st-quota") <= 128 * 1024
        assert ok(cloud, "st-quota", "cat /kept").strip() == "kept"
        assert cloud.instances.get("st-quota").disks[0].size == 128 * MiB
    finally:
        remove(cloud, "st-quota")


def test_a_volume_hot_plugs_into_a_running_instance(stack: Stack) -> None:
    cloud = stack.cloud
    iid = launch(cloud, "st-vol")
    vol, op = cloud.volumes.create("st-data", "32MiB")
    wait(cloud, op.id)
    try:
        wait(cloud, cloud.volumes.attach(vol.id, "st-vol").id)
        media = f"/media/{vol.id}"
        assert cloud.volumes.get(vol.id).state == "in-use"
        # writable by the unprivileged container's root, limited to the volume's own size
        ok(cloud, "st-vol", f"echo hello > {media}/f; touch {media}/g")
        assert 25 * 1024 <= df_kib(cloud, "st-vol", media) <= 32 * 1024
        code, out = sh(cloud, "st-vol", f"dd if=/dev/zero of={media}/big bs=1M count=64 2>&1")
        assert code != 0 and ("No space left" in out or "quota" in out), out
        ok(cloud, "st-vol", f"rm {media}/big")
        # one instance at a time: a second cannot take it
        launch(cloud, "st-vol2")
        with pytest.raises(InUse):
            cloud.volumes.attach(vol.id, "st-vol2")
        # a process inside holding it: detach refused, naming the process
        ok(cloud, "st-vol", f"cd {media} && (setsid sleep 600 </dev/null >/dev/null 2>&1 &)")
        err = failed(cloud, cloud.volumes.detach(vol.id).id)
        assert "sleep" in err, err
        assert cloud.volumes.get(vol.id).attachments
        assert ok(cloud, "st-vol", f"cat {media}/f").strip() == "hello"
        # the attachment survives a restart of the instance and of the controller
        wait(cloud, cloud.instances.action("st-vol", "stop", force=True).id)
        wait(cloud, cloud.instances.action("st-vol", "start").id)
        assert ok(cloud, "st-vol", f"cat {media}/f").strip() == "hello"
        cloud = stack.restart_controller()
        [att] = cloud.volumes.get(vol.id).attachments
        assert att.instance_id == iid
        assert ok(cloud, "st-vol", f"cat {media}/f").strip() == "hello"
        ok(cloud, "st-vol", f"cd {media} && (setsid sleep 600 </dev/null >/dev/null 2>&1 &)")
        # forced: detached even so; gone from inside, data kept in the volume
        wait(cloud, cloud.volumes.detach(vol.id, force=True).id)
        assert not cloud.volumes.get(vol.id).attachments
        assert cloud.volumes.get(vol.id).state == "available"
        code, out = sh(cloud, "st-vol", f"cat {media}/f")
        assert code != 0, out
        # and it moves to the other instance, at a path of the user's choosing
        wait(cloud, cloud.volumes.attach(vol.id, "st-vol2", path="/srv/data").id)
        assert ok(cloud, "st-vol2", "cat /srv/data/f").strip() == "hello"
        with pytest.raises(InUse):
            cloud.volumes.delete(vol.id)
        wait(cloud, cloud.volumes.detach(vol.id).id)
    finally:
        remove(cloud, "st-vol")
        remove(cloud, "st-vol2")
        wait(cloud, cloud.volumes.delete(vol.id).id)


def test_volume_snapshots_make_new_volumes(cloud: Cloud) -> None:
    vol, op = cloud.volumes.create("st-snapvol", "32MiB")
    wait(cloud, op.id)
    launch(cloud, "st-vs")
    try:
        wait(cloud, cloud.volumes.attach(vol.id, "st-vs").id)
        ok(cloud, "st-vs", f"echo one > /media/{vol.id}/f")
        snap, op = cloud.snapshots.create(SnapshotOf.VOLUME, vol.id, name="first")
        wait(cloud, op.id)
        ok(cloud, "st-vs", f"echo two > /media/{vol.id}/f")
        new, op = cloud.volumes.create("st-fromsnap", None, snapshot_id=snap.id)
        wait(cloud, op.id)
        assert new.size == vol.size
        wait(cloud, cloud.volumes.attach(new.id, "st-vs").id)
        assert ok(cloud, "st-vs", f"cat /media/{new.id}/f").strip() == "one"
        assert ok(cloud, "st-vs", f"cat /media/{vol.id}/f").strip() == "two"
    finally:
        remove(cloud, "st-vs")
        for v in cloud.volumes.list():
            if v.name in ("st-snapvol", "st-fromsnap"):
                wait(cloud, cloud.volumes.delete(v.id).id)


def test_snapshots_of_a_running_instance_and_restore_of_an_older_one(cloud: Cloud) -> None:
    iid = launch(cloud, "st-snap")
    try:
        ok(cloud, "st-snap", "echo 1 > /state")
        s1, op = cloud.snapshots.create(SnapshotOf.ROOT, "st-snap", name="one")
        wait(cloud, op.id)
        assert cloud.instances.get("st-snap").state == "running"     # thawed afterwards
        ok(cloud, "st-snap", "echo 2 > /state; echo later > /later")
        s2, op = cloud.snapshots.create(SnapshotOf.ROOT, "st-snap", name="two")
        wait(cloud, op.id)
        ok(cloud, "st-snap", "echo 3 > /state")
        assert [s.name for s in cloud.snapshots.of_instance("st-snap")] == ["one", "two"]
        # the older one, not only the latest; the later snapshot is kept
        wait(cloud, cloud.snapshots.restore("one", target=iid).id)
        assert cloud.instances.get("st-snap").state == "running"
        assert ok(cloud, "st-snap", "cat /state").strip() == "1"
        assert sh(cloud, "st-snap", "test -e /later")[0] != 0
        wait(cloud, cloud.snapshots.restore(s2.id).id)
        assert ok(cloud, "st-snap", "cat /state; cat /later").split() == ["2", "later"]
        wait(cloud, cloud.snapshots.delete(s1.id).id)
        assert [s.name for s in cloud.snapshots.of_instance("st-snap")] == ["two"]
    finally:
        remove(cloud, "st-snap")
    assert not cloud.snapshots.list(target=s2.target_id)


def test_a_copy_has_its_own_identity_and_an_image_from_it_launches(cloud: Cloud) -> None:
    launch(cloud, "st-src")
    try:
        ok(cloud, "st-src", "echo mine > /data")
        inst, op = cloud.copies.copy("st-src", "st-clone", start=True)
        wait(cloud, op.id)
        a, b = cloud.instances.get("st-src"), cloud.instances.get("st-clone")
        assert b.state == "running" and a.id != b.id
        assert a.ipv4 != b.ipv4 and a.mac != b.mac
        assert ok(cloud, "st-clone", "cat /data").strip() == "mine"
        assert ok(cloud, "st-clone", "hostname").strip() == "st-clone"
        ids = [ok(cloud, n, "cat /etc/machine-id").strip() for n in ("st-src", "st-clone")]
        assert ids[0] and ids[1] and ids[0] != ids[1]
        # an image from the (stopped) instance launches like any other
        wait(cloud, cloud.instances.action("st-src", "stop", force=True).id)
        wait(cloud, cloud.copies.image_from("st-src", "st-img").id)
        launch_from = cloud.instances.launch(LaunchRequest(image="st-img", name="st-fromimg",
                                                           memory="64MiB"))
        wait(cloud, launch_from[0][1].id)  # type: ignore[union-attr]
        assert ok(cloud, "st-fromimg", "cat /data").strip() == "mine"
    finally:
        for n in ("st-src", "st-clone", "st-fromimg"):
            try:
                remove(cloud, n)
            except LxcloudError:
                pass
        try:
            cloud.images.delete("st-img")
        except LxcloudError:
            pass


def test_export_and_import_round_trip(cloud: Cloud, tmp_path: Path) -> None:
    launch(cloud, "st-exp")
    imp = ""
    try:
        ok(cloud, "st-exp", "echo before > /data")
        wait(cloud, cloud.snapshots.create(SnapshotOf.ROOT, "st-exp", name="s1")[1].id)
        ok(cloud, "st-exp", "echo after > /data")
        wait(cloud, cloud.instances.action("st-exp", "stop", force=True).id)
        res = wait(cloud, cloud.copies.export("st-exp").id)
        exp = cloud.copies.export_file(str(res["export_id"]))
        archive = tmp_path / "st-exp.tar"
        shutil.copyfile(exp.path, archive)
        inst, op = cloud.copies.import_(archive, name="st-imp")
        imp = inst.id
        wait(cloud, op.id)
        assert cloud.instances.get("st-imp").state == "stopped"
        assert [s.name for s in cloud.snapshots.of_instance("st-imp")] == ["s1"]
        wait(cloud, cloud.instances.action("st-imp", "start").id)
        assert ok(cloud, "st-imp", "cat /data").strip() == "after"
        wait(cloud, cloud.snapshots.restore("s1", target=imp).id)
        assert ok(cloud, "st-imp", "cat /data").strip() == "before"
    finally:
        for n in ("st-exp", "st-imp"):
            try:
                remove(cloud, n)
            except LxcloudError:
                pass


def pool_leftovers(stack: Stack) -> set[str]:
    """What the default pool holds for instances and volumes, and the mounts under the data dir."""
    pool = Path(stack.cloud.pools.get("default", with_usage=False).path)
    held = {p.name for sub in ("instances", "volumes") if (pool / sub).is_dir()
            for p in (pool / sub).iterdir()}
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True,
                            text=True).stdout.split()
    return held | {m for m in mounts if m.startswith(str(stack.base)) and "/pools/default" not in
                   m.removesuffix("/pools/default")}


def test_failures_leave_nothing_behind(stack: Stack, tmp_path: Path) -> None:
    cloud = stack.cloud
    before = pool_leftovers(stack)
    rows = len(cloud.instances.list()), len(cloud.volumes.list())
    # a hostile archive: refused before anything is made
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        data = b'{"format": "lxcloud-export"}'
        ti = tarfile.TarInfo("../../escape")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    with pytest.raises(InvalidInput):
        cloud.copies.import_(evil, name="st-evil")
    # a hot attach the container refuses midway (its mount point is a file there): the
    # operation fails, the volume is free again, nothing is mounted inside or on the host
    launch(cloud, "st-fail")
    vol, op = cloud.volumes.create("st-failvol", "32MiB")
    wait(cloud, op.id)
    try:
        ok(cloud, "st-fail", "mkdir -p /srv && echo file > /srv/file")
        err = failed(cloud, cloud.volumes.attach(vol.id, "st-fail", path="/srv/file").id)
        assert err
        v = cloud.volumes.get(vol.id)
        assert v.state == "available" and not v.attachments, v
        assert not [d for d in cloud.instances.get("st-fail").disks if d.name == vol.id]
        assert ok(cloud, "st-fail", "cat /srv/file").strip() == "file"
        assert vol.id not in ok(cloud, "st-fail", "cat /proc/mounts")
        # and the volume still attaches properly afterwards
        wait(cloud, cloud.volumes.attach(vol.id, "st-fail").id)
        wait(cloud, cloud.volumes.detach(vol.id).id)
    finally:
        remove(cloud, "st-fail")
        wait(cloud, cloud.volumes.delete(vol.id).id)
    assert pool_leftovers(stack) == before
    assert (len(cloud.instances.list()), len(cloud.volumes.list())) == rows
    assert "st-fail" not in stack.node.list_instances()
