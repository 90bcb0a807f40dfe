"""The LXC compute driver: system containers through liblxc's command-line tools.

Containers are started with `lxc-start -d`, never the Python binding's start(): liblxc's monitor is a
fork of the caller, so starting from our large Python process would keep ~50 MB alive per container,
while lxc-start's monitor costs ~1 MiB and lives in its own session (it survives our process).
Every host command goes through `_cmd`, so a later multi-host mode can prefix `ip netns exec NS`
(liblxc's command socket is an abstract unix socket, per network namespace).
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from lxcloud.core.caps import ComputeCaps
from lxcloud.core.errors import DriverError, InUse, InvalidCombination, InvalidInput, NotFound
from lxcloud.core.host import ExecResult, HostState
from lxcloud.core.instance import InstanceSpec, Kind, Nic
from lxcloud.core.instance_types import Limits
from lxcloud.core.proc import run
from lxcloud.core.waiting import wait_until
from lxcloud.drivers.compute import hotplug, identity
from lxcloud.drivers.compute.base import CgroupDirs, IdMap, Mount, RootfsSpec
from lxcloud.drivers.network.macvlan import macvlan_mode
from lxcloud.drivers.network.ratelimit import RateLimiter, Rates, script

LXC_STATES = {
    "RUNNING": HostState.RUNNING, "STARTING": HostState.RUNNING, "STOPPING": HostState.RUNNING,
    "THAWED": HostState.RUNNING, "FROZEN": HostState.FROZEN, "FREEZING": HostState.FROZEN,
    "STOPPED": HostState.STOPPED, "ABORTING": HostState.STOPPED,
}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def host_veth_name(name: str, index: int = 0, prefix: str = "vx") -> str:
    """The host-side veth of NIC `index`: deterministic (firewall rules can name it), ≤ 15 chars.
    A per-cloud `prefix` (≤ 6 chars) lets one cloud's rules match its own ports only."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{prefix}{digest[:14 - len(prefix)]}{index}"


LXC_CONFIG_DIR = Path("/usr/share/lxc/config")
LXCFS_DIR = Path("/var/lib/lxcfs")
# What lxcfs 5.0 virtualizes under <lxcfs_dir>/proc (its lxc.mount.hook binds the same set)
LXCFS_PROC_FILES = ("cpuinfo", "diskstats", "loadavg", "meminfo", "slabinfo", "stat", "swaps", "uptime")
CONSOLE_LOG_SIZE = 1 << 20          # bytes; liblxc wants a power of two
# Capabilities no tenant needs; systemd copes without them (timesyncd is skipped without sys_time).
# sys_boot stays: reboot(2) inside a pid namespace is how init asks LXC for a restart.
CAP_DROP = ("mac_admin", "mac_override", "sys_module", "sys_time", "sys_rawio")
# The standard device allow list (common.conf's), re-applied after userns.conf clears it.
DEVICE_ALLOW = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 5:1 rwm",
                "c 5:2 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 136:* rwm", "c 10:229 rwm")
CFS_PERIOD = 100_000
CGROUP_ROOT = Path("/sys/fs/cgroup")
# A btrfs subvolume made inside a container is a qgroup of its own, outside its root's disk limit
# (verified on the btrfs pool: data written into one is charged to nobody's limit). The ioctls
# that make one are refused with EPERM, on every pool; linux/btrfs.h: _IOW(0x94, nr,
# struct btrfs_ioctl_vol_args[_v2]), both 4096 bytes.
BTRFS_SUBVOL_IOCTLS = {"SNAP_CREATE": 0x50009401, "SUBVOL_CREATE": 0x5000940E,
                       "SNAP_CREATE_V2": 0x50009417, "SUBVOL_CREATE_V2": 0x50009418}
SECCOMP_FILE = "seccomp"            # the container's profile, beside its config
STARTED_CONFIG = "config.started"   # the config the running container started with
NICS_HOOK = "nics.start-host"       # its start-host hook: a no-op, or the NIC resync after a hot-plug
NICS_WANTED = "nics.json"           # the NICs that resync makes the container have
NOOP_HOOK = "#!/bin/sh\n# written by lxcloud: nothing hot-plugged since this start\n:\n"


def cgroup_version() -> int:
    """1 when the v1 controllers are mounted (hybrid or legacy), 2 for a pure unified hierarchy."""
    if Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        return 1
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return 2
    return 1


def host_cpus() -> list[int]:
    """The CPUs containers may run on: those this process may (the cpuset it was given)."""
    return sorted(os.sched_getaffinity(0))


