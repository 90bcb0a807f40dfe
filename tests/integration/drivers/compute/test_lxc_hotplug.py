"""Volumes in real LXC containers: in the definition (mounted at every start) and hot-plugged into
a running one (attach; detach refused while a process inside holds it, unless forced)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lxcloud.core.errors import InUse, InvalidInput
from lxcloud.core.host import HostState
from lxcloud.drivers.compute.base import Mount
from lxcloud.drivers.compute.lxc import LxcDriver
from lxcloud.drivers.storage.dir import DirPool
from tests.integration.conftest import IDMAP, Launcher, unique, wait_for

pytestmark = pytest.mark.root


@pytest.fixture
def volume(dir_pool: DirPool, launch: Launcher) -> Iterator[Path]:
    """A new volume on the test pool (made as the agent makes them, for the cloud's id map);
    removed at the end, after the containers that mount it."""
    vid = unique("vol-")
    path = dir_pool.create_volume(vid, 0, IDMAP.host_uid, IDMAP.host_gid)
    yield path
    for box in launch.boxes:
        box.driver.destroy(box.name)
    dir_pool.delete_volume(vid)


def sh(d: LxcDriver, name: str, script: str) -> tuple[int, str]:
    r = d.exec(name, ["sh", "-c", script], timeout=30)
    return r.exit_code, (r.stdout + r.stderr).decode(errors="replace")


def mounted_at(d: LxcDriver, name: str, target: str) -> int:
    """How many mounts the container has at `target` (its own view: /proc/self/mountinfo)."""
    out = d.exec(name, ["cat", "/proc/self/mountinfo"]).stdout.decode()
    return sum(1 for line in out.splitlines() if line.split(" ")[4] == target)


def test_new_volume_is_owned_by_the_containers_root(volume: Path) -> None:
    st = volume.stat()
    assert (st.st_uid, st.st_gid) == (IDMAP.host_uid, IDMAP.host_gid)


def test_volume_in_the_definition_is_there_after_start_and_restart(launch: Launcher,
                                                                     volume: Path) -> None:
    target = f"/media/{volume.name}"
    box = launch(nic=False, mounts=[Mount(volume, target)])
    d = box.driver
    assert mounted_at(d, box.name, target) == 1
    assert sh(d, box.name, f"echo hi > {target}/f && stat -c '%u %g' {target} {target}/f") == (
        0, "0 0\n0 0\n")
    st = (volume / "f").stat()
    assert (volume / "f").read_text() == "hi\n"
    assert (st.st_uid, st.st_gid) == (IDMAP.host_uid, IDMAP.host_gid)
    # liblxc made the missing /media inside as the container's root
    assert (box.rootfs.path / "media").stat().st_uid == IDMAP.host_uid
    d.stop(box.name, force=True)
    d.start(box.name)
    assert mounted_at(d, box.name, target) == 1
    assert sh(d, box.name, f"cat {target}/f") == (0, "hi\n")


def test_readonly_volume_in_the_definition(launch: Launcher, volume: Path) -> None:
    box = launch(nic=False, mounts=[Mount(volume, "/data", readonly=True)])
    code, out = sh(box.driver, box.name, "touch /data/x")
    assert code != 0 and "Read-only" in out
    assert not (volume / "x").exists()


def test_hot_attach_into_a_running_container(launch: Launcher, volume: Path) -> None:
    box = launch(nic=False)
    d = box.driver
    target = "/srv/deep/data"
    assert mounted_at(d, box.name, target) == 0
    pid = d.init_pid(box.name)
    d.attach_mount(box.name, Mount(volume, target))
    assert d.init_pid(box.name) == pid                  # no restart
    assert mounted_at(d, box.name, target) == 1
    assert sh(d, box.name, f"echo data > {target}/x && cat {target}/x") == (0, "data\n")
    st = (volume / "x").stat()
    assert (st.st_uid, st.st_gid) == (IDMAP.host_uid, IDMAP.host_gid)
    # the directories made on the way belong to the container's root
    assert sh(d, box.name, "stat -c '%u %g' /srv /srv/deep") == (0, "0 0\n0 0\n")
    assert (box.rootfs.path / "srv/deep").stat().st_uid == IDMAP.host_uid
    d.attach_mount(box.name, Mount(volume, target))    # already there: no-op
    assert mounted_at(d, box.name, target) == 1


def test_hot_attach_readonly(launch: Launcher, volume: Path) -> None:
    box = launch(nic=False)
    d = box.driver
    d.attach_mount(box.name, Mount(volume, "/ro", readonly=True))
    assert mounted_at(d, box.name, "/ro") == 1
    code, out = sh(d, box.name, "touch /ro/x")
    assert code != 0 and "Read-only" in out


def test_detach_refused_while_held_then_forced(launch: Launcher, volume: Path) -> None:
    box = launch(nic=False)
    d = box.driver
    target = f"/media/{volume.name}"
    d.attach_mount(box.name, Mount(volume, target))
    (volume / "log").write_text("line\n")
    assert sh(d, box.name, f"tail -f {target}/log >/dev/null 2>&1 </dev/null &")[0] == 0
    wait_for(lambda: b"tail -f" in d.exec(box.name, ["ps"]).stdout, 10, "tail to run")
    inner = sh(d, box.name, "pidof tail")[1].split()
    with pytest.raises(InUse) as e:
        d.detach_mount(box.name, target)
    assert f"tail (pid {inner[0]})" in str(e.value)
    assert mounted_at(d, box.name, target) == 1       # nothing changed
    # a shell sitting in it holds it too (its working directory)
    d.exec(box.name, ["sh", "-c", "pkill tail; true"])
    wait_for(lambda: b"tail -f" not in d.exec(box.name, ["ps"]).stdout, 10, "tail to end")
    assert sh(d, box.name, f"cd {target} && exec sleep 1000 >/dev/null 2>&1 </dev/null &")[0] == 0
    wait_for(lambda: b"sleep 1000" in d.exec(box.name, ["ps"]).stdout, 10, "sleep to run")
    with pytest.raises(InUse, match=r"sleep \(pid \d+\)"):
        d.detach_mount(box.name, target)
    assert mounted_at(d, box.name, target) == 1
    d.detach_mount(box.name, target, force=True)
    assert mounted_at(d, box.name, target) == 0
    # the holder was left alone; the volume's files are untouched
    assert b"sleep 1000" in d.exec(box.name, ["ps"]).stdout
    assert (volume / "log").read_text() == "line\n"


def test_detach_unheld_and_not_mounted(launch: Launcher, volume: Path) -> None:
    box = launch(nic=False)
    d = box.driver
    d.attach_mount(box.name, Mount(volume, "/media/v"))
    assert sh(d, box.name, "echo kept > /media/v/f")[0] == 0
    d.detach_mount(box.name, "/media/v")
    assert mounted_at(d, box.name, "/media/v") == 0
    assert sh(d, box.name, "ls -A /media/v") == (0, "")   # the empty mount point stays
    assert (volume / "f").read_text() == "kept\n"
    d.detach_mount(box.name, "/media/v")                   # not mounted: no-op
    d.detach_mount(box.name, "/media/never")               # never was there: no-op
    d.attach_mount(box.name, Mount(volume, "/media/v"))   # and back again
    assert sh(d, box.name, "cat /media/v/f") == (0, "kept\n")
    d.stop(box.name, force=True)
    d.detach_mount(box.name, "/media/v")                   # stopped: nothing mounted, no-op
    assert d.state(box.name) is HostState.STOPPED


BAD_TARGETS = ("relative/path", "/a/../b", "/a\nb", "/", "//")


def test_bad_targets_are_refused(launch: Launcher, volume: Path, lxc_driver: LxcDriver) -> None:
    box = launch(nic=False)
    fresh = launch(nic=False, start=False)
    config = fresh.driver.lxcpath / fresh.name / "config"
    before = config.read_text()
    ghost = replace(fresh.spec, id=unique("i-t"))
    for target in BAD_TARGETS:
        with pytest.raises(InvalidInput):
            box.driver.attach_mount(box.name, Mount(volume, target))
        with pytest.raises(InvalidInput):
            box.driver.detach_mount(box.name, target)
        # in a definition: refused before anything is written
        with pytest.raises(InvalidInput):
            fresh.driver.create(fresh.spec, fresh.rootfs, [Mount(volume, target)])
        assert config.read_text() == before
        with pytest.raises(InvalidInput):
            lxc_driver.create(ghost, fresh.rootfs, [Mount(volume, target)])
        assert not (lxc_driver.lxcpath / ghost.id).exists()
    with pytest.raises(InvalidInput, match="two volumes"):
        fresh.driver.create(fresh.spec, fresh.rootfs, [Mount(volume, "/v"), Mount(volume, "/v/")])
    assert config.read_text() == before


def test_a_symlink_inside_does_not_redirect_the_mount(launch: Launcher, volume: Path,
                                                      work_dir: Path) -> None:
    box = launch(nic=False)
    d = box.driver
    assert sh(d, box.name, "mkdir -p /media && ln -s /etc /media/link")[0] == 0
    with pytest.raises(InvalidInput, match="symlink"):
        d.attach_mount(box.name, Mount(volume, "/media/link/x"))
    assert sh(d, box.name, "test -e /etc/x")[0] != 0     # nothing made through the link
    assert mounted_at(d, box.name, "/media/link/x") == 0
    assert mounted_at(d, box.name, "/etc/x") == 0
