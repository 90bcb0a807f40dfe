"""Reusable fixtures for real-container integration tests (root; real LXC, bridges, overlayfs).

Session scope
  host_ready        -> dict      prepare_host(Settings(data_dir=a temp dir)): lxcfs mounted at
                                 /var/lib/lxcfs, /etc/subuid and /etc/subgid hold root:1000000:65536,
                                 ip_forward=1; returns host_facts()
  busybox_template  -> Template  the busybox image built once per session (tar + metadata)

Function scope (each test gets its own, removed afterwards even when the test fails)
  work_dir          -> Path      a fresh directory under /var/tmp, mode 0711 (unprivileged container
                                 roots must be able to traverse it: pytest's tmp_path is 0700)
  bridge            -> BridgeNet  a new Linux bridge (random name) on a random unused 10.250.x.0/24,
                                 gateway .1 on the bridge; .address() hands out the next free /24 address
  lxc_driver        -> LxcDriver  over work_dir/lxc; every container in it is destroyed at teardown
  dir_pool          -> DirPool   over work_dir/pool (plain; indirect param "loop"/"source" for
                                 a loop-backed XFS pool / one in an existing dir), torn down after
  busybox_image     -> str       the busybox image id, its base made in dir_pool (shifted to IDMAP)
  launch            -> Launcher  launch(**overrides) -> Box: root + create + start a busybox
                                 container on `bridge` (kwargs: memory, vcpus, pids, swap, hostname,
                                 nic=True, idmap, extra_files, nameservers, lxcfs, start=True,
                                 mounts: the volumes' Mounts in its definition);
                                 Box.name is the container's name, Box.spec what the driver got

Module-level helpers: IDMAP, wait_for(cond, timeout, what), free_subnet(), unique(prefix),
debian_launcher(lxc_driver, dir_pool, bridge, tar, request) -> Launcher of Debian containers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lxcloud.config import Settings
from lxcloud.core.instance import Disk, File, ImageRef, InstanceSpec, Kind, Nic
from lxcloud.core.instance_types import Limits, MiB
from lxcloud.core.proc import run
from lxcloud.drivers.compute.base import IdMap, Mount, RootfsSpec
from lxcloud.drivers.compute.lxc import LxcDriver
from lxcloud.drivers.storage.base import PoolSpec
from lxcloud.drivers.storage.dir import DirPool
from lxcloud.images.builders.busybox import build_busybox, build_busybox_tree
from tests.subnets import free_subnet as _free_subnet
from tests.waiting import wait_for as _wait_for

IDMAP = IdMap(host_uid=1_000_000, host_gid=1_000_000, count=65536)


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def wait_for(cond: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Wait on `cond` with a deadline (tests/waiting.py); kept here for the tests importing it."""
    return _wait_for(cond, timeout, what)


def free_subnet() -> ipaddress.IPv4Network:
    """A random 10.250.x.0/24 that no address or route on the host (nor another test) overlaps."""
    return ipaddress.IPv4Network(_free_subnet())


@dataclass
class Template:
    tar: Path
    metadata: dict[str, str]


@dataclass
class BridgeNet:
    name: str
    network: ipaddress.IPv4Network
    gateway: str
    _next: int = 10
    used: list[str] = field(default_factory=list)

    def address(self) -> str:
        """The next unused address with its prefix, e.g. "10.250.7.10/24"."""
        ip = str(self.network.network_address + self._next)
        self._next += 1
        self.used.append(ip)
        return f"{ip}/{self.network.prefixlen}"


@pytest.fixture(scope="session")
def host_ready() -> Iterator[dict[str, object]]:
    from lxcloud.node.host import prepare_host

    # a data dir of its own: prepare_host makes the data dir reachable for the containers
    data_dir = Path(tempfile.mkdtemp(prefix="lxcloud-host-", dir="/var/tmp"))
    try:
        yield prepare_host(Settings(data_dir=data_dir))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    d = tmp_path_factory.mktemp("busybox")
    out = d / "busybox.tar"
    meta = build_busybox(out)
    yield Template(out, meta)
    shutil.rmtree(d, ignore_errors=True)   # kept by no run, green or red


