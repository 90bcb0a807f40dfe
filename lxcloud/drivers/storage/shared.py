"""The "shared" pool: a directory every host mounts (CephFS, NFS, GlusterFS…), so that an
instance's root, its volumes and their snapshots can be used from any host without copying
(`caps.remote`).

Everything lives in the shared directory and nothing but ids is stored in it (no host paths, no
loop devices): a second host mounting the same directory sees the same pool.

  bases/<image_id>/            unpacked once, read-only by convention (the overlay's lower dir)
  empty/                       the lower dir of roots imported whole
  instances/<id>/              one directory per root, its limit on it (below)
      upper/ work/             the overlay's upper and work dirs (liblxc: dirname(upper)/work)
      lower                    the image id the root is a layer over ("" when imported whole)
  volumes/<vol>/               a volume's top directory, its limit on it
  snapshots/<root|volume>/<target>/<snap>/   snapshots kept as copies (below)
  locks/ tmp/                  flocks (shared: the filesystem's own locks); scratch

Disk limits. On CephFS (found by its `ceph.dir.rbytes` xattr) each root and volume directory
carries `ceph.quota.max_bytes`; writing past it fails with EDQUOT ("Disk quota exceeded"). The
clients enforce it and learn usage from the MDS with a lag, so a writer may overshoot by a few
MiB before the error. Elsewhere there is no quota mechanism the pool can use: `caps.quota` is
False and `caps.quota_note` says so; sizes are then ignored and resizes are Unsupported.

`df /` inside. Overlayfs reports its upper dir's filesystem, and a ceph-fuse client reports the
quota of its mount's root as the size (`client quota df`). So on CephFS through ceph-fuse each
root's directory is mounted on this host with its own ceph-fuse of that subtree
(`ceph-fuse -r /…/instances/<id> <local>/roots/<id>`), and the root's upper dir is taken from
there: `df /` inside shows the root's limit. The subtree mounts are host-local (`local`, default
/run/lxcloud/shared/<pool>-<hash>), made again by whoever uses the root (create_root is
idempotent: the same call on a second host, or after a reboot, mounts it there); each is one
ceph-fuse process (~30 MiB) per root in use on the host. The source must be a ceph-fuse mount of
the filesystem's root (the subtree's path is the source's path below that mount point; checked
by inode after mounting); ceph-fuse finds its cluster as the host's other Ceph clients do
(/etc/ceph, CEPH_CONF, CEPH_ARGS) or through `ceph_args`. Volumes are used straight from the
shared directory: their limit is enforced, but `df` in a volume shows the whole filesystem.

Snapshots. On CephFS where snapshots are enabled, a snapshot is CephFS's own (`mkdir
<dir>/.snap/<snap>`: copy-on-write, made by the cluster, seen by every host). Restoring any one
copies it back (with the limit lifted for the moment, so old and new fit side by side) and swaps
it in. Elsewhere, and for snapshots brought in by `import_snapshot` (a tree that was never the
root), a snapshot is a copy under snapshots/ (reflinked where the filesystem can).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import Conflict, DriverError, InUse, InvalidInput, NotFound, Unsupported
from lxcloud.core.instance import Disk
from lxcloud.core.proc import run
from lxcloud.core.reverter import Reverter
from lxcloud.core.waiting import wait_until
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.storage import loop
from lxcloud.drivers.storage.base import (
    PoolSpec,
    PoolUsage,
    Populate,
    SnapshotOf,
    check_id,
    root_source,
)
from lxcloud.drivers.storage.quota import copy_tree, fmt_bytes, rmtree

SUBDIRS = ("bases", "instances", "volumes", "snapshots", "locks", "tmp", "empty")
OVERLAY_WORKDIR = "work"
LOWER_MARK = "lower"
QUOTA_XATTR = "ceph.quota.max_bytes"
CEPH_PROBE_XATTR = "ceph.dir.rbytes"
CEPH_FUSE_FSTYPE = "fuse.ceph-fuse"
LOCAL_ROOT = Path("/run/lxcloud/shared")
MOUNT_TIMEOUT = 60
F = TypeVar("F", bound=Callable[..., Any])


def _host(fn: F) -> F:
    """The host refusing (a full pool, a missing file) is a DriverError naming the step."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OSError as e:
            raise DriverError(f"{fn.__name__.replace('_', ' ')}: {e}") from e
    return cast(F, wrapper)