def pick_cpus(instance_id: str, vcpus: float, cpus: Sequence[int]) -> list[int] | None:
    """The whole CPUs an instance is pinned to: as many as its vCPUs rounded up, or None (no
    pinning) when that is all of them. Chosen by rendezvous hashing on the instance id: the same
    instance always gets the same CPUs (across redefinitions and restarts), different instances
    spread evenly over the host's, and no host-wide bookkeeping is needed."""
    count = math.ceil(vcpus)
    if count >= len(cpus):
        return None

    def score(cpu: int) -> bytes:
        return hashlib.sha256(f"{instance_id}:{cpu}".encode()).digest()

    return sorted(sorted(cpus, key=score)[:count])


def _limit_lines(lim: Limits, version: int, pinned: Sequence[int] | None = None) -> list[str]:
    """cgroup limits: memory (+swap), CFS quota and shares/weight for fractional vCPUs, and the
    whole CPUs `pinned` (a cpuset), so that every tool inside — nproc and sched_getaffinity as
    well as /proc/cpuinfo through lxcfs — sees the instance's CPU count (Incus' limits.cpu)."""
    quota = max(1000, int(lim.vcpus * CFS_PERIOD))
    cpuset = ",".join(str(c) for c in pinned) if pinned else None
    if version == 1:
        lines = [f"lxc.cgroup.memory.limit_in_bytes = {lim.memory}"]
        if Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists():
            lines.append(f"lxc.cgroup.memory.memsw.limit_in_bytes = {lim.memory + lim.swap}")
        lines += [f"lxc.cgroup.cpu.cfs_period_us = {CFS_PERIOD}",
                  f"lxc.cgroup.cpu.cfs_quota_us = {quota}",
                  f"lxc.cgroup.cpu.shares = {max(2, int(1024 * lim.vcpus))}",
                  f"lxc.cgroup.pids.max = {lim.pids}"]
        if cpuset:
            lines.append(f"lxc.cgroup.cpuset.cpus = {cpuset}")
        return lines
    lines = [f"lxc.cgroup2.memory.max = {lim.memory}",
             f"lxc.cgroup2.memory.swap.max = {lim.swap}",
             f"lxc.cgroup2.cpu.max = {quota} {CFS_PERIOD}",
             f"lxc.cgroup2.cpu.weight = {min(10000, max(1, int(100 * lim.vcpus)))}",
             f"lxc.cgroup2.pids.max = {lim.pids}"]
    if cpuset:
        lines.append(f"lxc.cgroup2.cpuset.cpus = {cpuset}")
    return lines


def rate_hooks(cdir: Path, nic: Nic) -> tuple[Path, Path]:
    """Where the scripts setting and clearing a NIC's limits are, beside the container's config."""
    return cdir / f"rates-eth{nic.index}.up", cdir / f"rates-eth{nic.index}.down"


def _nic_lines(i: int, nic: Nic, veth: str, cdir: Path) -> list[str]:
    """The `lxc.net.i` keys of one NIC: a veth pair on its bridge (host end `veth`, with the
    rate limit hooks when it has a limit), or a macvlan device on its parent. Only the first NIC
    (i 0) gets the default route: a second one comes with its address alone."""
    p = f"lxc.net.{i}"
    if nic.driver == "macvlan":
        lines = [f"{p}.type = macvlan", f"{p}.link = {nic.link}",
                 f"{p}.macvlan.mode = {macvlan_mode(nic.mode)}"]
    else:
        lines = [f"{p}.type = veth", f"{p}.link = {nic.link}", f"{p}.veth.pair = {veth}"]
        if nic.ingress or nic.egress:
            up, down = rate_hooks(cdir, nic)
            lines += [f"{p}.script.up = /bin/sh {up}", f"{p}.script.down = /bin/sh {down}"]
    lines += [f"{p}.flags = up", f"{p}.name = {nic.name}", f"{p}.mtu = {nic.mtu}"]
    if nic.mac:
        lines.append(f"{p}.hwaddr = {nic.mac}")
    if nic.ipv4:
        # With no explicit broadcast liblxc 5.0 sets 0.0.0.255 on a /24: give the right one.
        lines.append(f"{p}.ipv4.address = {nic.interface} {nic.broadcast}")
    if nic.gateway and i == 0:    # one default route: the first NIC's
        lines.append(f"{p}.ipv4.gateway = {nic.gateway}")
    return lines


def nic_ports(spec: InstanceSpec, prefix: str) -> list[str]:
    """The host port of each of the spec's NICs, in order: named after the NIC's index (ethN: N),
    so a NIC keeps its port's name (and the rules naming it) when one before it is detached."""
    return [host_veth_name(spec.id, n.index, prefix) for i, n in enumerate(spec.nics)]


