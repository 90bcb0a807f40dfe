"""The LXC compute driver with real busybox containers, and the compute contract suite on it."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lxcloud.core.errors import DriverError, Unsupported
from lxcloud.core.host import HostState
from lxcloud.core.instance import Nic
from lxcloud.core.instance_types import MiB
from lxcloud.core.proc import run
from lxcloud.drivers.compute.fake import FakeDriver
from lxcloud.drivers.compute.lxc import host_cpus, pick_cpus, render_config
from lxcloud.drivers.compute.registry import get_compute_driver
from tests.contracts.compute import *  # noqa: F403
from tests.contracts.compute import ComputeEnv
from tests.integration.conftest import IDMAP, BridgeNet, Launcher, wait_for

pytestmark = pytest.mark.root


# ---------------------------------------------------------------- the contract suite
@pytest.fixture
def compute(launch: Launcher) -> ComputeEnv:
    """The compute contract's driver (tests/contracts/compute.py; the fake runs it in unit)."""
    return ComputeEnv(launch.driver, lambda: launch(start=False, nic=False).name)


def test_registry() -> None:
    assert isinstance(get_compute_driver("fake"), FakeDriver)
    with pytest.raises(Unsupported):
        get_compute_driver("nope")


# ---------------------------------------------------------------- the real thing
def test_start_hostname_address_ping(launch: Launcher, bridge: BridgeNet) -> None:
    spec = launch(hostname="web-1", nameservers=("10.250.0.53",))
    d = launch.driver
    assert d.state(spec.name) is HostState.RUNNING
    assert d.exec(spec.name, ["hostname"]).stdout.strip() == b"web-1"
    assert d.exec(spec.name, ["cat", "/etc/hostname"]).stdout == b"web-1\n"
    assert b"nameserver 10.250.0.53" in d.exec(spec.name, ["cat", "/etc/resolv.conf"]).stdout
    out = d.exec(spec.name, ["ip", "-4", "addr", "show", "eth0"]).stdout.decode()
    assert f"inet {spec.nics[0].interface} " in out
    assert f"brd {bridge.network.broadcast_address}" in out
    route = d.exec(spec.name, ["ip", "route"]).stdout.decode()
    assert f"default via {bridge.gateway}" in route
    ip = spec.nics[0].ipv4
    # The address is set by LXC (no DHCP): it must still be there after boot settles, and answer.
    run(["busybox", "ping", "-c1", "-W1", "-I", bridge.name, ip], timeout=10)
    nobody = str(bridge.network.network_address + 250)
    assert run(["busybox", "ping", "-c1", "-W1", "-I", bridge.name, nobody],
               check=False, timeout=10).returncode != 0       # a control: nobody else answers
    # The host end of the veth is the deterministic name, on our bridge.
    assert bridge.name in run(["ip", "-o", "link", "show", "master", bridge.name]).stdout.decode()


def test_exec_io_and_exit_codes(launch: Launcher) -> None:
    spec = launch(nic=False)
    d = launch.driver
    r = d.exec(spec.name, ["sh", "-c", "echo out; echo err >&2; exit 42"])
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out) == (42, b"out\n", b"err\n", False)
    data = os.urandom(100_000)
    assert d.exec(spec.name, ["cat"], stdin=data).stdout == data
    assert d.exec(spec.name, ["sh", "-c", "echo $FOO"], env={"FOO": "bar"}).stdout == b"bar\n"
    assert b"HOME" not in d.exec(spec.name, ["sh", "-c", "env"], env={}).stdout.replace(b"HOME=/root", b"")
    r = d.exec(spec.name, ["sh", "-c", "sleep 100 & sleep 100; echo never"], timeout=0.5)
    assert r.timed_out and b"never" not in r.stdout
    # the whole attached process group died, inside too
    wait_for(lambda: b"sleep 100" not in d.exec(spec.name, ["ps"]).stdout, 5, "sleeps to die")


def test_console_log_and_console(launch: Launcher) -> None:
    spec = launch(nic=False)
    d = launch.driver
    wait_for(lambda: b"lxcloud-busybox: booted" in d.console_log(spec.name), 10, "boot line on console")
    assert len(d.console_log(spec.name, max_bytes=10)) == 10
    # Type a command into the console through a pty and read its output.
    pid, fd = pty.fork()
    if pid == 0:
        argv = d.console_command(spec.name)
        os.execvp(argv[0], argv)
    try:
        buf = b""
        deadline = time.monotonic() + 15
        sent = 0.0
        while b"console-ok-42" not in buf and time.monotonic() < deadline:
            # typed again until it is answered: input typed before init has started the console's
            # shell is dropped when init sets the terminal up for it
            if (b"Ctrl+a" in buf or b"Connected" in buf) and time.monotonic() - sent > 1:
                os.write(fd, b"\recho console-ok-$((6*7))\r")
                sent = time.monotonic()
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    buf += os.read(fd, 4096)
                except OSError:
                    break
        assert b"console-ok-42" in buf, buf[-500:]
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)


