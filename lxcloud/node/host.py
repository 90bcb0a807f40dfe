"""Host preparation and host facts: what a node needs before it can run containers.

There is no systemd here: lxcfs is started by us, daemonized, and outlives our process.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import stat
from pathlib import Path

from lxcloud.config import Settings
from lxcloud.core.errors import DriverError
from lxcloud.core.proc import run
from lxcloud.core.waiting import wait_until

log = logging.getLogger(__name__)

LXCFS_PIDFILE = Path("/run/lxcfs.pid")
LXCFS_LOG = Path("/var/log/lxcfs.log")


def _mounts() -> list[tuple[str, str, str]]:
    """(source, mountpoint, fstype) of every mount, from /proc/self/mounts."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        f = line.split()
        if len(f) >= 3:
            out.append((f[0], f[1].replace("\\040", " "), f[2]))
    return out


def lxcfs_mounted(lxcfs_dir: Path) -> bool:
    """lxcfs is mounted at `lxcfs_dir` and its daemon answers.

    A FUSE mount outlives its daemon: when lxcfs is killed the mount stays listed, and every
    access fails with ENOTCONN ("Transport endpoint is not connected"). Such a mount is dead.
    """
    d = str(lxcfs_dir)
    if not any(mp == d and fstype.startswith("fuse") and "lxcfs" in (src + fstype)
               for src, mp, fstype in _mounts()):
        return False
    try:
        os.stat(lxcfs_dir / "proc/meminfo")
    except OSError:
        return False
    return True


def ensure_lxcfs(lxcfs_dir: Path, timeout: float = 10, pidfile: Path = LXCFS_PIDFILE) -> None:
    """Mount lxcfs at `lxcfs_dir` unless a live one already is; the daemon lives in its own session."""
    if lxcfs_mounted(lxcfs_dir):
        return
    if not Path("/dev/fuse").exists():
        raise DriverError("/dev/fuse is missing: lxcfs (limits visible inside containers) needs FUSE")
    # A stale, dead FUSE mount ("Transport endpoint is not connected") must go before remounting
    # (before anything else touches the path: even mkdir fails with ENOTCONN on it).
    if any(mp == str(lxcfs_dir) for _, mp, _ in _mounts()):
        run(["umount", "-l", str(lxcfs_dir)], check=False)
    lxcfs_dir.mkdir(parents=True, exist_ok=True)
    # `setsid -f` forks lxcfs into its own session (it outlives us, is not our child to reap);
    # stdio goes to a log file so no pipe of ours is held open by the daemon.
    # --enable-cfs: /proc/cpuinfo and sysconf(NPROCESSORS) inside follow the CFS quota (vcpus).
    LXCFS_LOG.parent.mkdir(parents=True, exist_ok=True)
    run(["sh", "-c", 'exec "$@" </dev/null >>"$LOG" 2>&1', "sh", "setsid", "-f",
         "lxcfs", "-f", "--enable-cfs", "--enable-pidfd", "-p", str(pidfile), str(lxcfs_dir)],
        env={"LOG": str(LXCFS_LOG), "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
        timeout=30)
    wait_until(lambda: lxcfs_mounted(lxcfs_dir), timeout, f"lxcfs mounting {lxcfs_dir}", first=0.005)


def ensure_subids(user: str, base: int, count: int) -> None:
    """/etc/subuid and /etc/subgid grant `user` the range base..base+count-1 (added if missing)."""
    want = f"{user}:{base}:{count}"
    for f in (Path("/etc/subuid"), Path("/etc/subgid")):
        lines = f.read_text().splitlines() if f.exists() else []
        if want in (line.strip() for line in lines):
            continue
        text = "\n".join(lines + [want]) + "\n"
        tmp = f.with_name(f.name + ".lxcloud-tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        os.replace(tmp, f)


def ensure_ip_forward() -> None:
    p = Path("/proc/sys/net/ipv4/ip_forward")
    if p.read_text().strip() != "1":
        p.write_text("1\n")


# Raised (never lowered) so that hundreds of containers fit: each systemd inside takes inotify
# instances and watches from the same per-user pool as the host (the kernel's default of 128
# instances stops the ~16th Debian container at boot), keys, map areas and neighbour entries.
SYSCTL_FLOORS: dict[str, int] = {
    "fs/inotify/max_user_instances": 1048576,
    "fs/inotify/max_user_watches": 1048576,
    "fs/inotify/max_queued_events": 1048576,
    "kernel/keys/maxkeys": 2000,
    "kernel/keys/maxbytes": 2000000,
    "vm/max_map_count": 262144,
    "net/ipv4/neigh/default/gc_thresh3": 8192,
    "net/ipv6/neigh/default/gc_thresh3": 8192,
    "fs/aio-max-nr": 524288,
    # each container takes 5 ptys (console + 4 ttys) from the 3,072 the default leaves to
    # non-initial devpts instances: the ~615th container would fail to allocate its console
    "kernel/pty/max": 262144,
}


def ensure_sysctls(floors: dict[str, int] | None = None) -> dict[str, int]:
    """Raises each kernel setting to at least its floor; returns the values in force."""
    out: dict[str, int] = {}
    for key, floor in (floors or SYSCTL_FLOORS).items():
        p = Path("/proc/sys") / key
        try:
            cur = int(p.read_text().split()[0])
            if cur < floor:
                p.write_text(f"{floor}\n")
                cur = floor
            out[key.replace("/", ".")] = cur
        except (OSError, ValueError):
            continue   # absent on this kernel or not writable here: not fatal
    return out


def _first_unsearchable(paths: list[Path], uid: int, gid: int) -> Path | None:
    """The first of `paths` (each an ancestor of the next) that host uid:gid cannot search.

    Asked of the kernel as that uid with no supplementary groups (as the containers' root is),
    so modes, owners and ACLs all count exactly as they will for lxc-start."""
    cp = run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "sh", "-c",
              'for d; do cd "$d" 2>/dev/null || { printf %s "$d"; exit 1; }; done', "sh",
              *map(str, paths)], check=False, timeout=30)
    if cp.returncode == 0:
        return None
    if not cp.stdout:
        raise DriverError(f"cannot check whether uid {uid} can reach {paths[-1]}",
                          command=["setpriv", f"--reuid={uid}", "sh"],
                          stderr=cp.stderr.decode(errors="replace"))
    return Path(cp.stdout.decode(errors="replace"))