def _overlay_escape(p: Path) -> str:
    # overlayfs splits lowerdir on ':' and the options on ','
    return str(p).replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def _used(path: Path) -> int:
    """Bytes the files under `path` hold. Directories are left out: on CephFS a directory's size
    is the recursive byte count of what is below it (rstats), which would count twice."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for n in files:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def _is_cephfs(path: Path) -> bool:
    try:
        os.getxattr(path, CEPH_PROBE_XATTR)
        return True
    except OSError:
        return False


def _process_gone(pid: int) -> bool:
    """Exited (reaped, or a zombie whose parent is not us)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


class SharedPool:
    """A StorageDriver over a directory every host mounts; CephFS quotas and snapshots there."""

    name = "shared"

    def __init__(self, spec: PoolSpec, *, local: Path | None = None,
                 ceph_args: Sequence[str] = ()) -> None:
        self.spec = spec
        if not spec.source:
            raise InvalidInput("a shared pool needs a source: the directory every host mounts")
        source = Path(spec.source)
        # services put the pool in a directory of its own inside the operator's source
        self.own_dir = spec.path != source and Path(spec.path).is_relative_to(source)
        self.path = Path(spec.path) if self.own_dir else source
        digest = hashlib.sha1(str(self.path).encode()).hexdigest()[:8]
        self.local = Path(local) if local else LOCAL_ROOT / f"{spec.name}-{digest}"
        self.ceph_args = tuple(ceph_args)
        self.cephfs = False             # quotas by xattr
        self.ceph_snaps = False         # .snap directories
        self.subtree = False            # roots mounted as their own ceph-fuse subtree
        self.caps = StorageCaps(copy_on_write=True, snapshots=True, volumes=True, remote=True,
                                quota_note="the pool is not made real yet (ensure)")

    # --- the pool
    @_host
    def ensure(self) -> None:
        source = Path(self.spec.source)
        if not source.is_dir():
            raise InvalidInput(f"the pool's source {source} is not a directory")
        self.path.mkdir(exist_ok=True)
        for sub in SUBDIRS:
            (self.path / sub).mkdir(exist_ok=True)
        # traversable by the containers' mapped root (it is not root on the host)
        for p in (self.path, *(self.path / s for s in ("bases", "instances", "volumes"))):
            p.chmod(0o711)
        (self.path / "empty").chmod(0o755)
        self.local.mkdir(parents=True, exist_ok=True)
        self.local.chmod(0o711)
        mountpoint, fstype, _ = loop.filesystem_of(self.path)
        self.cephfs = _is_cephfs(self.path)
        self.ceph_snaps = self.cephfs and self._probe_snapshots()
        self.subtree = self.cephfs and fstype == CEPH_FUSE_FSTYPE and bool(shutil.which("ceph-fuse"))
        note = ""
        if not self.cephfs:
            note = (f"{fstype} at {mountpoint} has no quota mechanism this pool can use "
                    "(it uses CephFS's ceph.quota.max_bytes): disk limits are not enforced")
        elif not self.subtree:
            note = ""       # enforced; df inside shows the whole filesystem
        self.caps = StorageCaps(copy_on_write=True, quota=self.cephfs, quota_note=note,
                                quota_visible=self.subtree, online_resize=self.cephfs,
                                snapshots=True, cow_snapshots=self.ceph_snaps, volumes=True,
                                remote=True)

    def _probe_snapshots(self) -> bool:
        """CephFS snapshots work here (the filesystem allows them and we may make them)."""
        probe = self.path / "tmp" / f"snap-probe-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        try:
            (probe / ".snap" / "probe").mkdir()
            (probe / ".snap" / "probe").rmdir()
            return True
        except OSError:
            return False
        finally:
            probe.rmdir()

    @_host
    def teardown(self) -> None:
        if self.local.exists():
            for mp in loop.mounts_under(self.local):
                self._unmount(mp)
            shutil.rmtree(self.local, ignore_errors=True)
        if not self.path.exists():
            return
        for kind in ("instances", "volumes"):
            d = self.path / kind
            if d.is_dir():
                for area in d.iterdir():
                    self._drop_ceph_snapshots(area)
        if self.own_dir:
            rmtree(self.path, f"pool {self.spec.name}")
        else:
            for sub in SUBDIRS:
                rmtree(self.path / sub, f"{sub} of pool {self.spec.name}")

    def usage(self) -> PoolUsage:
        st = os.statvfs(self.path)
        return PoolUsage(capacity=st.f_blocks * st.f_frsize,
                         used=(st.f_blocks - st.f_bfree) * st.f_frsize,
                         free=st.f_bavail * st.f_frsize)

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        fd = os.open(self.path / "locks" / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- limits
    def _limit(self, area: Path) -> int:
        if not self.cephfs:
            return 0
        try:
            return int(os.getxattr(area, QUOTA_XATTR) or 0)
        except OSError as e:
            if e.errno == errno.ENODATA:
                return 0
            raise

    def _set_limit(self, area: Path, size: int) -> None:
        if not self.cephfs:
            return
        if size == 0 and not self._limit(area):
            return
        os.setxattr(area, QUOTA_XATTR, str(size).encode())

    def _resize(self, area: Path, size: int, what: str) -> None:
        if not self.caps.quota:
            raise Unsupported(f"this pool cannot limit {what}: {self.caps.quota_note}")
        if size < 0:
            raise InvalidInput("a size cannot be negative")
        used = _used(area)
        if size and used > size:
            raise InvalidInput(f"{what} uses {fmt_bytes(used)}: it cannot be limited to "
                               f"{fmt_bytes(size)}", used=used, size=size)
        self._set_limit(area, size)

    @contextmanager
    def _unlimited(self, area: Path) -> Iterator[None]:
        """The area's limit lifted for the time of a copy into it, then set again."""
        size = self._limit(area)
        self._set_limit(area, 0)
        try:
            yield
        finally:
            self._set_limit(area, size)

    # --- bases
    def base_path(self, image_id: str) -> Path:
        return self.path / "bases" / check_id(image_id)

    def has_base(self, image_id: str) -> bool:
        return self.base_path(image_id).is_dir()

    def create_base(self, image_id: str, populate: Populate) -> Path:
        """Populate once into a temp dir, then rename into place (atomic); later callers reuse it."""
        base = self.base_path(image_id)
        if base.is_dir():
            return base
        with self._lock(image_id):
            if base.is_dir():
                return base
            tmp = self.path / "bases" / f".tmp-{image_id}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(mode=0o755)
            try:
                populate(tmp)
                os.rename(tmp, base)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return base

    def delete_base(self, image_id: str) -> None:
        base = self.base_path(image_id)
        with self._lock(image_id):
            if not base.exists():
                return
            doomed = self.path / "bases" / f".del-{image_id}-{uuid.uuid4().hex[:8]}"
            os.rename(base, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    # --- subtree mounts (this host's view of a root, showing its limit)
    def _mountpoint(self, instance_id: str) -> Path:
        return self.local / "roots" / check_id(instance_id)

    def _ceph_path(self, area: Path) -> str:
        mountpoint = loop.filesystem_of(area)[0]
        return "/" + str(area.resolve().relative_to(mountpoint))

    def _mount_subtree(self, area: Path, mp: Path) -> None:
        if loop.is_mounted(mp):
            return
        mp.mkdir(parents=True, exist_ok=True)
        (self.local / "run").mkdir(exist_ok=True)
        pidfile = self.local / "run" / f"{mp.name}.pid"
        run(["ceph-fuse", *self.ceph_args, "--pid-file", str(pidfile), "-r",
             self._ceph_path(area), str(mp)], timeout=MOUNT_TIMEOUT)
        wait_until(lambda: loop.is_mounted(mp), MOUNT_TIMEOUT, f"the ceph-fuse mount at {mp}")
        # a FUSE mount's root is inode 1: compare a file below it (every root has its mark)
        if os.stat(mp / LOWER_MARK).st_ino != os.stat(area / LOWER_MARK).st_ino:
            self._unmount(mp)
            raise DriverError(f"the ceph-fuse mount of {area} at {mp} shows another directory: "
                              "the pool's source must be on a ceph-fuse mount of the "
                              "filesystem's root")

    def _unmount(self, mp: Path) -> None:
        """Unmount a subtree mount and wait for its ceph-fuse to exit."""
        pidfile = self.local / "run" / f"{mp.name}.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        loop.umount(mp)
        if pid:
            wait_until(lambda: _process_gone(pid), MOUNT_TIMEOUT,
                       f"ceph-fuse {pid} exiting after {mp} was unmounted")
        pidfile.unlink(missing_ok=True)
        try:
            mp.rmdir()
        except FileNotFoundError:
            pass

    # --- instance roots
    def instance_path(self, instance_id: str) -> Path:
        return self.path / "instances" / check_id(instance_id)

    def _view(self, instance_id: str) -> Path:
        """Where this host reaches the root's directory: its subtree mount (made if missing) or
        the shared directory itself."""
        area = self.instance_path(instance_id)
        if not self.subtree:
            return area
        mp = self._mountpoint(instance_id)
        self._mount_subtree(area, mp)
        return mp

    def _root(self, instance_id: str) -> Path:
        area = self.instance_path(instance_id)
        if not (area / LOWER_MARK).is_file():
            raise NotFound(f"instance root {instance_id} does not exist", resource="instance")
        return area

    def _lower_of(self, tree: Path) -> Path:
        image_id = (tree / LOWER_MARK).read_text().strip()
        return self.base_path(image_id) if image_id else self.path / "empty"

    def _rootfs(self, instance_id: str) -> RootfsSpec:
        area = self.instance_path(instance_id)
        return RootfsSpec(kind="overlay", path=self._view(instance_id) / "upper",
                          lower=self._lower_of(area))

    def _make_area(self, area: Path, size: int, uid: int, gid: int, mode: int,
                   dirs: Sequence[str]) -> None:
        """Fill the new (just made) directory of a root: its limit and its dirs."""
        self._set_limit(area, size if self.caps.quota else 0)
        for d in dirs:
            (area / d).mkdir()
            os.chown(area / d, uid, gid)
        if "upper" in dirs:
            (area / "upper").chmod(mode)

    def _remove_area(self, area: Path, what: str) -> None:
        self._drop_ceph_snapshots(area)
        rmtree(area, what)

    def _make_root(self, instance_id: str, size: int, image_id: str, uid: int, gid: int,
                   mode: int, fill: Populate | None = None) -> RootfsSpec:
        area = self.instance_path(instance_id)
        if area.exists():
            raise Conflict(f"instance root {instance_id} exists", resource="instance")
        area.mkdir(mode=0o711)
        with Reverter() as rev:
            rev.add(lambda: self._remove_area(area, f"the root of {instance_id}"))
            self._make_area(area, size, uid, gid, mode, ("upper", OVERLAY_WORKDIR))
            if fill is not None:
                fill(area / "upper")
            (area / LOWER_MARK).write_text(image_id + "\n")   # last: the root is complete
            rev.add(lambda: self._release(instance_id))
            spec = self._rootfs(instance_id)
            rev.success()
        return spec

    def _release(self, instance_id: str) -> None:
        mp = self._mountpoint(instance_id)
        if loop.is_mounted(mp):
            self._unmount(mp)

    @_host
    def create_root(self, instance_id: str, disk: Disk, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        image_id = root_source(disk)
        area = self.instance_path(instance_id)
        if (area / LOWER_MARK).is_file():      # idempotent: mounted here again if need be
            if self.caps.quota and self._limit(area) != disk.size:
                self._resize(area, disk.size, f"the root of {instance_id}")
            return self._rootfs(instance_id)
        base = self.base_path(image_id)
        if not base.is_dir():
            raise NotFound(f"image {image_id} has no base in pool {self.path}", resource="image")
        return self._make_root(instance_id, disk.size, image_id, uid, gid,
                               base.stat().st_mode & 0o7777)

    def has_root(self, instance_id: str) -> bool:
        return (self.instance_path(instance_id) / LOWER_MARK).is_file()

    def _check_unused(self, upper_dirs: Sequence[Path], what: str) -> None:
        """InUse while a running instance on this host mounts the root (or the volume)."""
        for d in upper_dirs:
            if d.is_dir():
                users = loop.mount_users(d)
                if users:
                    raise InUse(f"{what} is in use (process {users[0]} mounts it): stop it "
                                "first", pid=users[0])

    def _root_users(self, instance_id: str) -> list[Path]:
        return [self._mountpoint(instance_id) / "upper", self.instance_path(instance_id) / "upper"]

    @_host
    def delete_root(self, instance_id: str) -> None:
        area = self.instance_path(instance_id)
        what = f"the root of {instance_id}"
        if area.exists():
            try:
                self._check_unused(self._root_users(instance_id), what)
            except InUse as e:
                raise DriverError(f"cannot remove {what}: {e}") from e
            self._release(instance_id)
            self._remove_area(area, what)
        rmtree(self._snapshots(SnapshotOf.ROOT, instance_id), f"the snapshots of {what}")

    @_host
    def root_usage(self, instance_id: str) -> int:
        return _used(self._root(instance_id) / "upper")

    @_host
    def resize_root(self, instance_id: str, size: int) -> None:
        self._resize(self._root(instance_id), size, f"the root of {instance_id}")

    def _copy_area(self, src: Path, area: Path, size: int, what: str) -> None:
        """A new area holding `src`'s tree (a root's upper and mark, or a volume's content)."""
        used = _used(src)
        if self.caps.quota and size and used > size:
            raise InvalidInput(f"{what} would hold {fmt_bytes(used)}: more than its limit "
                               f"{fmt_bytes(size)}", used=used, size=size)
        area.mkdir(mode=0o711)
        with Reverter() as rev:
            rev.add(lambda: self._remove_area(area, what))
            self._set_limit(area, size if self.caps.quota else 0)
            for entry in sorted(os.listdir(src)):
                copy_tree(src / entry, area / entry)
            rev.success()

    @_host
    def clone_root(self, source_id: str, instance_id: str, disk: Disk, uid: int = 100000,
                   gid: int = 100000, snapshot: str | None = None) -> RootfsSpec:
        """uid/gid: the clone keeps the source's ownership (one id map per host)."""
        src = self._root(source_id) if snapshot is None \
            else self._snapshot(SnapshotOf.ROOT, source_id, snapshot)
        area = self.instance_path(instance_id)
        if area.exists():
            raise Conflict(f"instance root {instance_id} exists", resource="instance")
        what = f"the root of {instance_id}"
        with Reverter() as rev:
            self._copy_area(src, area, disk.size, what)
            rev.add(lambda: self._remove_area(area, what))
            (area / OVERLAY_WORKDIR).mkdir(exist_ok=True)
            upper = (area / "upper").stat()
            os.chown(area / OVERLAY_WORKDIR, upper.st_uid, upper.st_gid)
            rev.add(lambda: self._release(instance_id))
            spec = self._rootfs(instance_id)
            rev.success()
        return spec

    @_host
    def import_root(self, instance_id: str, disk: Disk, populate: Populate, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        return self._make_root(instance_id, disk.size, "", uid, gid, 0o755, populate)

    def root_tree(self, instance_id: str,
                  snapshot: str | None = None) -> AbstractContextManager[Path]:
        src = self._root(instance_id) if snapshot is None \
            else self._snapshot(SnapshotOf.ROOT, instance_id, snapshot)
        return self._merged(src)

    @contextmanager
    def _merged(self, tree: Path) -> Iterator[Path]:
        upper, lower = tree / "upper", self._lower_of(tree)
        # an unprivileged instance's overlay wrote user.overlay.* xattrs, a privileged one
        # trusted.overlay.*: read them the same way (whiteouts are honoured either way)
        userxattr = upper.stat().st_uid != 0
        opts = f"lowerdir={_overlay_escape(upper)}:{_overlay_escape(lower)}" \
            + (",userxattr" if userxattr else "")
        with loop.mounted_on_scratch(self.local / "tmp", lambda mp: loop.mount_fs(
                "overlay", mp, "overlay", readonly=True, options=opts)) as mp:
            yield mp

    # --- volumes
    def _volume(self, volume_id: str) -> Path:
        return self.path / "volumes" / check_id(volume_id)

    @_host
    def create_volume(self, volume_id: str, size: int, uid: int = 100000,
                      gid: int = 100000) -> Path:
        area = self._volume(volume_id)
        if area.is_dir():
            return area
        tmp = self.path / "volumes" / f".tmp-{volume_id}-{uuid.uuid4().hex[:8]}"
        with Reverter() as rev:
            rev.add(lambda: rmtree(tmp, f"volume {volume_id}"))
            tmp.mkdir(mode=0o755)
            os.chown(tmp, uid, gid)
            self._set_limit(tmp, size if self.caps.quota else 0)
            os.rename(tmp, area)
            rev.success()
        return area

    def has_volume(self, volume_id: str) -> bool:
        return self._volume(volume_id).is_dir()

    def volume_path(self, volume_id: str) -> Path:
        area = self._volume(volume_id)
        if not area.is_dir():
            raise NotFound(f"volume {volume_id} does not exist", resource="volume")
        return area

    @_host
    def delete_volume(self, volume_id: str) -> None:
        area = self._volume(volume_id)
        what = f"volume {volume_id}"
        if area.exists():
            try:
                self._check_unused([area], what)
            except InUse as e:
                raise DriverError(f"cannot remove {what}: {e}") from e
            self._remove_area(area, what)
        rmtree(self._snapshots(SnapshotOf.VOLUME, volume_id), f"the snapshots of {what}")

    @_host
    def volume_usage(self, volume_id: str) -> int:
        return _used(self.volume_path(volume_id))

    @_host
    def resize_volume(self, volume_id: str, size: int) -> None:
        self._resize(self.volume_path(volume_id), size, f"volume {volume_id}")

    @_host
    def clone_volume(self, source_id: str, volume_id: str, size: int,
                     snapshot: str | None = None, uid: int = 100000, gid: int = 100000) -> Path:
        src = self.volume_path(source_id) if snapshot is None \
            else self._snapshot(SnapshotOf.VOLUME, source_id, snapshot)
        area = self._volume(volume_id)
        if area.exists():
            raise Conflict(f"volume {volume_id} exists", resource="volume")
        what = f"volume {volume_id}"
        with Reverter() as rev:
            self._copy_area(src, area, size, what)
            rev.add(lambda: self._remove_area(area, what))
            area.chmod(0o755)
            os.chown(area, uid, gid)
            rev.success()
        return area

    # --- snapshots
    def _target(self, of: SnapshotOf, target_id: str) -> Path:
        return self._root(target_id) if of is SnapshotOf.ROOT else self.volume_path(target_id)

    def _area(self, of: SnapshotOf, target_id: str) -> Path:
        return self.instance_path(target_id) if of is SnapshotOf.ROOT else self._volume(target_id)

    def _snapshots(self, of: SnapshotOf, target_id: str) -> Path:
        return self.path / "snapshots" / SnapshotOf(of).value / check_id(target_id)

    def _copied(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> Path:
        return self._snapshots(of, target_id) / check_id(snapshot_id)

    def _ceph_snap(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> Path:
        return self._area(of, target_id) / ".snap" / check_id(snapshot_id)

    def _find_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> Path | None:
        copied = self._copied(of, target_id, snapshot_id)
        if copied.is_dir():
            return copied
        if self.ceph_snaps:
            snap = self._ceph_snap(of, target_id, snapshot_id)
            if self._area(of, target_id).is_dir() and snap.is_dir():
                return snap
        return None

    def _snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> Path:
        p = self._find_snapshot(of, target_id, snapshot_id)
        if p is None:
            raise NotFound(f"snapshot {snapshot_id} of {target_id} does not exist",
                           resource="snapshot")
        return p

    def _drop_ceph_snapshots(self, area: Path) -> None:
        if not self.ceph_snaps or not area.is_dir():
            return
        try:
            names = os.listdir(area / ".snap")
        except OSError:
            return
        for n in names:
            (area / ".snap" / n).rmdir()

    @_host
    def create_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        area = self._target(of, target_id)
        check_id(snapshot_id)
        with self._lock(f"snap-{of}-{target_id}"):
            if self._find_snapshot(of, target_id, snapshot_id) is not None:
                raise Conflict(f"snapshot {snapshot_id} of {target_id} exists",
                               resource="snapshot")
            if self.ceph_snaps:
                (area / ".snap" / snapshot_id).mkdir()
                return
            dest = self._copied(of, target_id, snapshot_id)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".tmp-{snapshot_id}-{uuid.uuid4().hex[:8]}")
            try:
                copy_tree(area, tmp)
                os.rename(tmp, dest)
            except BaseException:
                rmtree(tmp, str(tmp))
                raise

    def has_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> bool:
        check_id(target_id)
        return self._find_snapshot(of, target_id, snapshot_id) is not None

    @_host
    def restore_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        area = self._target(of, target_id)
        snap = self._snapshot(of, target_id, snapshot_id)
        if of is SnapshotOf.ROOT:
            what = f"the root of {target_id}"
            self._check_unused(self._root_users(target_id), what)
            entries = ["upper", LOWER_MARK]
        else:
            what = f"volume {target_id}"
            self._check_unused([area], what)
            entries = sorted(os.listdir(snap))
        # stage the snapshot's content beside the current one (in the same directory: a rename
        # across CephFS quota realms fails with EXDEV), then swap; the limit is lifted meanwhile
        stage = area / f".restore-{uuid.uuid4().hex[:8]}"
        trash = area / f".old-{uuid.uuid4().hex[:8]}"
        with self._unlimited(area):
            try:
                stage.mkdir()
                for e in entries:
                    copy_tree(snap / e, stage / e)
                if of is SnapshotOf.ROOT:
                    doomed = [area / e for e in entries]
                else:
                    doomed = [area / e for e in os.listdir(area) if area / e != stage]
                trash.mkdir()
                for p in doomed:
                    if p.exists() or p.is_symlink():
                        os.rename(p, trash / p.name)
                for e in entries:
                    os.rename(stage / e, area / e)
            finally:
                rmtree(stage, f"the restore of {what}")
            rmtree(trash, f"the old content of {what}")
            if of is SnapshotOf.VOLUME:
                st = snap.stat()
                os.chown(area, st.st_uid, st.st_gid)
                area.chmod(st.st_mode & 0o7777)

    @_host
    def delete_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        copied = self._copied(of, target_id, snapshot_id)
        if copied.is_dir():
            rmtree(copied, f"snapshot {snapshot_id} of {target_id}")
        if self.ceph_snaps and self._area(of, target_id).is_dir():
            snap = self._ceph_snap(of, target_id, snapshot_id)
            if snap.is_dir():
                snap.rmdir()

    @_host
    def import_snapshot(self, instance_id: str, snapshot_id: str, populate: Populate) -> None:
        area = self._root(instance_id)
        if self._find_snapshot(SnapshotOf.ROOT, instance_id, snapshot_id) is not None:
            raise Conflict(f"snapshot {snapshot_id} of {instance_id} exists", resource="snapshot")
        dest = self._copied(SnapshotOf.ROOT, instance_id, snapshot_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        upper = (area / "upper").stat()
        tmp = dest.with_name(f".tmp-{snapshot_id}-{uuid.uuid4().hex[:8]}")
        with Reverter() as rev:
            rev.add(lambda: rmtree(tmp, str(tmp)))
            tmp.mkdir(mode=0o711)
            (tmp / "upper").mkdir(mode=0o755)
            os.chown(tmp / "upper", upper.st_uid, upper.st_gid)
            (tmp / LOWER_MARK).write_text("\n")
            populate(tmp / "upper")
            os.rename(tmp, dest)
            rev.success()
