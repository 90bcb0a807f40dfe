"""Mounts into and out of a running container's mount namespace (the kernel interface of hot-plug).

Attaching is LXD's forkmount technique: in the host's mount namespace take a detached copy of the
source (open_tree with OPEN_TREE_CLONE), enter the container init's mount namespace (setns), make
the target there and move the copy onto it (move_mount). setns into a mount namespace needs a
single-threaded caller and changes the caller's root for good, so it is done by a short-lived
helper process (`python -m lxcloud.drivers.compute.hotplug`), never in the agent itself.
Finding who holds a mount (`holders`) only reads /proc and runs in the caller.

open_tree, move_mount and mount_setattr have the same numbers on every architecture (they came
after the syscall tables were unified at 403).
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1
AT_RECURSIVE = 0x8000
AT_EMPTY_PATH = 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x1
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8
CLONE_NEWNS = 0x20000
HELPER_TIMEOUT = 30      # seconds; the helper does a handful of syscalls

# the helper's exit codes: what went wrong, for the caller to raise the right error
EXIT_INVALID = 2         # the target cannot be a mount point (a symlink, a file on the way)
EXIT_BUSY = 3            # umount without force: something still holds it


class HotplugError(Exception):
    """A failed hot-plug step; `invalid`: the target was at fault, `busy`: the mount is held."""

    def __init__(self, message: str, *, invalid: bool = False, busy: bool = False) -> None:
        super().__init__(message)
        self.invalid, self.busy = invalid, busy


@dataclass(frozen=True)
class Holder:
    """A process inside holding something under a mount: its command, its pid inside."""

    command: str
    pid: int

    def __str__(self) -> str:
        return f"{self.command} (pid {self.pid})"


def check_target(target: str) -> str:
    """`target` normalized (absolute, no `..`, no newline, not / itself); ValueError if it is not."""
    if not target.startswith("/"):
        raise ValueError(f"mount target {target!r} must be an absolute path")
    if any(c in target for c in "\n\r\0"):
        raise ValueError("mount target contains a newline or NUL")
    parts = [p for p in target.split("/") if p and p != "."]
    if ".." in parts:
        raise ValueError(f"mount target {target!r} must not contain '..'")
    if not parts:
        raise ValueError("the root directory cannot be a mount target")
    return "/" + "/".join(parts)


# --- /proc, read from the host (no namespace entered)
def _unescape(field: str) -> str:
    """A mountinfo path field: spaces, tabs, newlines and backslashes come octal-escaped."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_ids(pid: int | str, target: str) -> set[int]:
    """Ids of the mounts at or below `target` in process `pid`'s mount namespace (as it sees them)."""
    ids: set[int] = set()
    below = target.rstrip("/") + "/"
    try:
        lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ids
    for line in lines:
        fields = line.split(" ")
        point = _unescape(fields[4])
        if point == target or point.startswith(below):
            ids.add(int(fields[0]))
    return ids


def is_mounted(pid: int, target: str) -> bool:
    """Whether something is mounted at `target` in the mount namespace of process `pid`."""
    try:
        lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    except FileNotFoundError:
        return False
    return any(_unescape(line.split(" ")[4]) == target for line in lines)