def mount_target(target: str) -> str:
    """`target` normalized as a mount point inside a container; InvalidInput when it cannot be
    one (relative, with `..`, a newline, or / itself)."""
    try:
        return hotplug.check_target(target)
    except ValueError as e:
        raise InvalidInput(str(e), target=target) from None


def _fstab_escape(path: str) -> str:
    """A path as a mount entry's field: liblxc reads them with getmntent, which decodes these."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def _mount_lines(mounts: Sequence[Mount]) -> list[str]:
    """Each volume bind-mounted at its target at every start (the directory made if missing)."""
    lines, seen = [], set()
    for m in mounts:
        target = mount_target(m.target)
        if target in seen:
            raise InvalidInput(f"two volumes at {target}", target=target)
        seen.add(target)
        if any(c in str(m.source) for c in "\n\r\0") or not Path(m.source).is_absolute():
            raise InvalidInput(f"invalid volume source {m.source!r}")
        opts = "bind,create=dir" + (",ro" if m.readonly else "")
        # relative: liblxc mounts it under the container's root
        lines.append(f"lxc.mount.entry = {_fstab_escape(str(m.source))} "
                     f"{_fstab_escape(target.lstrip('/'))} none {opts} 0 0")
    return lines


def render_config(spec: InstanceSpec, root: RootfsSpec, *, lxcpath: Path, veth: Sequence[str],
                  idmap: IdMap | None, cgroup: int | None = None, lxcfs_dir: Path | None = LXCFS_DIR,
                  cpus: Sequence[int] | None = None, mounts: Sequence[Mount] = ()) -> str:
    """The liblxc config file of `spec` over `root` with the volumes `mounts` (pure but for
    reading which cgroup layout this is and, when `cpus` is not given, which CPUs the host has).
    idmap None: privileged; lxcfs_dir None: no lxcfs."""
    version = cgroup or cgroup_version()
    cdir = lxcpath / spec.id
    rf = root
    if rf.kind == "overlay":
        if rf.lower is None:
            raise InvalidInput("an overlay root needs a lower dir")
        rootfs = f"overlay:{rf.lower}:{rf.path}"
    elif rf.kind == "dir":
        rootfs = f"dir:{rf.path}"
    else:
        raise InvalidInput(f"root kind {rf.kind!r} is not supported by the lxc driver")
    for v in (spec.id, spec.name, rootfs, *(n.link for n in spec.nics)):
        if "\n" in v or "\r" in v:
            raise InvalidInput("newline in a container setting")
    lines = ["# written by lxcloud; rewritten on every create", f"lxc.include = {LXC_CONFIG_DIR}/common.conf"]
    if idmap:
        lines.append(f"lxc.include = {LXC_CONFIG_DIR}/userns.conf")
    lines.append(f"lxc.seccomp.profile = {cdir / SECCOMP_FILE}")     # replaces common.conf's
    devkey = "lxc.cgroup" if version == 1 else "lxc.cgroup2"
    # No host devices: deny all but the standard safe set (userns.conf empties the list; the monitor
    # runs as host root, so it can still program the device cgroup for an unprivileged container).
    lines += [f"{devkey}.devices.deny = a", *(f"{devkey}.devices.allow = {a}" for a in DEVICE_ALLOW)]
    lines.append(f"lxc.cap.drop = {' '.join(CAP_DROP)}")
    # common.conf pulls in common.conf.d/00-lxcfs.conf, whose shell hooks cost ~18 ms per start (the
    # mount hook) and a fixed 0.5 s per stop (the post-stop hook is `sleep 0.5s`). Empty keys clear
    # them; liblxc makes the same bind mounts natively from mount entries instead.
    lines += ["lxc.hook.mount =", "lxc.hook.post-stop ="]
    if lxcfs_dir is not None:
        lines += [f"lxc.mount.entry = {lxcfs_dir}/proc/{f} proc/{f} none bind,optional 0 0"
                  for f in LXCFS_PROC_FILES]
        lines.append(f"lxc.mount.entry = {lxcfs_dir}/sys/devices/system/cpu sys/devices/system/cpu "
                     "none bind,optional 0 0")
    lines += _mount_lines(mounts)
    # liblxc reboots with the config it started with: after a NIC hot-plug this hook (rewritten
    # by the driver) makes the container's NICs the definition's again
    lines.append(f"lxc.hook.start-host = /bin/sh {cdir / NICS_HOOK}")
    lines += [f"lxc.uts.name = {spec.name}", f"lxc.rootfs.path = {rootfs}",
              "lxc.start.auto = 0", "lxc.autodev = 1",
              f"lxc.console.logfile = {cdir / 'console.log'}",
              f"lxc.console.size = {CONSOLE_LOG_SIZE}", "lxc.console.rotate = 1"]
    if idmap and rf.kind == "overlay":
        # Mounted inside the user namespace, overlayfs cannot set trusted.overlay.* xattrs: without
        # userxattr it has no opaque directories (`rm -rf /usr; mkdir /usr` fails with EIO).
        lines.append("lxc.rootfs.options = userxattr")
    if spec.image.halt_signal:
        lines.append(f"lxc.signal.halt = {spec.image.halt_signal}")
    if idmap:
        m = idmap
        lines += [f"lxc.idmap = u 0 {m.host_uid} {m.count}", f"lxc.idmap = g 0 {m.host_gid} {m.count}"]
    if spec.nics:
        for i, nic in enumerate(spec.nics):
            lines += _nic_lines(i, nic, veth[i], cdir)
    else:
        lines.append("lxc.net.0.type = empty")   # own network namespace with only lo
    lines += _limit_lines(spec.limits, version,
                          pick_cpus(spec.id, spec.limits.vcpus, host_cpus() if cpus is None else cpus))
    return "\n".join(lines) + "\n"


def render_seccomp(common: str) -> str:
    """The container's seccomp profile: liblxc's common one (its text; it stays in force) with
    the btrfs subvolume ioctls refused."""
    text = common.rstrip("\n") + "\n" if common.strip() else "2\ndenylist\n"
    return text + "[all]\n" + "".join(f"ioctl errno 1 [1,{nr:#x},SCMP_CMP_EQ]\n"
                                       for nr in BTRFS_SUBVOL_IOCTLS.values())


def write_into_root(root: Path, lower: Path | None, path: str, content: bytes, *, uid: int,
                    gid: int, mode: int = 0o644, dir_mode: int = 0o755) -> None:
    """Write `content` at `path` inside the root dir `root` (an overlay upper dir or a plain root).

    The root belongs to the tenant: every component is opened with O_NOFOLLOW relative to its parent,
    so a symlink planted inside can never redirect this root-run write onto the host. Directories
    missing in `root` are made with the mode of their twin in `lower` (`dir_mode` when there is
    none) and owned by the mapped root.
    """
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise InvalidInput(f"invalid path inside the instance: {path!r}")
    dflags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    fd = os.open(root, dflags)
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                nfd = os.open(part, dflags, dir_fd=fd)
            except FileNotFoundError:
                twin = lower.joinpath(*parts[: i + 1]) if lower else None
                dmode = (twin.lstat().st_mode & 0o7777) if twin and twin.is_dir() else dir_mode
                os.mkdir(part, dmode, dir_fd=fd)
                nfd = os.open(part, dflags, dir_fd=fd)
                os.fchown(nfd, uid, gid)
                os.fchmod(nfd, dmode)
            os.close(fd)
            fd = nfd
        name = parts[-1]
        try:
            os.unlink(name, dir_fd=fd)   # replaces a file or a planted symlink, never follows it
        except FileNotFoundError:
            pass
        except IsADirectoryError as e:
            raise InvalidInput(f"{path} is a directory inside the instance") from e
        ffd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=fd)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(ffd, view):]
            os.fchown(ffd, uid, gid)
            os.fchmod(ffd, mode)
        finally:
            os.close(ffd)
    finally:
        os.close(fd)


class LxcDriver:
    """ComputeDriver for LXC system containers under one lxcpath."""

    name = "lxc"
    caps = ComputeCaps(kind=Kind.CONTAINER, freeze=True, console=True, exec=True, max_nics=8,
                       hotplug_disk=True, hotplug_nic=True)

    def __init__(self, lxcpath: Path, *, idmap: IdMap | None = None, netns: str | None = None,
                 lxcfs_dir: Path | None = LXCFS_DIR, veth_prefix: str = "vx") -> None:
        """idmap: the unprivileged id map (None: privileged containers, an operator's choice);
        lxcfs_dir None: containers see the host's /proc (no lxcfs)."""
        if not (1 <= len(veth_prefix) <= 6 and veth_prefix.isalnum()):
            raise InvalidInput("veth_prefix must be 1 to 6 letters or digits")
        # one instance may use every CPU this host gives containers, never more
        self.caps = dataclasses.replace(LxcDriver.caps, max_vcpus=len(host_cpus()))
        self.veth_prefix = veth_prefix
        self.lxcpath = Path(lxcpath)
        self.idmap = idmap
        self.netns = netns
        self.lxcfs_dir = Path(lxcfs_dir) if lxcfs_dir is not None else None
        self.lxcpath.mkdir(parents=True, exist_ok=True)
        self.cgroup = cgroup_version()

    def port_name(self, name: str, index: int = 0) -> str:
        """The host-side veth of a container's NIC `index`."""
        return host_veth_name(name, index, self.veth_prefix)

    # --- helpers
    def _cmd(self, argv: Sequence[str]) -> list[str]:
        """argv as it must run: in the driver's network namespace when it has one."""
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, *argv]

    def _lxc(self, tool: str, name: str, *args: str, timeout: float = 60,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return run(self._cmd([tool, "-P", str(self.lxcpath), "-n", name, *args]), timeout=timeout,
                   check=check)

    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise InvalidInput(f"invalid container name {name!r}")
        return self.lxcpath / name

    def _exists(self, name: str) -> bool:
        return (self._dir(name) / "config").is_file()

    def _require(self, name: str) -> None:
        if not self._exists(name):
            raise NotFound(f"container {name} does not exist on this host", resource="instance")

    def _info(self, name: str) -> tuple[str, int | None]:
        """(liblxc state name, init pid or None)."""
        if self.netns is None:
            import lxc  # the binding: state and pid over the command socket, no process spawned

            c = lxc.Container(name, str(self.lxcpath))
            st = c.state
            pid = c.init_pid if st not in ("STOPPED", "ABORTING") else -1
            return st, (pid if pid and pid > 0 else None)
        cp = self._lxc("lxc-info", name, "-s", "-p", "-H", check=False)
        lines = cp.stdout.decode().split()
        st = lines[0] if lines else "STOPPED"
        pid = int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None
        return st, pid

    def _wait(self, name: str, want: set[HostState], timeout: float,
              cond: Callable[[], bool] | None = None) -> HostState:
        seen: list[HostState] = []

        def reached() -> HostState | None:
            st = self.state(name)
            seen[:] = [st]
            return st if st in want and (cond is None or cond()) else None

        try:
            return wait_until(reached, timeout, f"container {name} becoming {'/'.join(sorted(want))}")
        except DriverError as e:
            raise DriverError(f"{e} (it is {seen[0] if seen else 'unknown'})") from None

    # --- lifecycle
    def create(self, spec: InstanceSpec, root: RootfsSpec, mounts: Sequence[Mount] = ()) -> None:
        d = self._dir(spec.id)
        first = not (d / "config").is_file()
        if not root.path.is_dir():
            raise NotFound(f"root {root.path} of {spec.id} does not exist", resource="rootfs")
        uid = self.idmap.host_uid if self.idmap else 0
        gid = self.idmap.host_gid if self.idmap else 0
        veths = nic_ports(spec, self.veth_prefix)
        # everything checked before anything is written: bad input leaves no directory behind
        config = render_config(spec, root, lxcpath=self.lxcpath, veth=veths, idmap=self.idmap,
                               lxcfs_dir=self.lxcfs_dir, mounts=mounts)
        for m in mounts:
            if not Path(m.source).is_dir():
                raise NotFound(f"volume directory {m.source} of {spec.id} does not exist",
                               resource="volume")
        d.mkdir(mode=0o750, exist_ok=True)
        common = LXC_CONFIG_DIR / "common.seccomp"
        (d / SECCOMP_FILE).write_text(render_seccomp(common.read_text() if common.is_file()
                                                     else ""))
        for nic, port in zip(spec.nics, veths, strict=True):
            if nic.driver != "macvlan" and (nic.ingress or nic.egress):
                up, down = rate_hooks(d, nic)
                up.write_text(script(port, Rates(nic.ingress, nic.egress)))
                down.write_text(script(port, Rates()))
        if not (d / NICS_HOOK).is_file():
            (d / NICS_HOOK).write_text(NOOP_HOOK)
        tmp = d / "config.tmp"
        tmp.write_text(config)
        files: dict[str, bytes] = {
            "/etc/hostname": f"{spec.name}\n".encode(),
            "/etc/hosts": (f"127.0.0.1 localhost\n127.0.1.1 {spec.name}\n"
                           "::1 localhost ip6-localhost ip6-loopback\n").encode(),
        }
        nameservers = spec.nics[0].nameservers if spec.nics else ()
        if nameservers:
            search = spec.nics[0].search
            files["/etc/resolv.conf"] = ((f"search {' '.join(search)}\n" if search else "") + "".join(
                f"nameserver {ns}\n" for ns in nameservers)).encode()
        for path, content in files.items():
            write_into_root(root.path, root.lower, path, content, uid=uid, gid=gid)
        if first:
            for f in spec.first_boot:
                mode = f.mode & 0o7777
                # A private file (e.g. /root/.ssh/authorized_keys) gets private new parents (0700),
                # which sshd's StrictModes requires of ~/.ssh.
                write_into_root(root.path, root.lower, f.path, f.content, uid=uid, gid=gid,
                                mode=mode, dir_mode=0o700 if not mode & 0o077 else 0o755)
        # the config last: a definition exists only once its root is ready
        os.replace(tmp, d / "config")

    # --- volumes
    def _running_pid(self, name: str) -> int:
        self._require(name)
        pid = self.init_pid(name)
        if pid is None:
            raise DriverError(f"container {name} is not running")
        return pid

    def attach_mount(self, name: str, mount: Mount) -> None:
        target = mount_target(mount.target)
        pid = self._running_pid(name)
        if not Path(mount.source).is_dir():
            raise NotFound(f"volume directory {mount.source} does not exist", resource="volume")
        uid = self.idmap.host_uid if self.idmap else 0
        gid = self.idmap.host_gid if self.idmap else 0
        try:
            hotplug.attach(pid, Path(mount.source), target, uid=uid, gid=gid,
                           readonly=mount.readonly)
        except hotplug.HotplugError as e:
            if e.invalid:
                raise InvalidInput(f"cannot mount at {target} in {name}: {e}", target=target) from None
            raise DriverError(f"attaching {mount.source} at {target} in {name} failed: {e}") from None

    def detach_mount(self, name: str, target: str, *, force: bool = False) -> None:
        target = mount_target(target)
        self._require(name)
        pid = self.init_pid(name)
        if pid is None or not hotplug.is_mounted(pid, target):
            return
        if not force:
            held = hotplug.holders(pid, target)
            if held:
                raise InUse(f"{target} in {name} is held open by {', '.join(map(str, held))}",
                            resource="volume", holders=[h.command for h in held],
                            pids=[h.pid for h in held])
        try:
            hotplug.detach(pid, target, force=force)
        except hotplug.HotplugError as e:
            if e.busy:   # held in a way not seen in /proc's fds (a mapped file, a submount)
                raise InUse(f"{target} in {name} is still in use: {e}", resource="volume",
                            holders=[]) from None
            raise DriverError(f"detaching {target} in {name} failed: {e}") from None

    # --- NICs
    def _plug(self, spec: InstanceSpec, nic: Nic) -> tuple[int, hotplug.NicPlug]:
        """The slot of `nic` in `spec` and what plug_nic needs of it."""
        i = next((i for i, n in enumerate(spec.nics) if n.name == nic.name), None)
        if i is None:
            raise InvalidInput(f"{spec.id} lists no NIC {nic.name}", nic=nic.name)
        slot = nic.index
        macvlan = nic.driver == "macvlan"
        return slot, hotplug.NicPlug(
            name=nic.name, mac=nic.mac, mtu=nic.mtu,
            port="" if macvlan else self.port_name(spec.id, slot),
            link=nic.link,
            macvlan_mode=macvlan_mode(nic.mode) if macvlan else "",
            address=nic.interface, broadcast=nic.broadcast,
            gateway=nic.gateway if i == 0 else None,
            ingress=0 if macvlan else nic.ingress, egress=0 if macvlan else nic.egress)

    def attach_nic(self, spec: InstanceSpec, nic: Nic) -> None:
        _, plug = self._plug(spec, nic)
        pid = self._running_pid(spec.id)
        if hotplug.nic_present(pid, nic.name):
            return
        try:
            hotplug.plug_nic(pid, plug, netns=self.netns)
        except hotplug.HotplugError as e:
            if e.invalid:
                raise InvalidInput(f"cannot attach {nic.name} to {spec.id}: {e}",
                                   nic=nic.name) from None
            raise DriverError(f"attaching {nic.name} to {spec.id} failed: {e}") from None
        if plug.port and (nic.ingress or nic.egress):
            try:
                self.rates().apply(plug.port, Rates(nic.ingress, nic.egress))
            except BaseException:
                hotplug.unplug_nic(None, nic.name, plug.port, netns=self.netns)
                raise
        self._resync_after_reboot(spec)

    def detach_nic(self, spec: InstanceSpec, nic: Nic) -> None:
        _, plug = self._plug(spec, nic)
        self._require(spec.id)
        if plug.port:
            self.rates().remove(plug.port)
        try:
            hotplug.unplug_nic(self.init_pid(spec.id), nic.name, plug.port, netns=self.netns)
        except hotplug.HotplugError as e:
            raise DriverError(f"detaching {nic.name} from {spec.id} failed: {e}") from None
        if self.state(spec.id) is not HostState.STOPPED:
            self._resync_after_reboot(replace(spec, nics=tuple(n for n in spec.nics
                                                              if n.name != nic.name)))

    def _resync_after_reboot(self, spec: InstanceSpec) -> None:
        """The running container's NICs changed since its start: its start-host hook (which a
        reboot from inside runs with the config of the start) makes them `spec`'s again."""
        d = self._dir(spec.id)
        hotplug.write_wanted(d / NICS_WANTED, [self._plug(spec, n)[1] for n in spec.nics])
        top = str(Path(__file__).resolve().parents[3])      # the dir holding the lxcloud package
        # (the hook runs where the monitor does: in the driver's network namespace, if any)
        argv = ["env", f"PYTHONPATH={top}", sys.executable, "-m", "lxcloud.drivers.compute.hotplug",
                "sync-nics", str(d / NICS_WANTED)]
        cmd = " ".join(shlex.quote(a) for a in argv)
        # a failed resync must not stop the instance from coming back (eth0 is liblxc's own)
        (d / NICS_HOOK).write_text(f"#!/bin/sh\n# written by lxcloud: NICs hot-plugged since the "
                                   f"start\n{cmd} >>{shlex.quote(str(d / 'nics.log'))} 2>&1 || "
                                   "true\n")

    def set_rates(self, spec: InstanceSpec, nic: Nic) -> None:
        slot, plug = self._plug(spec, nic)
        if not plug.port:
            raise InvalidCombination(f"{nic.name} of {spec.id} has no host port to limit "
                                     f"({nic.driver})", capability="rate_limits")
        if self.state(spec.id) not in (HostState.RUNNING, HostState.FROZEN):
            return      # the definition's hooks set them at the next start
        self.rates().apply(plug.port, Rates(nic.ingress, nic.egress))

    def rates(self) -> RateLimiter:
        """The limiter of this driver's ports (in its network namespace)."""
        return RateLimiter(self.netns)

    def forget_identity(self, root: RootfsSpec) -> None:
        identity.forget_identity(root)

    def start(self, name: str, timeout: float = 30) -> None:
        # No state check first: `lxc-start -d` returns once the container runs (liblxc waits for
        # the RUNNING state from its child), and refuses one that already runs; only then is the
        # state asked for, to tell "already running" (a no-op) and "frozen" from a failure.
        self._require(name)
        log = self._dir(name) / "lxc.log"
        log.write_bytes(b"")   # liblxc appends: keep only this start's messages (read on failure)
        config = (self._dir(name) / "config").read_bytes()
        (self._dir(name) / NICS_HOOK).write_text(NOOP_HOOK)   # it starts with the definition's
        cp = self._lxc("lxc-start", name, "-d", "-o", str(log), "-l", "ERROR", timeout=timeout + 5,
                       check=False)
        if cp.returncode == 0:
            (self._dir(name) / STARTED_CONFIG).write_bytes(config)
            return
        st = self.state(name)
        if st is HostState.RUNNING:
            return
        if st is HostState.FROZEN:
            raise DriverError(f"container {name} is frozen; unfreeze it instead of starting it")
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise DriverError(f"lxc-start of {name} failed", command=cp.args,
                          stderr=cp.stderr.decode(errors="replace") + tail)

    def stop(self, name: str, *, force: bool = False, timeout: float = 30) -> None:
        self._require(name)
        st = self.state(name)
        if st is HostState.STOPPED:
            return
        if st is HostState.FROZEN and not force:
            # A frozen init cannot receive the halt signal: thaw it so the clean shutdown can run.
            self._lxc("lxc-unfreeze", name, check=False)
        args = ["-k"] if force else ["-t", str(max(1, int(timeout)))]
        cp = self._lxc("lxc-stop", name, *args, timeout=timeout + 30, check=False)
        # Exit 2 = "not running": it stopped on its own meanwhile, which is what we wanted.
        if cp.returncode not in (0, 2):
            raise DriverError(f"lxc-stop of {name} failed", command=cp.args,
                              stderr=cp.stderr.decode(errors="replace"))
        self._wait(name, {HostState.STOPPED}, 10)

    def reboot(self, name: str, timeout: float = 30) -> None:
        self._require(name)
        old = self.init_pid(name)
        if old is None:
            raise DriverError(f"container {name} is not running")
        d = self._dir(name)
        started = d / STARTED_CONFIG
        if not started.is_file() or started.read_bytes() != (d / "config").read_bytes():
            # liblxc reboots with the config it started with (its monitor's copy): a definition
            # changed since (a NIC hot-plugged, a volume attached) takes a stop and a start
            self.stop(name, timeout=timeout)
            self.start(name, timeout=timeout)
            return
        self._lxc("lxc-stop", name, "-r", "-t", str(max(1, int(timeout))), timeout=timeout + 30)
        self._wait(name, {HostState.RUNNING}, timeout,
                   cond=lambda: self.init_pid(name) not in (None, old))

    def freeze(self, name: str) -> None:
        self._require(name)
        self._lxc("lxc-freeze", name)
        self._wait(name, {HostState.FROZEN}, 10)

    def unfreeze(self, name: str) -> None:
        self._require(name)
        self._lxc("lxc-unfreeze", name)
        self._wait(name, {HostState.RUNNING}, 10)

    def destroy(self, name: str) -> None:
        d = self._dir(name)
        if not d.exists():
            return
        if self._exists(name) and self.state(name) is not HostState.STOPPED:
            self._lxc("lxc-stop", name, "-k", check=False)
            self._wait(name, {HostState.STOPPED}, 10)
        # Not lxc-destroy: it would delete the rootfs too, which belongs to the storage driver.
        limited = any(d.glob("rates-*.up"))
        shutil.rmtree(d)
        if limited:     # its stop hook removed its ifbs; one killed without it would leave them
            self.rates().sweep(self.veth_prefix)

    # --- queries
    def state(self, name: str) -> HostState:
        if not self._exists(name):
            return HostState.MISSING
        st, _ = self._info(name)
        return LXC_STATES.get(st, HostState.STOPPED)

    def list(self) -> list[str]:
        if not self.lxcpath.is_dir():
            return []
        return sorted(p.name for p in self.lxcpath.iterdir() if (p / "config").is_file())

    def cgroup_dirs(self, name: str) -> CgroupDirs:
        """liblxc's payload cgroup (`lxc.payload.<name>`) at the root of each hierarchy."""
        leaf = f"lxc.payload.{name}"
        if self.cgroup == 2:
            return CgroupDirs(2, unified=CGROUP_ROOT / leaf)
        return CgroupDirs(1, controllers={c: CGROUP_ROOT / c / leaf
                                          for c in ("cpu", "cpuacct", "memory", "pids")})

    def init_pid(self, name: str) -> int | None:
        if not self._exists(name):
            return None
        return self._info(name)[1]

    def exec(self, name: str, argv: Sequence[str], *, stdin: bytes | None = None,
             timeout: float = 60, env: dict[str, str] | None = None) -> ExecResult:
        self._require(name)
        if not argv:
            raise InvalidInput("exec needs a command")
        full_env = {"PATH": DEFAULT_PATH, "HOME": "/root", "TERM": "dumb", **(env or {})}
        env_args = [a for k, v in full_env.items() for a in ("-v", f"{k}={v}")]
        cmd = self._cmd(["lxc-attach", "-P", str(self.lxcpath), "-n", name, "--clear-env",
                         *env_args, "--", *argv])
        # Not proc.run: a timeout must kill the whole attached process group (whatever the command
        # forked inside), and report timed_out rather than raise.
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            raise DriverError("lxc-attach is not installed", command=cmd) from None
        try:
            out, err = p.communicate(input=stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                out, err = p.communicate(timeout=2)
            except subprocess.TimeoutExpired:
                # A process inside a frozen container cannot die until thawed, and holds our pipes:
                # give up on its output rather than hang.
                for f in (p.stdout, p.stderr):
                    if f:
                        f.close()
                p.wait(timeout=5)
                out, err = b"", b""
            return ExecResult(exit_code=-signal.SIGKILL, stdout=out, stderr=err, timed_out=True)
        # No state check first: lxc-attach itself refuses a container that does not run, in its
        # own words; only then is the state asked for, to say so plainly.
        if p.returncode != 0 and b"lxc-attach: " in err and self.state(name) is HostState.STOPPED:
            raise DriverError(f"container {name} is not running", command=cmd,
                              stderr=err.decode(errors="replace"))
        return ExecResult(exit_code=p.returncode, stdout=out, stderr=err)

    def console_log(self, name: str, max_bytes: int = 1 << 20) -> bytes:
        self._require(name)
        d = self._dir(name)
        data = b""
        # liblxc rotates console.log to console.log.1 when it reaches lxc.console.size
        for f in (d / "console.log.1", d / "console.log"):
            if f.exists():
                data += f.read_bytes()
        return data[-max_bytes:] if max_bytes > 0 else b""

    def console_command(self, name: str) -> builtins.list[str]:
        self._require(name)
        return self._cmd(["lxc-console", "-P", str(self.lxcpath), "-n", name, "-t", "0", "-e", "^a"])

    def attach_command(self, name: str, argv: Sequence[str]) -> builtins.list[str]:
        self._require(name)
        env = {"PATH": DEFAULT_PATH, "HOME": "/root", "TERM": "xterm-256color"}
        return self._cmd(["lxc-attach", "-P", str(self.lxcpath), "-n", name, "--clear-env",
                          *[a for k, v in env.items() for a in ("-v", f"{k}={v}")], "--", *argv])