def test_freeze_blocks_exec(launch: Launcher) -> None:
    spec = launch(nic=False)
    d = launch.driver
    d.freeze(spec.name)
    assert d.state(spec.name) is HostState.FROZEN
    assert d.exec(spec.name, ["true"], timeout=1).timed_out
    d.unfreeze(spec.name)
    assert d.state(spec.name) is HostState.RUNNING
    assert d.exec(spec.name, ["true"]).exit_code == 0


def test_reboot_and_clean_stop(launch: Launcher) -> None:
    spec = launch()
    d = launch.driver
    old = d.init_pid(spec.name)
    d.exec(spec.name, ["touch", "/root/persist"])
    d.reboot(spec.name)
    assert d.state(spec.name) is HostState.RUNNING and d.init_pid(spec.name) != old
    assert d.exec(spec.name, ["ls", "/root/persist"]).exit_code == 0
    assert d.console_log(spec.name).count(b"lxcloud-busybox: booted") >= 2
    d.stop(spec.name, timeout=20)
    assert d.state(spec.name) is HostState.STOPPED
    # Clean: busybox init took the halt signal and finished its shutdown (its last words are on
    # the console), rather than being killed after the timeout.
    assert b"Requesting system halt" in d.console_log(spec.name)
    d.start(spec.name)
    assert d.exec(spec.name, ["ls", "/root/persist"]).exit_code == 0
    d.stop(spec.name, force=True)
    assert d.state(spec.name) is HostState.STOPPED


def test_unprivileged_and_no_host_devices(launch: Launcher) -> None:
    spec = launch(nic=False)
    d = launch.driver
    pid = d.init_pid(spec.name)
    status = Path(f"/proc/{pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(\d+)", status, re.M)
    assert uids and int(uids.group(1)) == IDMAP.host_uid
    assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", str(IDMAP.host_uid), str(IDMAP.count)]
    assert d.exec(spec.name, ["id", "-u"]).stdout == b"0\n"
    devs = set(d.exec(spec.name, ["ls", "/dev"]).stdout.decode().split())
    assert devs <= {"console", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
                    "stdout", "tty", "tty1", "tty2", "tty3", "tty4", "urandom", "zero", "mqueue"}, devs
    for bad in ("sda", "vda", "kvm", "mem", "fuse", "loop0"):
        assert bad not in devs
    r = d.exec(spec.name, ["mknod", "/tmp/blk", "b", "7", "0"])
    assert r.exit_code != 0
    r = d.exec(spec.name, ["sh", "-c", "mknod /dev/x c 1 1 && head -c1 /dev/x"])   # /dev/mem
    assert r.exit_code != 0
    # the base is never written by the instance: the file lands in the upper dir only
    d.exec(spec.name, ["sh", "-c", "echo hi > /etc/motd"])
    assert (spec.rootfs.path / "etc/motd").read_text() == "hi\n"
    assert not (spec.rootfs.lower / "etc/motd").exists()
    assert (spec.rootfs.path / "etc/motd").stat().st_uid == IDMAP.host_uid


def test_limits_visible_inside(launch: Launcher) -> None:
    spec = launch(memory=64 * MiB, vcpus=1, nic=False)
    d = launch.driver
    meminfo = d.exec(spec.name, ["cat", "/proc/meminfo"]).stdout.decode()
    assert re.search(r"^MemTotal:\s+65536 kB", meminfo, re.M), meminfo[:200]
    free = d.exec(spec.name, ["free", "-m"]).stdout.decode()
    assert re.search(r"^Mem:\s+64\s", free, re.M), free
    cpus = d.exec(spec.name, ["grep", "-c", "^processor", "/proc/cpuinfo"]).stdout.strip()
    assert cpus == b"1"
    # lxcfs --enable-cfs also narrows the online-cpu list; the cpuset pins one whole CPU, so
    # sched_getaffinity (nproc) says 1 as well
    assert d.exec(spec.name, ["cat", "/sys/devices/system/cpu/online"]).stdout.strip() == b"0"
    assert d.exec(spec.name, ["nproc"]).stdout.strip() == b"1"
    allowed = re.search(r"^Cpus_allowed_list:\s+(\S+)", d.exec(spec.name, ["cat", "/proc/self/status"])
                        .stdout.decode(), re.M)
    assert allowed and allowed.group(1) == ",".join(map(str, pick_cpus(spec.name, 1, host_cpus()) or []))