def _mnt_id_of_fdinfo(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("mnt_id:"):
            return int(line.split()[1])
    return None


def _mnt_id_of_link(link: str) -> int | None:
    """The mount id of what a /proc magic link (cwd, root) points at."""
    try:
        fd = os.open(link, os.O_PATH)
    except OSError:
        return None
    try:
        return _mnt_id_of_fdinfo(Path(f"/proc/self/fdinfo/{fd}").read_text())
    finally:
        os.close(fd)


def _ns(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def _nspids(pid: int | str) -> list[int]:
    """`pid`'s numbers in each pid namespace it is in, the host's first."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(n) for n in line.split()[1:]]
    return [int(pid)]


def _holds(pid: str, ids: set[int]) -> bool:
    for link in ("cwd", "root"):
        if _mnt_id_of_link(f"/proc/{pid}/{link}") in ids:
            return True
    try:
        fds = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return False
    for fd in fds:
        try:
            mnt = _mnt_id_of_fdinfo(Path(f"/proc/{pid}/fdinfo/{fd}").read_text())
        except OSError:     # closed meanwhile
            continue
        if mnt in ids:
            return True
    return False


def holders(init_pid: int, target: str) -> list[Holder]:
    """The processes in the pid namespace of `init_pid` whose open files, working directory or
    root are on a mount at or below `target`, as each sees it in its own mount namespace (a
    service with a private one included). Their pids are the ones inside."""
    pidns = _ns(init_pid, "pid")
    if pidns is None:
        return []
    level = len(_nspids(init_pid)) - 1      # the container's pid namespace
    found: list[Holder] = []
    ids_by_ns: dict[int, set[int]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or _ns(pid, "pid") != pidns:
            continue
        mntns = _ns(pid, "mnt")
        if mntns is None:
            continue
        if mntns not in ids_by_ns:
            ids_by_ns[mntns] = _mount_ids(pid, target)
        ids = ids_by_ns[mntns]
        try:
            if ids and _holds(pid, ids):
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                nums = _nspids(pid)
                found.append(Holder(comm, nums[min(level, len(nums) - 1)]))
        except (FileNotFoundError, ProcessLookupError):
            continue          # it ended meanwhile
    return sorted(found, key=lambda h: h.pid)


# --- the helper's side: syscalls, inside the container's mount namespace
_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _open_tree(path: str, recursive: bool = True) -> int:
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return _check(_libc.syscall(SYS_OPEN_TREE, -100, path.encode(), flags), f"open_tree {path}")


def _set_readonly(fd: int) -> None:
    attr = _MountAttr(attr_set=MOUNT_ATTR_RDONLY)
    _check(_libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | AT_RECURSIVE,
                         ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr rdonly")


def _move_mount(fd: int, target_fd: int) -> None:
    _check(_libc.syscall(SYS_MOVE_MOUNT, fd, b"", target_fd, b"",
                         MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH), "move_mount")


def _enter_mntns(pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNS), "setns")
    finally:
        os.close(fd)
    os.chdir("/")


def _mkdir_as(name: str, dir_fd: int, uid: int, gid: int) -> None:
    """mkdir as the container's root (fsuid/fsgid): a filesystem mounted inside its user
    namespace (its overlay root) refuses inodes owned by ids it cannot map (EOVERFLOW)."""
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    try:
        os.mkdir(name, 0o755, dir_fd=dir_fd)
    except FileExistsError:         # made meanwhile, by someone inside
        pass
    finally:
        _libc.setfsuid(0)
        _libc.setfsgid(0)


def _walk(target: str, uid: int, gid: int, create: bool) -> int:
    """An fd of `target` in this mount namespace, every component opened without following a
    symlink (a tenant's link must not redirect the mount); missing directories made (owned by
    the container's root) when `create`."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("/", flags)
    try:
        for part in target.strip("/").split("/"):
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                _mkdir_as(part, fd, uid, gid)
                nfd = os.open(part, flags, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise HotplugError(f"{target} is not a directory inside the container "
                                       f"({part} is a symlink or a file)", invalid=True) from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _attach(pid: int, source: str, target: str, uid: int, gid: int, readonly: bool) -> None:
    tree = _open_tree(source)
    if readonly:
        _set_readonly(tree)
    src = os.fstat(tree)
    _enter_mntns(pid)
    fd = _walk(target, uid, gid, create=True)
    try:
        here = os.fstat(fd)
        if (here.st_dev, here.st_ino) == (src.st_dev, src.st_ino):
            return            # already mounted there
        _move_mount(tree, fd)
    finally:
        os.close(fd)
        os.close(tree)


def _detach(pid: int, target: str, force: bool) -> None:
    _enter_mntns(pid)
    try:
        os.close(_walk(target, 0, 0, create=False))
    except FileNotFoundError:
        return                # nothing there: nothing mounted
    flags = UMOUNT_NOFOLLOW | (MNT_DETACH if force else 0)
    if _libc.umount2(target.encode(), flags) < 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL:
            return            # not a mount point
        if err == errno.EBUSY:
            raise HotplugError(f"{target} is busy inside the container", busy=True)
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def main(argv: Sequence[str]) -> int:
    """attach PID SOURCE TARGET UID GID rw|ro  |  detach PID TARGET force|noforce  |
    sync-nics WANTED.json (as the start-host hook: LXC_PID in the environment)"""
    try:
        if argv[0] == "attach":
            pid, source, target, uid, gid, mode = argv[1:7]
            _attach(int(pid), source, check_target(target), int(uid), int(gid), mode == "ro")
        elif argv[0] == "detach":
            pid, target, force = argv[1:4]
            _detach(int(pid), check_target(target), force == "force")
        elif argv[0] == "sync-nics":
            return _sync_main(argv[1])
        else:
            raise ValueError(f"unknown action {argv[0]!r}")
    except HotplugError as e:
        sys.stderr.write(json.dumps({"error": str(e)}) + "\n")
        return EXIT_BUSY if e.busy else EXIT_INVALID if e.invalid else 1
    except (OSError, ValueError, IndexError) as e:
        sys.stderr.write(json.dumps({"error": str(e)}) + "\n")
        return EXIT_INVALID if isinstance(e, ValueError) else 1
    return 0


# --- the caller's side
def _helper(args: Sequence[str]) -> None:
    """Run the helper; HotplugError with its message when it fails."""
    env = dict(os.environ)
    top = str(Path(__file__).resolve().parents[3])      # the dir holding the lxcloud package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (top, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "lxcloud.drivers.compute.hotplug", *args]
    try:
        cp = subprocess.run(argv, capture_output=True, timeout=HELPER_TIMEOUT, env=env,
                            stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise HotplugError(f"the hot-plug helper timed out after {HELPER_TIMEOUT}s") from None
    if cp.returncode == 0:
        return
    text = cp.stderr.decode(errors="replace").strip()
    try:
        message = json.loads(text.splitlines()[-1])["error"]
    except (ValueError, KeyError, IndexError, TypeError):
        message = text[-2000:] or f"exit {cp.returncode}"
    raise HotplugError(message, invalid=cp.returncode == EXIT_INVALID,
                       busy=cp.returncode == EXIT_BUSY)


def attach(init_pid: int, source: Path, target: str, *, uid: int, gid: int,
           readonly: bool = False) -> None:
    """`source` (a host directory) mounted at `target` in the mount namespace of `init_pid`,
    the directory made there if missing (owned by uid:gid). Already mounted there: no-op."""
    _helper(["attach", str(init_pid), str(source), target, str(uid), str(gid),
             "ro" if readonly else "rw"])


def detach(init_pid: int, target: str, *, force: bool = False) -> None:
    """Unmount `target` in the mount namespace of `init_pid` (lazily when `force`); HotplugError
    with `busy` when it is still held. Not mounted: no-op."""
    _helper(["detach", str(init_pid), target, "force" if force else "noforce"])



# --- NICs: netlink, from the host (pyroute2; no namespace entered by this process: a socket
# opened in the container's network namespace, by pyroute2's short-lived child, does the inside)
_EEXIST, _ENODEV = 17, 19


@dataclass(frozen=True)
class NicPlug:
    """What plug_nic needs of a NIC: its host port (a veth's host end; "" for a macvlan), where
    that plugs in (`link`: the bridge, or the macvlan's parent), and its identity inside."""

    name: str                       # inside: eth1
    mac: str
    mtu: int = 1500
    port: str = ""                  # veth: the host end's name
    link: str = ""                  # veth: the bridge; macvlan: the parent
    macvlan_mode: str = ""          # set: a macvlan device, not a veth pair
    address: str | None = None      # "10.0.0.5/24", None: up and unconfigured
    broadcast: str | None = None
    gateway: str | None = None      # the default route through it (the first NIC only)
    ingress: int = 0                # its limits (bits/s; veth only)
    egress: int = 0


def _nl(netns: str | None = None) -> Any:
    from pyroute2 import IPRoute  # imported late: importing pyroute2 costs ~100 ms

    return IPRoute(netns=netns) if netns else IPRoute()


def _inside(init_pid: int) -> Any:
    return _nl(f"/proc/{init_pid}/ns/net")


def _lookup(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _temp_name() -> str:
    return "lxn" + os.urandom(5).hex()


def nic_present(init_pid: int, name: str) -> bool:
    """Whether the container of `init_pid` has an interface `name`."""
    ipr = _inside(init_pid)
    try:
        return _lookup(ipr, name) is not None
    finally:
        ipr.close()


def plug_nic(init_pid: int, nic: NicPlug, *, netns: str | None = None) -> None:
    """A new interface in the running container of `init_pid`, as liblxc makes one at start:
    a veth pair (host end `nic.port` in the bridge `nic.link`, up) or a macvlan on the parent
    `nic.link`; the container's end renamed `nic.name`, its MAC and MTU set, up, and configured
    when `nic.address` is set (with the default route when `nic.gateway` is). HotplugError
    (invalid) when the container already has `nic.name` or the host the port; the host is left
    as it was on any failure. `netns`: where the host side is (a named network namespace)."""
    host = _nl(netns)
    temp = _temp_name()
    made = ""
    try:
        try:
            link = _lookup(host, nic.link)
            if link is None:
                raise HotplugError(f"{nic.link} does not exist on the host", invalid=True)
            if nic.macvlan_mode:
                host.link("add", ifname=temp, kind="macvlan", link=link,
                          macvlan_mode=nic.macvlan_mode)
                made = temp
            else:
                if _lookup(host, nic.port) is not None:
                    raise HotplugError(f"host port {nic.port} already exists", invalid=True)
                host.link("add", ifname=nic.port, kind="veth", peer={"ifname": temp})
                made = nic.port
                port = _lookup(host, nic.port)
                host.link("set", index=port, master=link, mtu=nic.mtu)
                host.link("set", index=port, state="up")
            if nic_present(init_pid, nic.name):
                raise HotplugError(f"the container already has an interface {nic.name}",
                                   invalid=True)
            peer = _lookup(host, temp)
            host.link("set", index=peer, mtu=nic.mtu, address=nic.mac)
            host.link("set", index=peer, net_ns_pid=init_pid)
            if nic.macvlan_mode:
                made = ""       # inside now: it goes with the container
            _configure_inside(init_pid, temp, nic)
        except HotplugError:
            raise
        except Exception as e:   # pyroute2's NetlinkError and friends
            raise HotplugError(f"plugging {nic.name}: {e}") from None
    except BaseException:
        if made:
            _delete(host, made)
        else:           # a macvlan moved inside: found by its MAC (renamed or not)
            _unplug_inside(init_pid, mac=nic.mac)
        raise
    finally:
        host.close()


def _configure_inside(init_pid: int, temp: str, nic: NicPlug) -> None:
    ipr = _inside(init_pid)
    try:
        idx = _lookup(ipr, temp)
        if idx is None:
            raise HotplugError(f"{temp} did not arrive in the container")
        ipr.link("set", index=idx, ifname=nic.name)
        ipr.link("set", index=idx, state="up")
        if nic.address:
            addr, _, prefix = nic.address.partition("/")
            kw = {"broadcast": nic.broadcast} if nic.broadcast else {}
            ipr.addr("add", index=idx, address=addr, prefixlen=int(prefix or 32), **kw)
            if nic.gateway:
                ipr.route("replace", dst="0.0.0.0/0", gateway=nic.gateway, oif=idx)
    finally:
        ipr.close()


def _delete(ipr: Any, name: str) -> bool:
    idx = _lookup(ipr, name)
    if idx is None:
        return False
    try:
        ipr.link("del", index=idx)
    except Exception as e:
        if getattr(e, "code", None) != _ENODEV:
            raise
    return True


def _unplug_inside(init_pid: int, name: str = "", mac: str = "") -> None:
    """Delete the container's interface `name`, or the one with the MAC `mac`."""
    try:
        ipr = _inside(init_pid)
    except Exception:   # the container is gone: so is what was inside
        return
    try:
        if mac:
            for link in ipr.get_links():
                if (link.get_attr("IFLA_ADDRESS") or "").lower() == mac.lower():
                    name = link.get_attr("IFLA_IFNAME")
        if name:
            _delete(ipr, name)
    finally:
        ipr.close()


def unplug_nic(init_pid: int | None, name: str, port: str = "", *,
               netns: str | None = None) -> None:
    """The container's interface `name` removed: its host port `port` deleted (which takes the
    container's end with it), or, for a device with no host end (a macvlan), the interface
    deleted inside. Already gone: no-op."""
    try:
        if port:
            host = _nl(netns)
            try:
                if _delete(host, port):
                    return
            finally:
                host.close()
        if init_pid is not None:
            _unplug_inside(init_pid, name)
    except Exception as e:
        raise HotplugError(f"unplugging {name}: {e}") from None


# --- after a reboot from inside: liblxc's monitor re-makes the NICs of the config it started
# with, so a NIC hot-plugged since is missing and one detached since is back. The container's
# start-host hook (`lxc.hook.start-host`, its script rewritten by the driver) runs `sync` then.
ETH = re.compile(r"eth\d{1,3}")


def write_wanted(path: Path, nics: Sequence[NicPlug]) -> None:
    """The NICs a container must have, for `sync` (written beside its config)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([dataclasses.asdict(n) for n in nics]))
    os.replace(tmp, path)


def sync_nics(init_pid: int, wanted: Sequence[NicPlug], *, netns: str | None = None) -> list[str]:
    """The container's ethN interfaces made to be `wanted`: the missing plugged (with their
    limits), the unwanted removed (with their host ports). What it changed, as "+eth1"/"-eth2"."""
    from lxcloud.drivers.network.ratelimit import RateLimiter, Rates

    ipr = _inside(init_pid)
    try:
        have = {str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}
    finally:
        ipr.close()
    names = {n.name for n in wanted}
    done = []
    for name in sorted(n for n in have if ETH.fullmatch(n) and n not in names):
        _unplug_inside(init_pid, name)
        done.append(f"-{name}")
    for nic in wanted:
        if nic.name in have:
            continue
        plug_nic(init_pid, nic, netns=netns)
        if nic.port and (nic.ingress or nic.egress):
            RateLimiter(netns).apply(nic.port, Rates(nic.ingress, nic.egress))
        done.append(f"+{nic.name}")
    return done


def _sync_main(wanted_file: str) -> int:
    pid = int(os.environ["LXC_PID"])
    wanted = [NicPlug(**d) for d in json.loads(Path(wanted_file).read_text())]
    sync_nics(pid, wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