def ensure_traversable(data_dir: Path, uid: int, gid: int) -> list[str]:
    """Lets the containers' mapped root (host uid:gid) traverse every directory down to the
    existing `data_dir`, which it crosses to reach each instance's root; returns what was granted.

    lxc-start enters the root filesystem as that uid: a data dir made by `mktemp -d` (0700), or
    one below /root (0700), stops every launch with "Could not access DIR". An ancestor that is
    not ours gets exactly one POSIX ACL entry, `setfacl -m u:UID:x` (search only, for that uid
    only); the data dir is ours and gets 0711, as LXD gives its own directories (search, no
    listing). Raises DriverError naming the directory and the fix when that cannot be done
    (setfacl missing, a filesystem without ACLs); the data dir is then left as it was.
    Idempotent: a second call grants nothing.
    """
    data_dir = data_dir.resolve()
    granted: list[str] = []
    ancestors = list(reversed(data_dir.parents))
    for _ in range(len(ancestors)):
        d = _first_unsearchable(ancestors, uid, gid)
        if d is None:
            break
        try:
            run(["setfacl", "-m", f"u:{uid}:x", str(d)], timeout=30)
        except DriverError as e:
            raise DriverError(
                f"containers (host uid {uid}) cannot traverse {d} on the way to the data dir "
                f"{data_dir}, and granting that by an ACL failed ({e}): run chmod o+x {d}, or use "
                f"a data dir (--data-dir) below directories anyone may traverse") from None
        granted.append(f"setfacl -m u:{uid}:x {d}")
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o011 != 0o011:
        data_dir.chmod(mode | 0o011)
        granted.append(f"chmod {mode | 0o011:o} {data_dir}")
    d = _first_unsearchable([*ancestors, data_dir], uid, gid)
    if d is not None:
        raise DriverError(f"containers (host uid {uid}) still cannot traverse {d} to reach the "
                          f"data dir {data_dir} (after: {'; '.join(granted) or 'nothing'}): "
                          f"make it searchable by that uid (setfacl -m u:{uid}:x {d})")
    for g in granted:
        log.info("so that containers (host uid %d) reach %s: %s", uid, data_dir, g)
    return granted