def test_all_cpus_are_not_pinned(launch: Launcher) -> None:
    n = len(host_cpus())
    spec = launch(vcpus=n, nic=False)
    assert launch.driver.exec(spec.name, ["nproc"]).stdout.strip() == str(n).encode()


def test_declares_the_host_cpus_as_the_most_vcpus(launch: Launcher) -> None:
    # what services check a launch's vCPUs against, before any row is written
    assert launch.driver.caps.max_vcpus == len(host_cpus()) == len(os.sched_getaffinity(0))


def test_limits_not_visible_without_lxcfs(launch: Launcher) -> None:
    spec = launch(memory=64 * MiB, nic=False, lxcfs=False)
    meminfo = launch.driver.exec(spec.name, ["cat", "/proc/meminfo"]).stdout.decode()
    assert not re.search(r"^MemTotal:\s+65536 kB", meminfo, re.M)


def test_memory_hog_is_oom_killed_inside(launch: Launcher) -> None:
    spec = launch(memory=64 * MiB, nic=False)
    d = launch.driver
    pid = d.init_pid(spec.name)
    # tail keeps the whole newline-free stream in memory: 300 MiB in a 64 MiB container
    r = d.exec(spec.name, ["sh", "-c", "head -c 300m /dev/zero | tail >/dev/null"], timeout=60)
    assert not r.timed_out
    assert r.exit_code == 137, r          # the shell reports tail's SIGKILL by the OOM killer
    assert d.state(spec.name) is HostState.RUNNING and d.init_pid(spec.name) == pid
    cg = _cgroup_dir(pid, "memory")
    if (cg / "memory.oom_control").exists():
        assert re.search(r"oom_kill [1-9]", (cg / "memory.oom_control").read_text())
    assert d.exec(spec.name, ["echo", "alive"]).stdout == b"alive\n"


def _cgroup_dir(pid: int, controller: str) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return Path(f"/sys/fs/cgroup/{controller}") / path.lstrip("/")
    return Path("/sys/fs/cgroup/unified") / path.lstrip("/")


def test_fork_bomb_hits_pids_max(launch: Launcher) -> None:
    spec = launch(pids=64, nic=False)
    d = launch.driver
    init = d.init_pid(spec.name)
    cg = _cgroup_dir(init, "pids")
    assert (cg / "pids.max").read_text().strip() == "64"
    bomb = "b(){ b | b & }; b; sleep 3"
    r = d.exec(spec.name, ["sh", "-c", bomb], timeout=4)
    # The limit held: never more than 64 tasks, and the host is unaffected (we are still here).
    assert int((cg / "pids.current").read_text()) <= 64
    events = (cg / "pids.events").read_text() if (cg / "pids.events").exists() else ""
    assert re.search(r"max [1-9]", events), events   # forks were refused at the limit
    assert d.state(spec.name) is HostState.RUNNING
    # Kill what is left of the bomb from the host (everything but init), then exec works again.
    def leftovers() -> list[int]:
        pids = [int(p) for p in (cg / "cgroup.procs").read_text().split()]
        return [p for p in pids if p != init]
    for _ in range(20):
        for p in leftovers():
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass
        if not leftovers():
            break
    wait_for(lambda: d.exec(spec.name, ["echo", "ok"], timeout=5).stdout == b"ok\n", 20, "exec after bomb")
    assert d.init_pid(spec.name) == init
    del r