@pytest.fixture
def work_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lxcloud-test-", dir="/var/tmp"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def make_bridge() -> Iterator[BridgeNet]:
    """A new Linux bridge (random name) on a free 10.250.x.0/24, gateway .1; deleted after."""
    name = unique("lxtbr")
    net = free_subnet()
    gw = str(net.network_address + 1)
    run(["ip", "link", "add", name, "type", "bridge"])
    try:
        run(["ip", "addr", "add", f"{gw}/{net.prefixlen}", "dev", name])
        run(["ip", "link", "set", name, "up"])
        yield BridgeNet(name=name, network=net, gateway=gw)
    finally:
        run(["ip", "link", "del", name], check=False)


@pytest.fixture
def bridge() -> Iterator[BridgeNet]:
    with make_bridge() as b:
        yield b


@pytest.fixture
def lxc_driver(work_dir: Path, host_ready: dict[str, object]) -> Iterator[LxcDriver]:
    drv = LxcDriver(work_dir / "lxc", idmap=IDMAP, lxcfs_dir=Path(Settings().lxcfs_dir))
    yield drv
    for name in drv.list():
        try:
            drv.destroy(name)
        except Exception:   # teardown must reach the others; force-kill whatever is left
            run(["lxc-stop", "-P", str(drv.lxcpath), "-n", name, "-k"], check=False)


DIR_POOL_SIZE = 4 << 30      # a loop-backed dir pool's file (sparse: only what is written)


def make_dir_pool(work_dir: Path, kind: str = "plain") -> DirPool:
    """A dir pool under `work_dir`, ensured: "plain" (a directory, no quotas), "loop" (a
    loop-backed XFS file with per-disk ext4 images for limits) or "source" (an existing
    directory, images without reflinks where its filesystem has none)."""
    if kind == "loop":
        spec = PoolSpec("test", "dir", work_dir / "pool", size=DIR_POOL_SIZE)
    elif kind == "source":
        (work_dir / "src").mkdir()
        spec = PoolSpec("test", "dir", work_dir / "pool", source=str(work_dir / "src"))
    else:
        spec = PoolSpec("test", "dir", work_dir / "pool")
    pool = DirPool(spec)
    pool.ensure()
    return pool


@pytest.fixture
def dir_pool(work_dir: Path, request: pytest.FixtureRequest) -> Iterator[DirPool]:
    """A plain dir pool; `@pytest.mark.parametrize("dir_pool", ["loop"], indirect=True)` for
    another kind (make_dir_pool). Torn down afterwards: no mount or loop device is left."""
    pool = make_dir_pool(work_dir, getattr(request, "param", "plain"))
    yield pool
    pool.teardown()


def populate_busybox(template: Template, idmap: IdMap | None = IDMAP) -> Callable[[Path], None]:
    """A populate(dest) for DirPool.create_base: the template unpacked with ids shifted to `idmap`."""
    uid = idmap.host_uid if idmap else 0
    gid = idmap.host_gid if idmap else 0

    def populate(dest: Path) -> None:
        try:
            from lxcloud.images.unpack import safe_extract
        except ImportError:   # before the unpacker existed: build the tree and shift it by hand
            build_busybox_tree(dest)
            for root, dirs, files in os.walk(dest):
                os.lchown(root, uid, gid)
                for n in dirs + files:
                    os.lchown(os.path.join(root, n), uid, gid)
            return
        for child in dest.iterdir():   # safe_extract wants an empty target
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        safe_extract(template.tar, dest, uid_shift=uid, gid_shift=gid)

    return populate


@pytest.fixture
def busybox_image(dir_pool: DirPool, busybox_template: Template) -> str:
    image_id = "ami-busybox" + secrets.token_hex(3)
    dir_pool.create_base(image_id, populate_busybox(busybox_template))
    return image_id


@dataclass
class Box:
    """A container the Launcher made: its description, its root, the driver that defined it."""

    spec: InstanceSpec
    rootfs: RootfsSpec
    driver: LxcDriver

    @property
    def name(self) -> str:          # the container's name on the host
        return self.spec.id

    @property
    def hostname(self) -> str:
        return self.spec.name

    @property
    def nics(self) -> tuple[Nic, ...]:
        return self.spec.nics


def bridge_nic(bridge: BridgeNet, nameservers: tuple[str, ...] = ()) -> Nic:
    """A NIC on the test bridge with its next address and a random MAC."""
    ip, _, prefix = bridge.address().partition("/")
    return Nic(network="net-test", mac="02:00:" + secrets.token_bytes(4).hex(":"), ipv4=ip,
               prefix=int(prefix), gateway=bridge.gateway, link=bridge.name,
               nameservers=nameservers)


