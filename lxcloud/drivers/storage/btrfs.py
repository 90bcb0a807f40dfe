"""The "btrfs" pool: a read-only subvolume per image base, a writable snapshot of it per instance
root, volumes as subvolumes, snapshots as read-only btrfs snapshots; disk limits through qgroups
(simple quotas where the kernel has them, kernel 6.7+; full qgroups otherwise).

Layout under the pool's path (plain directories of one subvolume, so that a subvolume made in
tmp/ renames into place: rename(2) cannot move a subvolume into another subvolume):
  bases/<image_id>                          read-only subvolume, populated once
  instances/<id>                            writable snapshot of its base: the root (kind "dir")
  volumes/<vol>                             a subvolume
  snapshots/root|volume/<target>/<snap>     read-only snapshots
  locks/  tmp/                              flocks; subvolumes being made, renamed when whole

PoolSpec(size > 0, source ""): a loop-backed btrfs file beside the path (loop.py), mounted at
the path. source a block device: mounted at the path (formatted first only when it holds no
filesystem at all). source a directory: the pool lives in that existing btrfs directory.
source "" and size 0: the path's own filesystem, which must be btrfs. ensure() enables quotas
on a filesystem that has none (simple ones where it can): filesystem-wide, on a given one too.

Limits: each root and volume is a level-1 qgroup (1/N, its id in the subvolume's xattr
trusted.lxcloud.qgroup, which snapshots carry and a container cannot touch) limited on its
exclusive bytes, with the disk's subvolume as a member. With simple quotas an extent is charged
to the subvolume that wrote it for as long as anything references it, so a disk holds what it
wrote itself (not its base's shared extents, as the dir pool counts an overlay's upper layer),
including what its snapshots still keep; a restore makes a new subvolume that joins the same
qgroup, so snapshot-and-restore cannot reset the count; a subvolume made inside a root joins
it too (simple quotas inherit the parent's qgroups), and the LXC driver refuses the ioctls that
make one anyway. A clone is a disk of its own: what it shares with its source stays charged to
the source. Without simple quotas (kernel < 6.7) full qgroups are used the same way (exclusive:
what no other subvolume shares). `df` inside shows the pool's filesystem, not the limit (statfs
knows no qgroups): caps say so (`quota_visible=False`, `quota_note`). Usage figures are the
qgroups' (/sys/fs/btrfs/<fsid>/qgroups) after one transaction commit, never a tree walk.

Measured here (kernel 6.18, loop-backed, simple quotas): a root is one snapshot, 4-7 ms and
~68 KiB of pool metadata whether the base holds 8 MiB or 256 MiB; root_usage 0.2-0.8 ms.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import struct
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import btrfsutil

from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import Conflict, DriverError, InUse, InvalidInput, NotFound, Unsupported
from lxcloud.core.instance import Disk
from lxcloud.core.proc import run
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.storage import loop
from lxcloud.drivers.storage.base import (
    PoolSpec,
    PoolUsage,
    Populate,
    SnapshotOf,
    check_id,
    pool_lock,
    root_source,
    snapshots_dir,
    walk_usage,
)
from lxcloud.drivers.storage.quota import fmt_bytes

MKFS = ("mkfs.btrfs", "-q")
SUBDIRS = ("bases", "instances", "volumes", "snapshots", "locks", "tmp")
QUOTA_NOTE_DF = ("btrfs qgroups limit each disk, but statfs knows nothing of them: `df` inside "
                 "an instance shows the pool's filesystem, not its limit")

# --- btrfs ioctls that python3-btrfsutil (6.2) does not offer (linux/btrfs.h)


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (0x94 << 8) | nr


_IOC_QUOTA_CTL = _ioc(3, 40, 16)        # _IOWR(.., 40, struct btrfs_ioctl_quota_ctl_args)
_IOC_QGROUP_ASSIGN = _ioc(1, 41, 24)    # _IOW(.., 41, struct btrfs_ioctl_qgroup_assign_args)
_IOC_QGROUP_CREATE = _ioc(1, 42, 16)    # _IOW(.., 42, struct btrfs_ioctl_qgroup_create_args)
_IOC_QGROUP_LIMIT = _ioc(2, 43, 48)     # _IOR(.., 43, struct btrfs_ioctl_qgroup_limit_args)
_IOC_FS_INFO = _ioc(2, 31, 1024)        # _IOR(.., 31, struct btrfs_ioctl_fs_info_args)
_QUOTA_CTL_ENABLE = 1
_QUOTA_CTL_ENABLE_SIMPLE = 4
_LIMIT_MAX_EXCL = 2
_CLEAR = (1 << 64) - 1                  # a limit of "none"
_LEVEL1 = 1 << 48                       # qgroup id 1/N
GROUP_XATTR = "trusted.lxcloud.qgroup"  # out of reach of an unprivileged container

# The LXC driver refuses the ioctls that make a subvolume inside an instance (lxc.py,
# BTRFS_SUBVOL_IOCTLS, through seccomp): with full qgroups one would be outside the disk's limit.

F = TypeVar("F", bound=Callable[..., Any])


def _host(fn: F) -> F:
    """The host refusing (a full pool, a btrfs call failing) is a DriverError naming the step."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except btrfsutil.BtrfsUtilError as e:
            raise DriverError(f"{fn.__name__.replace('_', ' ')}: {e}",
                              errno=e.errno) from e
        except OSError as e:
            raise DriverError(f"{fn.__name__.replace('_', ' ')}: {e}") from e
    return cast(F, wrapper)


