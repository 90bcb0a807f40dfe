"""The dir pool: read-only bases made once, overlay roots, under real overlayfs and real containers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.core.errors import InvalidInput, NotFound, Unsupported
from lxcloud.core.host import HostState
from lxcloud.core.proc import run
from lxcloud.drivers.storage import loop
from lxcloud.drivers.storage.base import PoolSpec
from lxcloud.drivers.storage.dir import DirPool
from lxcloud.drivers.storage.registry import get_storage_driver
from lxcloud.images.builders.busybox import build_busybox_tree
from tests.contracts.storage import *  # noqa: F403
from tests.contracts.storage import root_disk
from tests.integration.conftest import IDMAP, Launcher, Template, make_dir_pool, populate_busybox

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
    out = run(["losetup", "-a"]).stdout.decode()
    return [line for line in out.splitlines() if str(d) in line]


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
