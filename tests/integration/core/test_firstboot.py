"""First boot inside a real busybox container: user data runs once (console log), keys land in root's
authorized_keys with sshd's modes. Unprivileged (IDMAP), no network needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lxcloud.core.firstboot import AUTHORIZED_KEYS, USER_DATA, USER_DATA_DONE, firstboot_files
from lxcloud.drivers.compute.lxc import LxcDriver
from lxcloud.drivers.storage.dir import DirPool
from tests.integration.conftest import IDMAP, Launcher, Template, wait_for

pytestmark = pytest.mark.root

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq8sB0Dx3Y5oVZc0mXl2y0vGk0m6rH7R3gkZr5m0ZQm "
       "alice@example")
SCRIPT = b"#!/bin/sh\necho hello-$((6*7))\necho ran >> /var/lib/lxcloud/runs\n"


@pytest.fixture
def boot(lxc_driver: LxcDriver, dir_pool: DirPool, busybox_image: str,
         busybox_template: Template) -> Iterator[Launcher]:
    """The conftest Launcher without a bridge (these tests only use nic=False)."""
    launcher = Launcher(lxc_driver, dir_pool, busybox_image, None, busybox_template.metadata)  # type: ignore[arg-type]
    yield launcher
    for box in launcher.boxes:
        lxc_driver.destroy(box.name)
        dir_pool.delete_root(box.name)


def sh(d: LxcDriver, name: str, script: str) -> str:
    r = d.exec(name, ["sh", "-c", script], timeout=10)
    return (r.stdout + r.stderr).decode()


def sysinit_done(d: LxcDriver, name: str) -> bool:
    """busybox init starts its respawn shell only once rcS (sysinit) has exited."""
    ps = sh(d, name, "ps -o pid,ppid,args")
    rows = [line.split(None, 2) for line in ps.splitlines()[1:]]
    return (not any("rcS" in r[2] for r in rows if len(r) == 3)
            and any(r[1] == "1" and r[2].strip() == "-/bin/sh" for r in rows if len(r) == 3))


def test_firstboot_files_shape() -> None:
    files = {f.path: (f.content, f.mode) for f in firstboot_files(SCRIPT, [KEY, "  ", f"{KEY}2\n"])}
    assert files[AUTHORIZED_KEYS] == (f"{KEY}\n{KEY}2\n".encode(), 0o600)
    assert files[USER_DATA] == (SCRIPT, 0o600)
    assert firstboot_files(None, []) == ()
    assert firstboot_files(b"", []) == ()
    from lxcloud.core.errors import InvalidInput
    with pytest.raises(InvalidInput):
        firstboot_files(None, [f"{KEY}\ncommand=\"evil\" {KEY}"])


def test_user_data_runs_once_with_output_in_console_log(boot: Launcher) -> None:
    d = boot.driver
    spec = boot(nic=False, extra_files=firstboot_files(SCRIPT, [KEY]))
    wait_for(lambda: b"hello-42" in d.console_log(spec.name), 20, "user data output in the console log")
    wait_for(lambda: sh(d, spec.name, "cat /var/lib/lxcloud/runs 2>/dev/null") == "ran\n", 10, "run marker")
    assert sh(d, spec.name, f"test -e {USER_DATA_DONE} && echo done").strip() == "done"

    # keys: 0600 file in a 0700 /root/.ssh, both owned by root inside (the mapped root outside)
    assert sh(d, spec.name, f"cat {AUTHORIZED_KEYS}") == KEY + "\n"
    assert sh(d, spec.name, f"stat -c '%a %u %g' {AUTHORIZED_KEYS} /root/.ssh /root").split("\n")[:3] == [
        "600 0 0", "700 0 0", "700 0 0"]
    host_file = spec.rootfs.path / AUTHORIZED_KEYS.lstrip("/")
    assert host_file.stat().st_uid == IDMAP.host_uid

    # second boot: the marker stops a second run
    d.stop(spec.name, timeout=20)
    d.start(spec.name)
    wait_for(lambda: sysinit_done(d, spec.name), 20, "second boot's sysinit to finish")
    # rcS has exited, so a background run would already exist as a process or in the runs file
    assert "user-data" not in sh(d, spec.name, "ps -o args | grep -v grep")
    assert sh(d, spec.name, "cat /var/lib/lxcloud/runs") == "ran\n"
    log = d.console_log(spec.name)   # liblxc appends across boots: both boots are in it
    assert log.count(b"lxcloud-busybox: booted") == 2 and log.count(b"hello-42") == 1, log


def test_non_script_user_data_is_left_alone(boot: Launcher) -> None:
    d = boot.driver
    spec = boot(nic=False, extra_files=firstboot_files(b"#cloud-config\nruncmd: [touch /x]\n", []))
    wait_for(lambda: sysinit_done(d, spec.name), 20, "sysinit to finish")
    assert sh(d, spec.name, f"test -e {USER_DATA_DONE} || echo absent").strip() == "absent"
    assert sh(d, spec.name, f"head -c 13 {USER_DATA}") == "#cloud-config"
    assert sh(d, spec.name, "test -e /root/.ssh || echo none").strip() == "none"
