"""A clone's new identity: forget_identity on real overlay roots (read back through a real overlay
mount), then real clones of busybox and Debian containers booting with their own machine-id and
ssh host keys."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lxcloud.core.instance import Disk
from lxcloud.core.proc import run
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.compute.lxc import LxcDriver
from lxcloud.drivers.storage.dir import DirPool
from tests.integration.conftest import IDMAP, Box, BridgeNet, Launcher, debian_launcher, unique, wait_for

pytestmark = pytest.mark.root
UID, GID = IDMAP.host_uid, IDMAP.host_gid


def _file(path: Path, text: str = "", mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    os.chown(path, UID, GID)


@pytest.fixture
def layers(work_dir: Path) -> Iterator[tuple[Path, Path]]:
    """(lower, upper) of a root that has been running: the lower an image with an identity,
    the upper with what the instance made of its own."""
    lower, upper = work_dir / "lower", work_dir / "upper"
    _file(lower / "etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444)
    _file(lower / "etc/ssh/ssh_host_rsa_key", "private", 0o600)
    _file(lower / "etc/ssh/ssh_host_rsa_key.pub", "public")
    _file(lower / "etc/ssh/sshd_config", "# kept\n")
    (lower / "var/lib/dbus").mkdir(parents=True)
    (lower / "var/lib/dbus/machine-id").symlink_to("/etc/machine-id")
    for d in ("etc/ssh", "etc", "var/lib/dbus", "var/lib", "var"):
        os.chown(lower / d, UID, GID)
    (lower / "var/lib/dbus").chmod(0o750)
    upper.mkdir()
    os.chown(upper, UID, GID)
    _file(upper / "etc/ssh/ssh_host_ed25519_key", "its own", 0o600)
    yield lower, upper


def _merged(work_dir: Path, lower: Path, upper: Path) -> Path:
    """The root as the instance sees it: a read-only overlay of upper over lower."""
    mp = work_dir / "merged"
    mp.mkdir(exist_ok=True)
    run(["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={upper}:{lower}", str(mp)])
    return mp


@pytest.fixture
def merged(work_dir: Path) -> Iterator[list[Path]]:
    mounted: list[Path] = []
    yield mounted
    for mp in mounted:
        run(["umount", str(mp)], check=False)


def test_forget_identity_in_an_overlay_upper(work_dir: Path, layers: tuple[Path, Path],
                                             merged: list[Path], lxc_driver: LxcDriver) -> None:
    lower, upper = layers
    before = {p: p.read_bytes() for p in lower.rglob("*") if p.is_file() and not p.is_symlink()}
    lxc_driver.forget_identity(RootfsSpec("overlay", upper, lower))
    root = _merged(work_dir, lower, upper)
    merged.append(root)
    mid = root / "etc/machine-id"
    assert mid.read_text() == "" and stat.S_IMODE(mid.stat().st_mode) == 0o444
    assert mid.stat().st_uid == UID
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]
    assert not os.path.lexists(root / "var/lib/dbus/machine-id")
    # the lower's files are hidden by whiteouts in the upper, never touched
    assert {p: p.read_bytes() for p in before} == before
    wo = (upper / "etc/ssh/ssh_host_rsa_key").lstat()
    assert stat.S_ISCHR(wo.st_mode) and wo.st_rdev == 0
    # a directory made in the upper is its lower twin's
    st = (upper / "var/lib/dbus").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, UID, GID)
    lxc_driver.forget_identity(RootfsSpec("overlay", upper, lower))   # again: nothing changes
    assert (root / "etc/machine-id").read_text() == ""


def test_forget_identity_respects_opaque_dirs_and_never_follows_links(
        work_dir: Path, layers: tuple[Path, Path], merged: list[Path],
        lxc_driver: LxcDriver) -> None:
    lower, upper = layers
    # the instance replaced /etc/ssh (an opaque directory: the lower's keys are hidden already)...
    os.setxattr(upper / "etc/ssh", "trusted.overlay.opaque", b"y")
    # ...and planted a link where /var/lib/dbus was, to a host directory
    victim = work_dir / "victim"
    victim.mkdir()
    (victim / "machine-id").write_text("host's\n")
    (upper / "var/lib").mkdir(parents=True)
    (upper / "var/lib/dbus").symlink_to(victim)
    lxc_driver.forget_identity(RootfsSpec("overlay", upper, lower))
    assert sorted(os.listdir(upper / "etc/ssh")) == []          # no whiteout needed
    assert (victim / "machine-id").read_text() == "host's\n"    # not followed
    root = _merged(work_dir, lower, upper)
    merged.append(root)
    assert list((root / "etc/ssh").iterdir()) == []
    assert (root / "etc/machine-id").read_text() == ""


def test_forget_identity_in_a_dir_root(work_dir: Path, lxc_driver: LxcDriver) -> None:
    root = work_dir / "root"
    _file(root / "etc/machine-id", "0123\n", 0o444)
    _file(root / "etc/ssh/ssh_host_ecdsa_key", "k", 0o600)
    _file(root / "etc/ssh/ssh_config", "# kept\n")
    lxc_driver.forget_identity(RootfsSpec("dir", root))
    assert (root / "etc/machine-id").read_text() == ""
    assert stat.S_IMODE((root / "etc/machine-id").stat().st_mode) == 0o444
    assert sorted(os.listdir(root / "etc/ssh")) == ["ssh_config"]
    shutil.rmtree(root)
    root.mkdir()
    lxc_driver.forget_identity(RootfsSpec("dir", root))          # nothing there: nothing made
    assert os.listdir(root) == []


def _clone(launch: Launcher, src: Box) -> Box:
    """A copy of `src`'s root (frozen meanwhile, as the agent does) with its identity forgotten,
    defined and started with a new name, hostname and address."""
    d = src.driver
    new = unique("i-t")
    running = d.init_pid(src.name) is not None
    if running:
        d.freeze(src.name)
    try:
        root = launch.pool.clone_root(src.name, new, Disk(pool="test", source=launch.image_id),
                                      UID, GID)
    finally:
        if running:
            d.unfreeze(src.name)
    nics = tuple(replace(n, ipv4=launch.bridge.address().partition("/")[0],
                         mac="02:00:00:" + os.urandom(3).hex(":")) for n in src.spec.nics)
    spec = replace(src.spec, id=new, name=unique("clone-"), nics=nics)
    box = Box(spec, root, d)
    launch.boxes.append(box)        # removed with the launcher's own
    d.forget_identity(root)
    d.create(spec, root)
    d.start(new)
    return box


def _read(d: LxcDriver, name: str, script: str) -> str:
    r = d.exec(name, ["sh", "-c", script], timeout=60)
    return r.stdout.decode().strip() if r.exit_code == 0 else ""


def test_busybox_clone_makes_its_own_machine_id(launch: Launcher) -> None:
    src = launch(nic=False)
    d = src.driver
    mid = wait_for(lambda: _read(d, src.name, "cat /etc/machine-id"), 10, "the source's machine-id")
    assert len(mid) == 32 and int(mid, 16) >= 0
    clone = _clone(launch, src)
    new = wait_for(lambda: _read(d, clone.name, "cat /etc/machine-id"), 10, "the clone's machine-id")
    assert len(new) == 32 and new != mid
    assert _read(d, clone.name, "hostname") == clone.hostname != src.hostname
    assert _read(d, src.name, "cat /etc/machine-id") == mid    # the source kept its own


def _debian_tar() -> Path:
    """The Debian image of the current builder (built once and cached by images/builders/test_debian)."""
    from tests.integration.images.builders.test_debian import _build

    return _build("bookworm", "amd64", False).path


@pytest.mark.skipif(not shutil.which("debootstrap"), reason="debootstrap missing")
def test_debian_clone_has_a_new_machine_id_and_ssh_host_keys(
        lxc_driver: LxcDriver, dir_pool: DirPool, bridge: BridgeNet,
        request: pytest.FixtureRequest) -> None:
    deb = debian_launcher(lxc_driver, dir_pool, bridge, _debian_tar(), request)
    d = lxc_driver
    fingerprints = "for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $k; done"

    def identity(name: str) -> tuple[str, str] | None:
        # booted: systemd is up, the keys are made (the keygen unit runs before ssh.service)
        state = _read(d, name, "systemctl is-system-running --wait; systemctl is-active ssh")
        if state.splitlines()[-1:] != ["active"]:
            return None
        mid, keys = _read(d, name, "cat /etc/machine-id"), _read(d, name, fingerprints)
        return (mid, keys) if mid and keys else None

    src = deb(memory=256 << 20)
    mid, keys = wait_for(lambda: identity(src.name), 120, "the source to boot with its identity")
    assert len(mid) == 32 and keys.count("SHA256:") >= 2
    clone = _clone(deb, src)
    new_mid, new_keys = wait_for(lambda: identity(clone.name), 120,
                                 "the clone to boot with its identity")
    assert len(new_mid) == 32 and new_mid != mid
    old_prints = {line.split()[1] for line in keys.splitlines()}
    new_prints = {line.split()[1] for line in new_keys.splitlines()}
    assert len(new_prints) == len(old_prints) and not new_prints & old_prints
    assert identity(src.name) == (mid, keys)                    # the source kept its own