def test_started_container_survives_its_starter(launch: Launcher) -> None:
    spec = launch(start=False, nic=False)
    d = launch.driver
    code = ("import sys; from pathlib import Path; from lxcloud.drivers.compute.lxc import LxcDriver;"
            "d = LxcDriver(Path(sys.argv[1])); d.start(sys.argv[2]); print(d.init_pid(sys.argv[2]))")
    cp = subprocess.run([sys.executable, "-c", code, str(d.lxcpath), spec.name], capture_output=True,
                        timeout=60, cwd=str(Path(__file__).resolve().parents[4]))
    assert cp.returncode == 0, cp.stderr
    # the starter has exited; the container still runs, its monitor in a session of its own
    assert d.state(spec.name) is HostState.RUNNING
    init = d.init_pid(spec.name)
    assert init == int(cp.stdout)
    monitor = int(Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[1])   # ppid
    assert os.getsid(monitor) != os.getsid(0)
    # The monitor is lxc-start's small process, not a fork of a Python interpreter.
    assert b"python" not in Path(f"/proc/{monitor}/cmdline").read_bytes()
    pss = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{monitor}/smaps_rollup").read_text(), re.M)
    assert pss and int(pss.group(1)) < 8 * 1024, pss
    assert d.exec(spec.name, ["true"]).exit_code == 0


def test_extra_files_owned_by_mapped_root_and_symlink_safe(launch: Launcher, work_dir: Path) -> None:
    spec = launch(extra_files={"/etc/lxcloud/user-data": b"#!/bin/sh\necho hi\n"}, nic=False)
    d = launch.driver
    assert d.exec(spec.name, ["cat", "/etc/lxcloud/user-data"]).stdout == b"#!/bin/sh\necho hi\n"
    assert d.exec(spec.name, ["stat", "-c", "%u", "/etc/lxcloud/user-data"]).stdout == b"0\n"
    # A tenant plants a symlink where we write on re-create: the host file must not be touched.
    victim = work_dir / "victim"
    victim.write_text("host secret\n")
    d.exec(spec.name, ["ln", "-sf", str(victim), "/etc/hostname"])
    d.exec(spec.name, ["sh", "-c", "echo changed > /etc/lxcloud/user-data"])
    d.create(spec.spec, spec.rootfs)
    assert victim.read_text() == "host secret\n"
    assert not (spec.rootfs.path / "etc/hostname").is_symlink()
    # first-boot files are written into a new root only: a redefinition keeps the tenant's edits
    assert d.exec(spec.name, ["cat", "/etc/lxcloud/user-data"]).stdout == b"changed\n"


def test_destroy_leaves_nothing(launch: Launcher) -> None:
    spec = launch(nic=False)
    d = launch.driver
    d.destroy(spec.name)
    assert not (d.lxcpath / spec.name).exists()
    assert d.state(spec.name) is HostState.MISSING
    assert spec.rootfs.path.exists()     # the storage is not the compute driver's to delete


def test_config_cgroup_v2_keys(launch: Launcher) -> None:
    spec = launch(start=False, nic=False, memory=96 * MiB, vcpus=0.5, pids=100, swap=32 * MiB)
    v2 = render_config(spec.spec, spec.rootfs, lxcpath=Path("/x"), veth=[], idmap=IDMAP, cgroup=2)
    assert "lxc.cgroup2.memory.max = 100663296" in v2 and "lxc.cgroup2.cpu.max = 50000 100000" in v2
    assert "lxc.cgroup2.memory.swap.max = 33554432" in v2 and "lxc.cgroup2.pids.max = 100" in v2
    assert "lxc.cgroup." not in v2.replace("lxc.cgroup2.", "")
    v1 = render_config(spec.spec, spec.rootfs, lxcpath=Path("/x"), veth=[], idmap=IDMAP, cgroup=1)
    assert "lxc.cgroup.cpu.cfs_quota_us = 50000" in v1 and "lxc.cgroup2." not in v1
    # half a vCPU: half of one pinned CPU
    on4 = render_config(spec.spec, spec.rootfs, lxcpath=Path("/x"), veth=[], idmap=IDMAP, cgroup=1,
                        cpus=[0, 1, 2, 3])
    pinned = re.findall(r"^lxc.cgroup.cpuset.cpus = (\d+)$", on4, re.M)
    assert len(pinned) == 1 and pinned[0] in "0123"


def test_console_log_is_bounded(launch: Launcher) -> None:
    spec = launch(nic=False)
    d = launch.driver
    # 3 MiB of text through the console: the log rotates at 1 MiB instead of growing
    d.exec(spec.name, ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' 'x' | fold -w 100 > /dev/console"],
           timeout=60)
    logs = [d.lxcpath / spec.name / n for n in ("console.log", "console.log.1")]
    wait_for(lambda: logs[1].exists(), 10, "console log rotation")
    for f in logs:
        assert f.stat().st_size <= (1 << 20) + 65536
    assert len(d.console_log(spec.name)) <= 2 * ((1 << 20) + 65536)