def _ioctl(path: Path, request: int, arg: bytes) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return cast(bytes, fcntl.ioctl(fd, request, arg))
    finally:
        os.close(fd)


def fsid(path: Path) -> str:
    """The filesystem's UUID holding `path` (its directory name under /sys/fs/btrfs)."""
    out = _ioctl(path, _IOC_FS_INFO, bytes(1024))
    return str(uuid.UUID(bytes=out[16:32]))


def is_btrfs(path: Path) -> bool:
    try:
        btrfsutil.subvolume_id(str(path))
    except btrfsutil.BtrfsUtilError as e:
        if e.errno == errno.ENOTTY:
            return False
        raise
    return True


def set_limit(pool: Path, group: int, size: int) -> None:
    """The qgroup `group` may hold at most `size` exclusive bytes (0: no limit)."""
    arg = struct.pack("=QQQQQQ", group, _LIMIT_MAX_EXCL, 0, size or _CLEAR, 0, 0)
    try:
        _ioctl(pool, _IOC_QGROUP_LIMIT, arg)
    except OSError as e:
        raise DriverError(f"cannot limit qgroup {group >> 48}/{group & (_LEVEL1 - 1)} to "
                          f"{fmt_bytes(size)}: {e.strerror}", errno=e.errno) from e


def _qgroup_name(group: int) -> str:
    return f"{group >> 48}_{group & (_LEVEL1 - 1)}"


def _blkid_type(device: str) -> str:
    """The filesystem type on `device`, "" when it holds none (blkid exits 2)."""
    cp = run(["blkid", "-p", "-o", "value", "-s", "TYPE", device], check=False)
    if cp.returncode not in (0, 2):
        raise DriverError(f"cannot probe {device}", stderr=cp.stderr.decode(errors="replace"))
    return cp.stdout.decode().strip()


def _purge(path: Path) -> None:
    """Remove `path` and everything below it, subvolumes included. Missing: no-op."""
    try:
        if btrfsutil.is_subvolume(str(path)):
            btrfsutil.delete_subvolume(str(path), recursive=True)
            return
    except FileNotFoundError:
        return
    except btrfsutil.BtrfsUtilError as e:
        if e.errno == errno.ENOENT:
            return
        if e.errno != errno.ENOTTY:     # not on btrfs at all: a plain tree
            raise
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    for child in list(path.iterdir()):
        _purge(child)
    path.rmdir()


