"""The "dir" pool: read-only image bases, instance roots as overlayfs layers over them, volumes
and snapshots as directories, limits through a quota backend (quota.py).

Layout under the pool's path:
  bases/<image_id>/            unpacked once, never written again (the overlay's lower dir)
  empty/                       the lower dir of roots imported whole (import_root)
  instances/<id>/upper/        the instance's own changes (overlay upper dir)
  instances/<id>/work/         overlayfs' work dir: liblxc derives it as dirname(upper)/work
  instances/<id>/lower         the image id the root is a layer over ("" for an imported root)
  instances/<id>.img           with the "image" backend and a limit: the ext4 mounted on <id>/
  volumes/<vol>/ (+ .img)      a volume's top directory (its own ext4 with a limit)
  snapshots/root|volume/<target>/<snap>/ or <snap>.img
  blanks/                      formatted blank images, cloned (reflink) into new limited areas
  locks/  tmp/                 flocks; temporary mount points

PoolSpec(size > 0, source "") makes the pool a loop-backed XFS file (reflinks on) of that size
mounted at the path; source "" and size 0: a plain directory; source set: the pool lives in that
existing directory. Nothing on the launch path grows with image size: a root is two empty
directories, or a reflinked blank image and a mount (~3 ms).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import Conflict, DriverError, InUse, InvalidInput, NotFound
from lxcloud.core.instance import Disk
from lxcloud.core.reverter import Reverter
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.storage import loop
from lxcloud.drivers.storage.base import (
    PoolSpec,
    PoolUsage,
    Populate,
    SnapshotOf,
    check_id,
    host_step,
    pool_lock,
    root_source,
    snapshots_dir,
)
from lxcloud.drivers.storage.quota import (
    RUN_NOTE_NO_XFS_QUOTA,
    DirAreas,
    ImageAreas,
    Owner,
    ProjectAreas,
)

# liblxc 5.0.2 (storage/overlay.c) mounts `overlay:LOWER:UPPER` with workdir=dirname(UPPER)/work
# (verified: it mkdir_p()s that path inside the user namespace, so we pre-create it, owned by mapped root).
OVERLAY_WORKDIR = "work"
LOWER_MARK = "lower"
XFS_MKFS = ("mkfs.xfs", "-q", "-m", "reflink=1")
SUBDIRS = ("bases", "instances", "volumes", "snapshots", "locks", "tmp", "empty")

_check_id = check_id


_host = host_step


def _overlay_escape(p: Path) -> str:
    # overlayfs splits lowerdir on ':' and the options on ','
    return str(p).replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def _xfs_quota_missing() -> str:
    """Why XFS cannot have project quotas here ("" when it can): /proc/fs/xfs/xqmstat exists
    only in a kernel built with CONFIG_XFS_QUOTA."""
    if Path("/proc/fs/xfs").is_dir() and not Path("/proc/fs/xfs/xqmstat").exists():
        return RUN_NOTE_NO_XFS_QUOTA
    return ""


class DirPool:
    """A StorageDriver over a directory, copy-on-write through overlayfs."""

    name = "dir"

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self.path = Path(spec.source) if spec.source else Path(spec.path)
        self.loop_backed = spec.size > 0 and not spec.source
        self.areas: DirAreas = DirAreas(self.path)
        self.caps = StorageCaps(copy_on_write=True, snapshots=True, volumes=True,
                                quota_note="the pool is not made real yet (ensure)")

    # --- the pool
    @_host
    def ensure(self) -> None:
        note = ""
        if self.loop_backed and not loop.is_mounted(self.path):
            try:
                loop.ensure_loop_fs(self.path, self.spec.size, XFS_MKFS, "prjquota")
            except DriverError as e:
                # no XFS quotas in this kernel (CONFIG_XFS_QUOTA unset): mount without them
                loop.ensure_loop_fs(self.path, self.spec.size, XFS_MKFS)
                note = _xfs_quota_missing() or f"mounting it with prjquota failed ({e})"
        elif self.loop_backed:
            note = _xfs_quota_missing()
        elif self.spec.source and not self.path.is_dir():
            raise InvalidInput(f"the pool's source {self.path} is not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        for sub in SUBDIRS:
            (self.path / sub).mkdir(exist_ok=True)
        # The pool must be traversable by the containers' mapped root (it is not root on the
        # host), or the overlay and bind mounts made inside the user namespace cannot reach it.
        for p in (self.path, *(self.path / s for s in ("bases", "instances", "volumes"))):
            p.chmod(0o711)
        (self.path / "empty").chmod(0o755)
        self.areas = self._backend(note)
        reflink = loop.supports_reflink(self.path / "tmp")
        a = self.areas
        self.caps = StorageCaps(copy_on_write=True, quota=a.quota, quota_note=a.note,
                                quota_visible=a.quota_visible, online_resize=a.online_resize,
                                snapshots=True, cow_snapshots=reflink, volumes=True)

    def _backend(self, note: str) -> DirAreas:
        mountpoint, fstype, options = loop.filesystem_of(self.path)
        opts = options.split(",")
        if (fstype == "xfs" and ({"prjquota", "pquota"} & set(opts))) \
                or (fstype == "ext4" and "prjquota" in opts):
            return ProjectAreas(self.path, mountpoint, fstype)
        if (self.loop_backed or self.spec.source) and Path("/dev/loop-control").exists():
            areas = ImageAreas(self.path, reflink=loop.supports_reflink(self.path / "tmp"))
            if note:
                areas.note = f"{note}: {areas.note}"
            return areas
        why = note or f"{fstype} at {mountpoint} is mounted without project quotas"
        return DirAreas(self.path, note=f"a plain directory ({why}): disk limits cannot be "
                                        "enforced on this pool; give it a size (a loop-backed "
                                        "XFS file) or a source with project quotas")

    @_host
    def teardown(self) -> None:
        if not self.path.exists() and not (self.loop_backed and loop.image_of(self.path).exists()):
            return
        if self.path.exists():
            self.areas.unmount_all(self.path)
        if self.loop_backed:
            loop.teardown_loop_fs(self.path)
        elif self.spec.source:
            for sub in (*SUBDIRS, "blanks"):
                shutil.rmtree(self.path / sub, ignore_errors=True)
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def usage(self) -> PoolUsage:
        st = os.statvfs(self.path)
        return PoolUsage(capacity=st.f_blocks * st.f_frsize,
                         used=(st.f_blocks - st.f_bfree) * st.f_frsize,
                         free=st.f_bavail * st.f_frsize)

    # --- bases
    def base_path(self, image_id: str) -> Path:
        return self.path / "bases" / _check_id(image_id)

    def has_base(self, image_id: str) -> bool:
        return self.base_path(image_id).is_dir()

    def _lock(self, name: str) -> AbstractContextManager[None]:
        return pool_lock(self.path, name)

    def create_base(self, image_id: str, populate: Callable[[Path], None]) -> Path:
        """Populate once into a temp dir, then rename into place (atomic); later callers reuse it."""
        base = self.base_path(image_id)
        if base.is_dir():
            return base
        with self._lock(image_id):
            if base.is_dir():       # another caller made it while we waited for the lock
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
            # Rename first so a half-deleted base is never mistaken for a complete one.
            doomed = self.path / "bases" / f".del-{image_id}-{uuid.uuid4().hex[:8]}"
            os.rename(base, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    # --- instance roots
    def instance_path(self, instance_id: str) -> Path:
        return self.path / "instances" / _check_id(instance_id)

    def _root(self, instance_id: str) -> Path:
        """An existing root's area, usable (its image mounted); NotFound otherwise."""
        area = self.instance_path(instance_id)
        if not self.areas.exists(area):
            raise NotFound(f"instance root {instance_id} does not exist", resource="instance")
        self.areas.activate(area)
        return area

    def _lower_of(self, tree: Path) -> Path:
        image_id = (tree / LOWER_MARK).read_text().strip()
        return self.base_path(image_id) if image_id else self.path / "empty"

    def _rootfs(self, area: Path) -> RootfsSpec:
        return RootfsSpec(kind="overlay", path=area / "upper", lower=self._lower_of(area))

    def _make_root(self, instance_id: str, size: int, image_id: str, uid: int, gid: int,
                   mode: int, fill: Populate | None = None) -> RootfsSpec:
        area = self.instance_path(instance_id)
        if self.areas.exists(area):
            raise Conflict(f"instance root {instance_id} exists", resource="instance")
        with Reverter() as rev:
            self.areas.make(area, size if self.areas.quota else 0, Owner(uid, gid),
                            dirs=("upper", OVERLAY_WORKDIR))
            rev.add(lambda: self.areas.remove(area, f"the root of {instance_id}"))
            (area / LOWER_MARK).write_text(image_id + "\n")
            # The upper dir's own mode becomes the root directory's inside: the base's mode.
            (area / "upper").chmod(mode)
            if fill is not None:
                fill(area / "upper")
            rev.success()
        return self._rootfs(area)

    @_host
    def create_root(self, instance_id: str, disk: Disk, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        image_id = root_source(disk)
        area = self.instance_path(instance_id)
        if self.areas.exists(area):         # idempotent; mounted again after a reboot
            self.areas.activate(area)
            if not (area / LOWER_MARK).exists():     # a root from before the mark existed
                (area / LOWER_MARK).write_text(image_id + "\n")
            if self.areas.quota and self.areas.limit(area) != disk.size:
                self.areas.resize(area, disk.size, f"the root of {instance_id}")
            return self._rootfs(area)
        base = self.base_path(image_id)
        if not base.is_dir():
            raise NotFound(f"image {image_id} has no base in pool {self.path}", resource="image")
        return self._make_root(instance_id, disk.size, image_id, uid, gid,
                               base.stat().st_mode & 0o7777)

    def has_root(self, instance_id: str) -> bool:
        return self.areas.exists(self.instance_path(instance_id))

    def _check_unused(self, area: Path, what: str) -> None:
        """InUse while a running instance mounts a plain-directory area (an image area's busy
        filesystem is found when it is unmounted)."""
        if area.is_dir() and not self.areas.is_image(area):
            users = loop.mount_users(area)
            if users:
                raise InUse(f"{what} is in use (process {users[0]} mounts it): stop it first",
                            pid=users[0])

    def _delete(self, of: SnapshotOf, area: Path, target_id: str, what: str) -> None:
        """Remove an area (DriverError naming it while in use) and then its snapshots."""
        if self.areas.exists(area):
            try:
                self._check_unused(area, what)
                self.areas.remove(area, what)
            except InUse as e:
                raise DriverError(f"cannot remove {what}: {e}") from e
        shutil.rmtree(self._snapshots(of, target_id), ignore_errors=True)

    def _resize(self, area: Path, size: int, what: str) -> None:
        # a plain directory becoming an image (or back) is copied: never under a running instance
        if self.areas.quota and (not self.areas.is_image(area) or not size):
            self._check_unused(area, what)
        self.areas.resize(area, size, what)

    @_host
    def delete_root(self, instance_id: str) -> None:
        self._delete(SnapshotOf.ROOT, self.instance_path(instance_id), instance_id,
                     f"the root of {instance_id}")

    @_host
    def root_usage(self, instance_id: str) -> int:
        """Bytes the instance's own layer holds (its filesystem's used blocks, or a walk)."""
        return self.areas.used(self._root(instance_id))

    @_host
    def resize_root(self, instance_id: str, size: int) -> None:
        self._resize(self._root(instance_id), size, f"the root of {instance_id}")

    @_host
    def clone_root(self, source_id: str, instance_id: str, disk: Disk, uid: int = 100000,
                   gid: int = 100000, snapshot: str | None = None) -> RootfsSpec:
        """uid/gid: the clone keeps the source's ownership (one id map per host)."""
        src = self._root(source_id) if snapshot is None \
            else self._snapshot(SnapshotOf.ROOT, source_id, snapshot)
        area = self.instance_path(instance_id)
        if self.areas.exists(area):
            raise Conflict(f"instance root {instance_id} exists", resource="instance")
        self.areas.copy(src, area, disk.size if self.areas.quota else 0, Owner(uid, gid),
                        f"the root of {instance_id}")
        return self._rootfs(area)

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
    def _merged(self, src: Path) -> Iterator[Path]:
        with self.areas.open_tree(src) as tree:
            upper, lower = tree / "upper", self._lower_of(tree)
            # The instance's overlay wrote user.overlay.* xattrs (opaque dirs) when it was
            # mounted inside a user namespace (its upper owned by a mapped, non-root uid), or
            # trusted.overlay.* for a privileged one: read them the same way. Whiteouts (0/0
            # character devices) are honoured either way.
            userxattr = upper.stat().st_uid != 0
            opts = f"lowerdir={_overlay_escape(upper)}:{_overlay_escape(lower)}" \
                + (",userxattr" if userxattr else "")
            with loop.mounted_on_scratch(self.path / "tmp", lambda mp: loop.mount_fs(
                    "overlay", mp, "overlay", readonly=True, options=opts)) as mp:
                yield mp

    # --- volumes
    def _volume(self, volume_id: str) -> Path:
        return self.path / "volumes" / _check_id(volume_id)

    @_host
    def create_volume(self, volume_id: str, size: int, uid: int = 100000,
                      gid: int = 100000) -> Path:
        area = self._volume(volume_id)
        if self.areas.exists(area):
            self.areas.activate(area)
            return area
        self.areas.make(area, size if self.areas.quota else 0, Owner(uid, gid), mode=0o755)
        return area

    def has_volume(self, volume_id: str) -> bool:
        return self.areas.exists(self._volume(volume_id))

    def volume_path(self, volume_id: str) -> Path:
        area = self._volume(volume_id)
        if not self.areas.exists(area):
            raise NotFound(f"volume {volume_id} does not exist", resource="volume")
        self.areas.activate(area)
        return area

    @_host
    def delete_volume(self, volume_id: str) -> None:
        self._delete(SnapshotOf.VOLUME, self._volume(volume_id), volume_id, f"volume {volume_id}")

    @_host
    def volume_usage(self, volume_id: str) -> int:
        return self.areas.used(self.volume_path(volume_id))

    @_host
    def resize_volume(self, volume_id: str, size: int) -> None:
        self._resize(self.volume_path(volume_id), size, f"volume {volume_id}")

    @_host
    def clone_volume(self, source_id: str, volume_id: str, size: int,
                     snapshot: str | None = None, uid: int = 100000, gid: int = 100000) -> Path:
        src = self.volume_path(source_id) if snapshot is None \
            else self._snapshot(SnapshotOf.VOLUME, source_id, snapshot)
        area = self._volume(volume_id)
        if self.areas.exists(area):
            raise Conflict(f"volume {volume_id} exists", resource="volume")
        with Reverter() as rev:
            self.areas.copy(src, area, size if self.areas.quota else 0, Owner(uid, gid),
                            f"volume {volume_id}")
            rev.add(lambda: self.areas.remove(area, f"volume {volume_id}"))
            os.chown(area, uid, gid)
            rev.success()
        return area

    # --- snapshots
    def _target(self, of: SnapshotOf, target_id: str) -> Path:
        return self._root(target_id) if of is SnapshotOf.ROOT else self.volume_path(target_id)

    def _snapshots(self, of: SnapshotOf, target_id: str) -> Path:
        return snapshots_dir(self.path, of, target_id)

    def _snapshot_path(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> Path:
        return self._snapshots(of, target_id) / _check_id(snapshot_id)

    def _snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> Path:
        """An existing snapshot (NotFound otherwise)."""
        p = self._snapshot_path(of, target_id, snapshot_id)
        if not self.areas.snapshot_exists(p):
            raise NotFound(f"snapshot {snapshot_id} of {target_id} does not exist",
                           resource="snapshot")
        return p

    @_host
    def create_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        area = self._target(of, target_id)
        dest = self._snapshot_path(of, target_id, snapshot_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(f"snap-{of}-{target_id}"):
            if self.areas.snapshot_exists(dest):
                raise Conflict(f"snapshot {snapshot_id} of {target_id} exists",
                               resource="snapshot")
            self.areas.snapshot(area, dest)

    def has_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> bool:
        return self.areas.snapshot_exists(self._snapshot_path(of, target_id, snapshot_id))

    @_host
    def restore_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        area = self._target(of, target_id)
        snap = self._snapshot(of, target_id, snapshot_id)
        what = f"the root of {target_id}" if of is SnapshotOf.ROOT else f"volume {target_id}"
        self._check_unused(area, what)
        self.areas.replace(area, snap, what)

    @_host
    def delete_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        self.areas.remove_snapshot(self._snapshot_path(of, target_id, snapshot_id))

    @_host
    def import_snapshot(self, instance_id: str, snapshot_id: str, populate: Populate) -> None:
        area = self._root(instance_id)
        dest = self._snapshot_path(SnapshotOf.ROOT, instance_id, snapshot_id)
        if self.areas.snapshot_exists(dest):
            raise Conflict(f"snapshot {snapshot_id} of {instance_id} exists", resource="snapshot")
        dest.parent.mkdir(parents=True, exist_ok=True)
        upper = (area / "upper").stat()
        tmp = self.path / "tmp" / f"import-{uuid.uuid4().hex[:12]}"
        size = self.areas.limit(area) if self.areas.is_image(area) else 0
        what = f"snapshot {snapshot_id} of {instance_id}"
        with Reverter() as rev:
            self.areas.make(tmp, size, Owner(upper.st_uid, upper.st_gid),
                            dirs=("upper", OVERLAY_WORKDIR))
            rev.add(lambda: self.areas.remove(tmp, what))
            (tmp / LOWER_MARK).write_text("\n")
            (tmp / "upper").chmod(0o755)
            populate(tmp / "upper")
            self.areas.park(tmp, dest, what)
            rev.success()