def _cgroup2_mount() -> tuple[str, list[str]] | None:
    """(mount point, options) of the host's cgroup2 hierarchy, None when there is none."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] == "cgroup2":
            return f[1], f[3].split(",")
    return None


def ensure_cgroup_favordynmods() -> bool:
    """Make moving a process into a cgroup cheap: with `favordynmods` (Linux >= 6.0) the kernel
    no longer waits for an RCU grace period on each migration once none happened for a while. Each
    lxc-start and lxc-attach moves its process into every hierarchy, and without it the first one
    after a quiet moment pays ~15 ms (an attach right after a start is 8 ms, 20 ms later 24 ms).
    The flag is the kernel's, for the whole host; forks and exits cost a little more for it.
    Returns whether it is on; an older kernel refusing it is not fatal."""
    found = _cgroup2_mount()
    if found is None:
        return False
    mountpoint, options = found
    if "favordynmods" in options:
        return True
    # a remount sets the hierarchy's flags from the options given: keep the ones it has
    cp = run(["mount", "-o", ",".join(["remount", *options, "favordynmods"]), mountpoint],
             check=False)
    if cp.returncode != 0:
        log.warning("cgroup2 at %s does not take favordynmods (kernel too old?): %s", mountpoint,
                    cp.stderr.decode(errors="replace").strip())
        return False
    return True


def prepare_host(settings: Settings) -> dict[str, object]:
    """Make this host ready to run the containers of the cloud in settings.data_dir (idempotent,
    before anything is launched); return host_facts()."""
    if os.geteuid() != 0:
        raise DriverError("the node agent must run as root")
    if not Path("/dev/fuse").exists():
        raise DriverError("/dev/fuse is missing: load the fuse module")
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    ensure_traversable(settings.data_dir, settings.idmap_base, settings.idmap_base)
    ensure_subids("root", settings.idmap_base, settings.idmap_count)
    ensure_ip_forward()
    ensure_sysctls()
    ensure_cgroup_favordynmods()
    ensure_lxcfs(Path(settings.lxcfs_dir))
    return host_facts(settings)


def _cgroup_version() -> int:
    if Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        return 1
    return 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1


def _cgroup_layout() -> str:
    if _cgroup_version() == 2:
        return "unified"
    return "hybrid" if Path("/sys/fs/cgroup/unified/cgroup.controllers").exists() else "legacy"


def _lxc_version() -> str:
    try:
        return run(["lxc-start", "--version"], timeout=10).stdout.decode().strip()
    except DriverError:
        return ""


def host_facts(settings: Settings | None = None) -> dict[str, object]:
    """What this host is: cpus, memory, kernel, cgroup layout, lxc version, lxcfs state."""
    meminfo = Path("/proc/meminfo").read_text()
    m = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    lxcfs_dir = Path(settings.lxcfs_dir) if settings else Path("/var/lib/lxcfs")
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count() or 1,
        "memory": int(m.group(1)) * 1024 if m else 0,
        "kernel": platform.release(),
        "architecture": platform.machine(),
        "cgroup_version": _cgroup_version(),
        "cgroup_layout": _cgroup_layout(),
        "memsw": Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists(),
        "lxc_version": _lxc_version(),
        "lxcfs_running": lxcfs_mounted(lxcfs_dir),
        "fuse": Path("/dev/fuse").exists(),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1",
        "cgroup_favordynmods": "favordynmods" in (_cgroup2_mount() or ("", []))[1],
    }