def busybox_spec(name: str, image_id: str, *, hostname: str, limits: Limits,
                 nics: tuple[Nic, ...] = (), halt_signal: str | None = "SIGUSR1",
                 first_boot: tuple[File, ...] = ()) -> InstanceSpec:
    return InstanceSpec(id=name, name=hostname, kind=Kind.CONTAINER,
                        image=ImageRef(id=image_id, template="", halt_signal=halt_signal),
                        limits=limits, nics=nics, disks=(Disk(pool="test", source=image_id),),
                        first_boot=first_boot)


class Launcher:
    """Creates (and by default starts) busybox containers; each call gets a unique name."""

    def __init__(self, driver: LxcDriver, pool: DirPool, image_id: str, bridge: BridgeNet,
                 metadata: dict[str, str]) -> None:
        self.driver, self.pool, self.image_id, self.bridge = driver, pool, image_id, bridge
        self.metadata = metadata
        self.boxes: list[Box] = []

    def driver_for(self, idmap: IdMap | None, lxcfs: bool) -> LxcDriver:
        """The launcher's driver, or one over the same lxcpath with another id map / no lxcfs."""
        if idmap == self.driver.idmap and lxcfs == (self.driver.lxcfs_dir is not None):
            return self.driver
        return LxcDriver(self.driver.lxcpath, idmap=idmap,
                         lxcfs_dir=Path(Settings().lxcfs_dir) if lxcfs else None)

    def __call__(self, *, memory: int = 128 * MiB, vcpus: float = 1, pids: int = 256, swap: int = 0,
                 hostname: str | None = None, nic: bool = True, idmap: IdMap | None = IDMAP,
                 extra_files: dict[str, bytes] | tuple[File, ...] | None = None,
                 nameservers: tuple[str, ...] = (), lxcfs: bool = True, start: bool = True,
                 mounts: Sequence[Mount] = ()) -> Box:
        name = unique("i-t")
        uid = idmap.host_uid if idmap else 0
        gid = idmap.host_gid if idmap else 0
        rootfs = self.pool.create_root(name, Disk(pool="test", source=self.image_id), uid, gid)
        files = tuple(File(p, c) for p, c in extra_files.items()) if isinstance(extra_files, dict) \
            else tuple(extra_files or ())
        spec = busybox_spec(name, self.image_id, hostname=hostname or unique("bb-"),
                            limits=Limits(vcpus=vcpus, memory=memory, swap=swap, pids=pids, disk=0),
                            nics=(bridge_nic(self.bridge, nameservers),) if nic else (),
                            halt_signal=self.metadata.get("halt_signal"), first_boot=files)
        if not nic and nameservers:
            raise AssertionError("nameservers come with a NIC")
        driver = self.driver_for(idmap, lxcfs)
        box = Box(spec, rootfs, driver)
        self.boxes.append(box)
        driver.create(spec, rootfs, mounts)
        if start:
            driver.start(name)
        return box


@pytest.fixture
def launch(lxc_driver: LxcDriver, dir_pool: DirPool, busybox_image: str, bridge: BridgeNet,
           busybox_template: Template) -> Iterator[Launcher]:
    launcher = Launcher(lxc_driver, dir_pool, busybox_image, bridge, busybox_template.metadata)
    yield launcher
    for box in launcher.boxes:   # containers first (they hold the overlay mounts), then roots
        lxc_driver.destroy(box.name)
        dir_pool.delete_root(box.name)


def debian_launcher(lxc_driver: LxcDriver, dir_pool: DirPool, bridge: BridgeNet, tar: Path,
                    request: pytest.FixtureRequest) -> Launcher:
    """A Launcher of containers from the Debian template `tar` (its base made in dir_pool); every
    container, root and the base removed when the test ends."""
    from lxcloud.images.unpack import safe_extract

    image_id = "ami-deb" + secrets.token_hex(3)

    def populate(dest: Path) -> None:
        safe_extract(tar, dest, uid_shift=IDMAP.host_uid, gid_shift=IDMAP.host_gid)

    dir_pool.create_base(image_id, populate)
    launcher = Launcher(lxc_driver, dir_pool, image_id, bridge, {"halt_signal": "SIGRTMIN+3"})

    def cleanup() -> None:
        for box in launcher.boxes:
            lxc_driver.destroy(box.name)
            dir_pool.delete_root(box.name)
        dir_pool.delete_base(image_id)
    request.addfinalizer(cleanup)
    return launcher