class BtrfsPool:
    """A StorageDriver over a btrfs filesystem: copy-on-write through snapshots."""

    name = "btrfs"

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self.device = spec.source if spec.source.startswith("/dev/") else ""
        self.loop_backed = spec.size > 0 and not spec.source
        self.path = Path(spec.source) if spec.source and not self.device else Path(spec.path)
        self.quota_mode = ""            # "squota" | "qgroup" once ensure() enabled quotas
        self._fsid = ""
        self.caps = StorageCaps(copy_on_write=True, snapshots=True, cow_snapshots=True,
                                volumes=True,
                                quota_note="the pool is not made real yet (ensure)")

    # --- the pool
    @_host
    def ensure(self) -> None:
        if self.loop_backed:
            loop.ensure_loop_fs(self.path, self.spec.size, MKFS)
        elif self.device:
            self._mount_device()
        elif self.spec.source and not self.path.is_dir():
            raise InvalidInput(f"the pool's source {self.path} is not a directory")
        else:
            there = next(p for p in (self.path, *self.path.parents) if p.exists())
            if is_btrfs(there):         # else refused below, with nothing made
                self.path.mkdir(parents=True, exist_ok=True)
        self._fsid = ""                 # a new filesystem after a teardown
        if not self.path.is_dir() or not is_btrfs(self.path):
            raise InvalidInput(f"{self.path} is not on a btrfs filesystem: give the pool a size "
                               "(a loop-backed btrfs file), a block device or a btrfs directory")
        for sub in SUBDIRS:
            (self.path / sub).mkdir(exist_ok=True)
        # The containers' mapped root (not root on the host) must traverse to its root.
        for p in (self.path, self.path / "instances", self.path / "volumes"):
            p.chmod(0o711)
        note = ""
        try:
            self.quota_mode = self._enable_quota()
        except OSError as e:
            note = f"btrfs quotas cannot be enabled here ({e.strerror}): disks are not limited"
        if self.quota_mode == "qgroup":
            note = ("full qgroups (this kernel has no simple quotas); " + QUOTA_NOTE_DF)
        elif self.quota_mode:
            note = QUOTA_NOTE_DF
        quota = bool(self.quota_mode)
        self._reap_qgroups()            # those that emptied since the last deletion
        self.caps = StorageCaps(copy_on_write=True, quota=quota, quota_note=note,
                                quota_visible=False, online_resize=quota, snapshots=True,
                                cow_snapshots=True, volumes=True)

    def _mount_device(self) -> None:
        if loop.is_mounted(self.path):
            return
        if not Path(self.device).is_block_device():
            raise InvalidInput(f"the pool's source {self.device} is not a block device")
        fstype = _blkid_type(self.device)
        if fstype not in ("", "btrfs"):
            raise InvalidInput(f"{self.device} holds a {fstype} filesystem: the btrfs pool "
                               "formats only an empty device")
        if not fstype:
            run([*MKFS, self.device], timeout=120)
        self.path.mkdir(parents=True, exist_ok=True)
        loop.mount_fs(self.device, self.path, "btrfs")

    def _qgroups(self) -> Path:
        if not self._fsid:
            self._fsid = fsid(self.path)
        return Path("/sys/fs/btrfs") / self._fsid / "qgroups"

    def _enable_quota(self) -> str:
        """Quotas on the filesystem (simple ones where the kernel has them): their mode."""
        qg = self._qgroups()
        if not qg.is_dir():
            try:
                _ioctl(self.path, _IOC_QUOTA_CTL, struct.pack("=QQ", _QUOTA_CTL_ENABLE_SIMPLE, 0))
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                _ioctl(self.path, _IOC_QUOTA_CTL, struct.pack("=QQ", _QUOTA_CTL_ENABLE, 0))
        mode = qg / "mode"
        return mode.read_text().strip() if mode.exists() else "qgroup"

    @_host
    def teardown(self) -> None:
        if self.loop_backed:
            if self.path.exists() or loop.image_of(self.path).exists():
                loop.teardown_loop_fs(self.path)
            return
        if self.device:
            if loop.is_mounted(self.path):
                self._purge_pool()
                loop.umount(self.path)
            loop.remove_dir(self.path, f"the pool's mount point {self.path}")
            return
        if not self.path.exists():
            return
        self._purge_pool()
        if not self.spec.source:
            self.path.rmdir()

    def _purge_pool(self) -> None:
        for sub in SUBDIRS:
            _purge(self.path / sub)

    def usage(self) -> PoolUsage:
        st = os.statvfs(self.path)
        return PoolUsage(capacity=st.f_blocks * st.f_frsize,
                         used=(st.f_blocks - st.f_bfree) * st.f_frsize,
                         free=st.f_bavail * st.f_frsize)

    # --- qgroups: each root and volume is a level-1 qgroup holding its subvolumes (the one in
    # use and those it replaced on a restore), so that what an older subvolume wrote and a
    # snapshot still holds stays charged to the disk (simple quotas charge an extent to the
    # subvolume that wrote it); its id is in an xattr of the subvolume, which snapshots carry.
    def _group(self, subvolume: Path) -> int:
        """The disk's qgroup (1/N) of a root's or volume's subvolume."""
        try:
            return int(os.getxattr(subvolume, GROUP_XATTR))
        except OSError as e:
            if e.errno != errno.ENODATA:
                raise
        return self._new_group(subvolume, 0)       # one made before groups (none yet)

    def _new_group(self, subvolume: Path, size: int) -> int:
        """A new qgroup for the disk whose (writable) subvolume this is, limited to `size`."""
        sid = btrfsutil.subvolume_id(str(subvolume))
        group = _LEVEL1 | sid
        with self._lock("qgroups"):     # an empty new group is not reaped before it has a member
            try:
                _ioctl(self.path, _IOC_QGROUP_CREATE, struct.pack("=QQ", 1, group))
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
            self._join(subvolume, group)
        set_limit(self.path, group, size)
        return group

    def _join(self, subvolume: Path, group: int) -> None:
        """The subvolume becomes a member of the disk's qgroup; its xattr is written first,
        while the write is still charged to the subvolume alone (the disk may be full)."""
        want = str(group).encode()
        try:
            have = os.getxattr(subvolume, GROUP_XATTR)
        except OSError as e:
            if e.errno != errno.ENODATA:
                raise
            have = b""
        if have != want:
            os.setxattr(subvolume, GROUP_XATTR, want)
        sid = btrfsutil.subvolume_id(str(subvolume))
        try:
            _ioctl(self.path, _IOC_QGROUP_ASSIGN, struct.pack("=QQQ", 1, sid, group))
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise

    def _group_value(self, subvolume: Path, name: str) -> int:
        return int((self._qgroups() / _qgroup_name(self._group(subvolume)) / name).read_text())

    def _used(self, subvolume: Path) -> int:
        """Bytes the disk holds of its own (its qgroup's exclusive figure, committed); without
        quotas a walk, which cannot tell its own extents from its base's."""
        if not self.quota_mode:
            return sum(walk_usage(subvolume))
        btrfsutil.sync(str(self.path))      # the figures are those of the last commit
        return self._group_value(subvolume, "exclusive")

    def _limit(self, subvolume: Path) -> int:
        return self._group_value(subvolume, "max_exclusive") if self.quota_mode else 0

    def _set_limit(self, subvolume: Path, size: int) -> None:
        """A new disk's subvolume gets a qgroup of its own, limited to `size`."""
        if self.quota_mode:
            self._new_group(subvolume, size)

    def _resize(self, subvolume: Path, size: int, what: str) -> None:
        if not self.quota_mode:
            raise Unsupported(f"this pool cannot limit {what}: {self.caps.quota_note}")
        if size < 0:
            raise InvalidInput("a size cannot be negative")
        if size:
            used = self._used(subvolume)
            if used > size:
                raise InvalidInput(f"{what} uses {fmt_bytes(used)}: it cannot be limited to "
                                   f"{fmt_bytes(size)}")
        set_limit(self.path, self._group(subvolume), size)

    def _reap_qgroups(self) -> None:
        """Remove the empty qgroups of subvolumes that are gone (a base's, kept while roots
        shared its extents) and of disks that are gone (no member left): best effort, never
        one of a live subvolume (the kernel also refuses a qgroup with members)."""
        if not self.quota_mode:
            return
        try:
            entries = sorted(self._qgroups().glob("[01]_*"))   # subvolumes' first
        except OSError:
            return
        with self._lock("qgroups"):
            self._reap(entries)

    def _reap(self, entries: list[Path]) -> None:
        for q in entries:
            level, sid = (int(x) for x in q.name.split("_"))
            try:
                if sid < 256 or int((q / "exclusive").read_text()) \
                        or int((q / "referenced").read_text()):
                    continue
                if level == 0:
                    try:
                        btrfsutil.subvolume_path(str(self.path), sid)
                        continue                             # alive
                    except btrfsutil.BtrfsUtilError as e:
                        if e.errno != errno.ENOENT:
                            continue
                _ioctl(self.path, _IOC_QGROUP_CREATE,
                       struct.pack("=QQ", 0, (level << 48) | sid))
            except OSError:
                continue

    # --- subvolumes made whole in tmp/, then renamed into place
    def _tmp(self, what: str) -> Path:
        return self.path / "tmp" / f"{what}-{uuid.uuid4().hex[:12]}"

    def _lock(self, name: str) -> AbstractContextManager[None]:
        return pool_lock(self.path, name)

    def _make(self, dest: Path, build: Callable[[Path], None], what: str, *,
              read_only: bool = False) -> None:
        """`build(tmp)` makes a subvolume at tmp (and fills it); it is renamed to `dest` when
        whole, then made read-only if asked (a read-only subvolume cannot change its parent
        directory). On failure nothing is left: neither the subvolume nor its qgroup."""
        tmp = self._tmp(dest.name)
        try:
            build(tmp)
            os.rename(tmp, dest)
            tmp = dest
            if read_only:
                btrfsutil.set_subvolume_read_only(str(dest), True)
        except BaseException:
            try:
                _purge(tmp)
            finally:
                self._reap_qgroups()
            raise

    def _in_use(self, subvolume: Path, what: str) -> None:
        """InUse while another mount namespace (a running instance) mounts the subvolume or
        something below it."""
        users = mount_users(subvolume)
        if users:
            raise InUse(f"{what} is in use (process {users[0]} mounts it): stop it first",
                        pid=users[0])

    # --- bases
    def base_path(self, image_id: str) -> Path:
        return self.path / "bases" / check_id(image_id)

    def has_base(self, image_id: str) -> bool:
        return self.base_path(image_id).is_dir()

    @_host
    def create_base(self, image_id: str, populate: Populate) -> Path:
        """Populated once in a new subvolume, made read-only, renamed into place (atomic)."""
        base = self.base_path(image_id)
        if base.is_dir():
            return base
        with self._lock(image_id):
            if base.is_dir():       # another caller made it while we waited for the lock
                return base

            def build(tmp: Path) -> None:
                btrfsutil.create_subvolume(str(tmp))
                tmp.chmod(0o755)
                populate(tmp)
            self._make(base, build, f"the base of {image_id}", read_only=True)
        return base

    @_host
    def delete_base(self, image_id: str) -> None:
        base = self.base_path(image_id)
        with self._lock(image_id):
            _purge(base)    # a subvolume leaves the tree at once: never seen half-deleted
        self._reap_qgroups()

    # --- instance roots
    def instance_path(self, instance_id: str) -> Path:
        return self.path / "instances" / check_id(instance_id)

    def _root(self, instance_id: str) -> Path:
        p = self.instance_path(instance_id)
        if not p.is_dir():
            raise NotFound(f"instance root {instance_id} does not exist", resource="instance")
        return p

    @staticmethod
    def _rootfs(p: Path) -> RootfsSpec:
        return RootfsSpec(kind="dir", path=p)

    def _snapshot_into(self, src: Path, dest: Path, size: int, owner: tuple[int, int] | None,
                       what: str) -> None:
        """A new writable snapshot of `src` at `dest`, limited to `size`, its top directory
        owned by `owner` (None: as in `src`)."""
        if dest.exists():
            raise Conflict(f"{what} exists")

        def build(tmp: Path) -> None:
            btrfsutil.create_snapshot(str(src), str(tmp))
            if owner is not None:
                mode = tmp.stat().st_mode & 0o7777
                os.chown(tmp, *owner)
                tmp.chmod(mode)          # chown drops setuid/setgid bits
            self._set_limit(tmp, size)
        self._make(dest, build, what)

    @_host
    def create_root(self, instance_id: str, disk: Disk, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        image_id = root_source(disk)
        p = self.instance_path(instance_id)
        if p.is_dir():                              # idempotent: the limit is set again
            if self.quota_mode and self._limit(p) != disk.size:
                self._resize(p, disk.size, f"the root of {instance_id}")
            return self._rootfs(p)
        base = self.base_path(image_id)
        if not base.is_dir():
            raise NotFound(f"image {image_id} has no base in pool {self.path}", resource="image")
        self._snapshot_into(base, p, disk.size, (uid, gid), f"instance root {instance_id}")
        return self._rootfs(p)

    def has_root(self, instance_id: str) -> bool:
        return self.instance_path(instance_id).is_dir()

    def _delete(self, of: SnapshotOf, p: Path, target_id: str, what: str) -> None:
        if p.exists():
            try:
                self._in_use(p, what)
            except InUse as e:
                raise DriverError(f"cannot remove {what}: {e}") from e
            if self.quota_mode and btrfsutil.is_subvolume(str(p)):
                # removing a subvolume nested in a full disk reserves metadata in the disk's
                # qgroup (EDQUOT): the limit goes first, the disk goes anyway
                set_limit(self.path, self._group(p), 0)
            _purge(p)
        _purge(self._snapshots(of, target_id))
        self._reap_qgroups()

    @_host
    def delete_root(self, instance_id: str) -> None:
        self._delete(SnapshotOf.ROOT, self.instance_path(instance_id), instance_id,
                     f"the root of {instance_id}")

    @_host
    def root_usage(self, instance_id: str) -> int:
        """Bytes the root wrote of its own (its qgroup), not its base's shared extents."""
        return self._used(self._root(instance_id))

    @_host
    def resize_root(self, instance_id: str, size: int) -> None:
        self._resize(self._root(instance_id), size, f"the root of {instance_id}")

    @_host
    def clone_root(self, source_id: str, instance_id: str, disk: Disk, uid: int = 100000,
                   gid: int = 100000, snapshot: str | None = None) -> RootfsSpec:
        """A writable snapshot of the source (or of its snapshot); it keeps the source's
        ownership (one id map per host)."""
        src = self._root(source_id) if snapshot is None \
            else self._snapshot(SnapshotOf.ROOT, source_id, snapshot)
        p = self.instance_path(instance_id)
        if p.exists():
            raise Conflict(f"instance root {instance_id} exists", resource="instance")
        self._snapshot_into(src, p, disk.size, None, f"instance root {instance_id}")
        return self._rootfs(p)

    @_host
    def import_root(self, instance_id: str, disk: Disk, populate: Populate, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        p = self.instance_path(instance_id)
        if p.exists():
            raise Conflict(f"instance root {instance_id} exists", resource="instance")

        def build(tmp: Path) -> None:
            btrfsutil.create_subvolume(str(tmp))
            self._set_limit(tmp, disk.size)
            os.chown(tmp, uid, gid)
            tmp.chmod(0o755)
            populate(tmp)
        self._make(p, build, f"instance root {instance_id}")
        return self._rootfs(p)

    def root_tree(self, instance_id: str,
                  snapshot: str | None = None) -> AbstractContextManager[Path]:
        return self._tree(instance_id, snapshot)

    @contextmanager
    def _tree(self, instance_id: str, snapshot: str | None) -> Iterator[Path]:
        if snapshot is not None:
            yield self._snapshot(SnapshotOf.ROOT, instance_id, snapshot)   # read-only already
            return
        src = self._root(instance_id)
        view = self._tmp(f"tree-{instance_id}")
        try:
            btrfsutil.create_snapshot(str(src), str(view), read_only=True)
        except btrfsutil.BtrfsUtilError as e:
            raise DriverError(f"cannot make a view of the root of {instance_id}: {e}") from e
        try:
            yield view
        finally:
            _purge(view)
            self._reap_qgroups()

    # --- volumes
    def _volume(self, volume_id: str) -> Path:
        return self.path / "volumes" / check_id(volume_id)

    @_host
    def create_volume(self, volume_id: str, size: int, uid: int = 100000,
                      gid: int = 100000) -> Path:
        p = self._volume(volume_id)
        if p.is_dir():
            return p

        def build(tmp: Path) -> None:
            btrfsutil.create_subvolume(str(tmp))
            self._set_limit(tmp, size)
            os.chown(tmp, uid, gid)
            tmp.chmod(0o755)
        with self._lock(f"vol-{volume_id}"):
            if not p.is_dir():
                self._make(p, build, f"volume {volume_id}")
        return p

    def has_volume(self, volume_id: str) -> bool:
        return self._volume(volume_id).is_dir()

    def volume_path(self, volume_id: str) -> Path:
        p = self._volume(volume_id)
        if not p.is_dir():
            raise NotFound(f"volume {volume_id} does not exist", resource="volume")
        return p

    @_host
    def delete_volume(self, volume_id: str) -> None:
        self._delete(SnapshotOf.VOLUME, self._volume(volume_id), volume_id, f"volume {volume_id}")

    @_host
    def volume_usage(self, volume_id: str) -> int:
        return self._used(self.volume_path(volume_id))

    @_host
    def resize_volume(self, volume_id: str, size: int) -> None:
        self._resize(self.volume_path(volume_id), size, f"volume {volume_id}")

    @_host
    def clone_volume(self, source_id: str, volume_id: str, size: int,
                     snapshot: str | None = None, uid: int = 100000, gid: int = 100000) -> Path:
        src = self.volume_path(source_id) if snapshot is None \
            else self._snapshot(SnapshotOf.VOLUME, source_id, snapshot)
        p = self._volume(volume_id)
        if p.exists():
            raise Conflict(f"volume {volume_id} exists", resource="volume")
        self._snapshot_into(src, p, size, (uid, gid), f"volume {volume_id}")
        return p

    # --- snapshots
    def _target(self, of: SnapshotOf, target_id: str) -> Path:
        return self._root(target_id) if of is SnapshotOf.ROOT else self.volume_path(target_id)

    def _snapshots(self, of: SnapshotOf, target_id: str) -> Path:
        return snapshots_dir(self.path, of, target_id)

    def _snapshot_path(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> Path:
        return self._snapshots(of, target_id) / check_id(snapshot_id)

    def _snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> Path:
        p = self._snapshot_path(of, target_id, snapshot_id)
        if not p.is_dir():
            raise NotFound(f"snapshot {snapshot_id} of {target_id} does not exist",
                           resource="snapshot")
        return p

    @_host
    def create_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        src = self._target(of, target_id)
        dest = self._snapshot_path(of, target_id, snapshot_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(f"snap-{of}-{target_id}"):
            if dest.exists():
                raise Conflict(f"snapshot {snapshot_id} of {target_id} exists",
                               resource="snapshot")
            # made read-only where it stays: a snapshot appears whole or not at all
            btrfsutil.create_snapshot(str(src), str(dest), read_only=True)

    def has_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> bool:
        return self._snapshot_path(of, target_id, snapshot_id).is_dir()

    @_host
    def restore_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        """The target becomes a writable snapshot of the snapshot (with the target's limit);
        the old one is removed only once the new one is in place."""
        p = self._target(of, target_id)
        snap = self._snapshot(of, target_id, snapshot_id)
        what = f"the root of {target_id}" if of is SnapshotOf.ROOT else f"volume {target_id}"
        self._in_use(p, what)
        with self._lock(f"snap-{of}-{target_id}"):
            group = self._group(p) if self.quota_mode else 0
            new = self._tmp(f"restore-{target_id}")
            old = self._tmp(f"old-{target_id}")
            try:
                btrfsutil.create_snapshot(str(snap), str(new))
                if group:       # the same disk: what the old one wrote stays charged to it
                    self._join(new, group)
                os.rename(p, old)
            except BaseException:
                _purge(new)
                self._reap_qgroups()
                raise
            try:
                os.rename(new, p)
            except BaseException:
                os.rename(old, p)
                _purge(new)
                raise
            _purge(old)
        self._reap_qgroups()

    @_host
    def delete_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        p = self._snapshot_path(of, target_id, snapshot_id)
        if p.exists():
            _purge(p)
            self._reap_qgroups()

    @_host
    def import_snapshot(self, instance_id: str, snapshot_id: str, populate: Populate) -> None:
        root = self._root(instance_id)
        dest = self._snapshot_path(SnapshotOf.ROOT, instance_id, snapshot_id)
        if dest.exists():
            raise Conflict(f"snapshot {snapshot_id} of {instance_id} exists", resource="snapshot")
        dest.parent.mkdir(parents=True, exist_ok=True)
        st = root.stat()

        def build(tmp: Path) -> None:
            btrfsutil.create_subvolume(str(tmp))
            os.chown(tmp, st.st_uid, st.st_gid)
            tmp.chmod(0o755)
            populate(tmp)
        self._make(dest, build, f"snapshot {snapshot_id} of {instance_id}", read_only=True)


def _unescape(field: str) -> str:
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def _fs_key(path: Path) -> tuple[str, str]:
    """(major:minor in mountinfo, path of `path` from the filesystem's top) for a btrfs path:
    a subvolume's st_dev is its own, so the mount is found by its mount point instead."""
    resolved = str(Path(path).resolve())
    best: tuple[str, str, str] | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            parts, rest = left.split(), right.split()
            if len(parts) < 5 or not rest or rest[0] != "btrfs":
                continue
            mp = _unescape(parts[4])
            if (resolved == mp or resolved.startswith(mp.rstrip("/") + "/")) \
                    and (best is None or len(mp) >= len(best[1])):
                best = (parts[2], mp, _unescape(parts[3]))
    if best is None:
        raise DriverError(f"no mounted btrfs filesystem holds {path}")
    dev, mp, root = best
    rel = os.path.relpath(resolved, mp)
    inner = root.rstrip("/") + ("" if rel == "." else "/" + rel)
    return dev, inner or "/"


def mount_users(subvolume: Path) -> list[int]:
    """A process (its pid) in each other mount namespace that mounts `subvolume` or something
    below it (a running instance's root, a volume bind-mounted into one)."""
    dev, rel = _fs_key(subvolume)
    seen = {os.readlink("/proc/self/ns/mnt")}
    users = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
            if ns in seen:
                continue
            seen.add(ns)
            with open(f"/proc/{pid}/mountinfo") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.split(" - ")[0].split()
            if len(parts) >= 5 and parts[2] == dev:
                root = _unescape(parts[3])
                if root == rel or root.startswith(rel.rstrip("/") + "/"):
                    users.append(int(pid))
                    break
    return users