def test_stop_and_destroy_frozen(launch: Launcher) -> None:
    a = launch(nic=False)
    b = launch(nic=False)
    d = launch.driver
    for spec in (a, b):
        d.freeze(spec.name)
    d.stop(a.name, timeout=5)
    assert d.state(a.name) is HostState.STOPPED
    d.destroy(b.name)
    assert d.state(b.name) is HostState.MISSING
    with pytest.raises(DriverError):
        d.exec(a.name, ["true"])


def test_prepare_host_is_idempotent(host_ready: dict[str, object], work_dir: Path) -> None:
    from lxcloud.config import Settings
    from lxcloud.node.host import LXCFS_PIDFILE, prepare_host

    facts = prepare_host(Settings(data_dir=work_dir))
    assert facts["lxcfs_running"] and facts["fuse"] and facts["ip_forward"]
    assert facts["cgroup_version"] in (1, 2) and facts["cpus"] >= 1 and str(facts["lxc_version"])[:1] >= "4"
    for f in ("/etc/subuid", "/etc/subgid"):
        assert Path(f).read_text().splitlines().count(f"root:{IDMAP.host_uid}:{IDMAP.count}") == 1
    lxcfs = int(LXCFS_PIDFILE.read_text().split()[0])
    assert os.getsid(lxcfs) != os.getsid(0)        # its own session: it outlives the agent
    assert Path("/var/lib/lxcfs/proc/meminfo").read_text().startswith("MemTotal:")
    assert facts["cgroup_favordynmods"]


def test_cgroup_migrations_are_made_cheap_keeping_the_hierarchys_flags(
        host_ready: dict[str, object]) -> None:
    from lxcloud.node.host import _cgroup2_mount, ensure_cgroup_favordynmods

    found = _cgroup2_mount()
    if found is None:
        pytest.skip("no cgroup2 hierarchy on this host")
    before = set(found[1]) - {"favordynmods"}
    assert ensure_cgroup_favordynmods()
    after = set((_cgroup2_mount() or ("", []))[1])
    assert "favordynmods" in after and before <= after     # the flags it had are kept
    assert ensure_cgroup_favordynmods()                      # on already: nothing to do


def test_dead_lxcfs_is_restarted(host_ready: dict[str, object], tmp_path: Path) -> None:
    """A killed lxcfs leaves its FUSE mount listed but dead (ENOTCONN); that is not "running"."""
    import signal

    from lxcloud.node.host import ensure_lxcfs, lxcfs_mounted

    mnt, pidfile = tmp_path / "lxcfs", tmp_path / "lxcfs.pid"
    try:
        ensure_lxcfs(mnt, pidfile=pidfile)
        first = int(pidfile.read_text().split()[0])
        assert (mnt / "proc/meminfo").read_text().startswith("MemTotal:")
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{first}").exists(), 10, "lxcfs to die")
        assert str(mnt) in Path("/proc/self/mounts").read_text()     # still listed...
        assert not lxcfs_mounted(mnt)                                  # ...but dead
        ensure_lxcfs(mnt, pidfile=pidfile)
        second = int(pidfile.read_text().split()[0])
        assert second != first and lxcfs_mounted(mnt)
        assert (mnt / "proc/meminfo").read_text().startswith("MemTotal:")
    finally:
        if pidfile.exists():
            pid = int(pidfile.read_text().split()[0])
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGTERM)
        run(["umount", "-l", str(mnt)], check=False)


def test_privileged_when_asked(launch: Launcher) -> None:
    spec = launch(idmap=None, nic=False)
    d = spec.driver
    pid = d.init_pid(spec.name)
    assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", "0", "4294967295"]
    # still no host block devices: the device cgroup denies them even to a privileged root
    r = d.exec(spec.name, ["sh", "-c", "mknod /tmp/blk b 7 0 && head -c1 /tmp/blk"])
    assert r.exit_code != 0
    capbnd = re.search(r"^CapBnd:\s+([0-9a-f]+)", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert capbnd and not int(capbnd.group(1), 16) & (1 << 16)      # CAP_SYS_MODULE dropped


def test_failed_start_says_why(launch: Launcher) -> None:
    spec = launch(start=False)
    d = launch.driver
    d.create(replace(spec.spec, nics=(Nic(network="n", mac="", ipv4=None, link="nosuchbr0"),)),
             spec.rootfs)
    with pytest.raises(DriverError) as ei:
        d.start(spec.name, timeout=10)
    assert "lxc-start" in str(ei.value.command) and ei.value.stderr
    assert d.state(spec.name) is HostState.STOPPED
