"""The "shared" pool: a directory every host mounts (CephFS, NFS, GlusterFS…), so that an
instance's root, its volumes and their snapshots can be used from any host without copying
(`caps.remote`).

Everything lives in the shared directory and nothing but ids is stored in it (no host paths, no
loop device names): a second host mounting the same directory sees the same pool.

  bases/<image_id>/              unpacked once, read-only by convention (the overlays' lower)
  instances/<id>/root.img        the root's own ext4 (sparse, sized to its disk limit)
  instances/<id>/root/           where the host using the root mounts it: upper/ work/ lower
  instances/<id>/.snap/<snap>/   a root's snapshot (CephFS's own, of that directory)
  volumes/<vol>/                 a volume's top directory, its limit on it (CephFS quota)
  snapshots/<root|volume>/<target>/<snap>/   snapshots kept as copies (below)
  locks/ tmp/ empty/             flocks (the shared filesystem's own locks); scratch

Roots are copy-on-write: the dir pool's overlay roots ("image" backend, quota.py ImageAreas),
each an overlay whose lower is the image's base on the shared filesystem (a read-only lower on
FUSE is fine, also mounted by an unprivileged container) and whose upper/work dirs are on the
root's ext4 image, loop-mounted by the host that uses the root. Overlayfs refuses an upper on a
remote filesystem (ceph-fuse 16 has no RENAME_WHITEOUT), an ext4 on a loop device is local to
the kernel. The image being the root's size, its limit is enforced (ENOSPC) and `df /` inside
shows it (overlayfs reports its upper's filesystem). A root with no limit gets an image the
size of the pool's filesystem (sparse). `release_root` unmounts the image (InUse while an
instance still holds it) and another host mounts the same file: `create_root` of an existing
root is idempotent and mounts it there. Only one host uses a root at a time (the cluster's
rule; nothing stops two hosts mounting one image, which would corrupt it).

Disk limits. Roots: their image's size, where the pool can limit volumes too (CephFS). On
CephFS (found by its `ceph.dir.rbytes` xattr) each volume directory carries
`ceph.quota.max_bytes`; writing past it fails with EDQUOT. The clients enforce it and learn
usage from the MDS with a lag, so a writer may overshoot by a few MiB before the error; `df` in
a volume shows the whole filesystem. Elsewhere there is no quota mechanism for volumes:
`caps.quota` is False, `caps.quota_note` says so, sizes are ignored and resizes Unsupported.
A root's limit grows while it runs only where the agent has CAP_SYS_RESOURCE (ext4's online
resize demands it; `caps.online_resize`), else while it is stopped.

Snapshots. On CephFS where snapshots are enabled (probed at `ensure`): a root's is a CephFS
snapshot of its directory taken with its ext4 frozen (FIFREEZE) and the image fsynced, so the
image in it is clean; a volume's a CephFS snapshot of its directory. Both copy-on-write, made
by the cluster, seen by every host. Restoring one copies it back (a root: its image, read whole:
ceph-fuse has no SEEK_DATA, so it costs the root's disk limit, not what it holds) and swaps it
in. Elsewhere, and for snapshots brought in by `import_snapshot`, a snapshot is a copy.

Measured here (one-node Ceph, ceph-fuse, 2 cores, bench by hand): a new 64 MiB root takes
~70 ms over a busybox base and ~60 ms over a 200 MB base (flat: a sparse file, mkfs.ext4 and a
mount; the earlier whole-tree roots took ~2.7 s for busybox and grew with the image); a root
with no limit (a 7 GiB sparse image) ~250 ms; a snapshot of a 64 MiB root with 8 MiB written
~140 ms, of the 7 GiB one ~70 ms; restoring the 64 MiB root ~1.1 s; release_root ~30 ms,
mounting it again ~25 ms; no ceph-fuse process per root any more (each was ~17 MiB RSS).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import Conflict, DriverError, InUse, InvalidInput, NotFound, Unsupported
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
)
from lxcloud.drivers.storage.dir import SUBDIRS as DIR_SUBDIRS
from lxcloud.drivers.storage.dir import DirPool
from lxcloud.drivers.storage.quota import (
    ImageAreas,
    copy_into_place,
    copy_tree,
    fmt_bytes,
    image_file,
    rmtree,
)

SUBDIRS = ("bases", "instances", "volumes", "snapshots", "locks", "tmp")
ROOT_AREA = "root"
QUOTA_XATTR = "ceph.quota.max_bytes"
CEPH_PROBE_XATTR = "ceph.dir.rbytes"
# filesystems (by the part of the fstype before a dot) where overlayfs refuses an upper dir
REMOTE_FSTYPES = ("fuse", "fuseblk", "nfs", "nfs4", "ceph", "cifs", "smb3", "9p")
LOCAL_ROOT = Path("/run/lxcloud/shared")
GiB = 1 << 30
UNLIMITED_MIN = GiB      # a root with no limit: an image the pool's size (at least this)


_host = host_step


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


class SharedRoots(DirPool):
    """The dir pool's roots, each in a directory of its own (instances/<id>/root/ and its
    root.img), so that a CephFS snapshot of that directory keeps that one root's image."""

    ceph_snaps = False        # set by the shared pool once it has probed the filesystem

    def instance_path(self, instance_id: str) -> Path:
        return self.path / "instances" / check_id(instance_id) / ROOT_AREA

    @contextmanager
    def _own_dir(self, instance_id: str) -> Iterator[None]:
        """The root's directory made for a new root, removed again if making it fails."""
        top = self.instance_path(instance_id).parent
        made = not top.exists()
        top.mkdir(mode=0o711, exist_ok=True)
        try:
            yield
        except BaseException:
            if made:
                self._drop_dir(instance_id)
            raise

    def _drop_dir(self, instance_id: str) -> None:
        top = self.instance_path(instance_id).parent
        if self.ceph_snaps and (top / ".snap").is_dir():
            for n in os.listdir(top / ".snap"):
                (top / ".snap" / n).rmdir()
        rmtree(top, f"the directory of the root of {instance_id}")

    def _make_root(self, instance_id: str, *args: Any, **kwargs: Any) -> RootfsSpec:
        with self._own_dir(instance_id):
            return super()._make_root(instance_id, *args, **kwargs)

    def clone_root(self, source_id: str, instance_id: str, disk: Disk, uid: int = 100000,
                   gid: int = 100000, snapshot: str | None = None) -> RootfsSpec:
        if self.has_root(instance_id):
            raise Conflict(f"instance root {instance_id} exists", resource="instance")
        with self._own_dir(instance_id):
            return super().clone_root(source_id, instance_id, disk, uid, gid, snapshot)

    def delete_root(self, instance_id: str) -> None:
        super().delete_root(instance_id)        # DriverError while it is in use
        if self.instance_path(instance_id).parent.exists():
            self._drop_dir(instance_id)

    # --- snapshots: CephFS's own of the root's directory (its ext4 frozen meanwhile) where
    # the filesystem has them; copies (the dir pool's) elsewhere and for imported ones
    def _ceph_snap(self, target_id: str, snapshot_id: str) -> Path:
        return (self.instance_path(target_id).parent / ".snap" / check_id(snapshot_id)
                / ROOT_AREA)

    def _snapshot_path(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> Path:
        if of is SnapshotOf.ROOT and self.ceph_snaps:
            snap = self._ceph_snap(target_id, snapshot_id)
            if image_file(snap).is_file():
                return snap
        return super()._snapshot_path(of, target_id, snapshot_id)

    def create_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        if of is not SnapshotOf.ROOT or not self.ceph_snaps:
            super().create_snapshot(of, target_id, snapshot_id)
            return
        area = self._root(target_id)
        snap = self._ceph_snap(target_id, snapshot_id).parent
        with self._lock(f"snap-{of}-{target_id}"):
            if self.has_snapshot(of, target_id, snapshot_id):
                raise Conflict(f"snapshot {snapshot_id} of {target_id} exists",
                               resource="snapshot")
            # frozen: every write is in the image and its journal clean when the cluster
            # takes the snapshot (copy-on-write, no data copied)
            with loop.frozen(area) if loop.is_mounted(area) else nullcontext():
                fd = os.open(image_file(area), os.O_RDONLY)
                try:
                    os.fsync(fd)       # what the loop device wrote, in the cluster
                finally:
                    os.close(fd)
                snap.mkdir()

    def delete_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        if of is SnapshotOf.ROOT and self.ceph_snaps:
            snap = self._ceph_snap(target_id, snapshot_id)
            if image_file(snap).is_file():
                snap.parent.rmdir()
                return
        super().delete_snapshot(of, target_id, snapshot_id)


class SharedPool:
    """A StorageDriver over a directory every host mounts: roots are the dir pool's (overlay
    layers on ext4 images in the directory), volumes quota'd directories (CephFS)."""

    name = "shared"

    def __init__(self, spec: PoolSpec, *, local: Path | None = None,
                 ceph_args: Sequence[str] = ()) -> None:
        """local, ceph_args: accepted for callers of the earlier layout (subtree mounts);
        nothing host-local is kept now."""
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
        self.ceph_snaps = False         # .snap directories (volumes)
        self.images_only = False        # an overlay upper cannot live on this filesystem
        self.roots = SharedRoots(PoolSpec(spec.name, "dir", self.path, source=str(self.path)))
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
        self.roots.ensure()
        # traversable by the containers' mapped root (it is not root on the host)
        for p in (self.path, *(self.path / s for s in ("bases", "instances", "volumes"))):
            p.chmod(0o711)
        mountpoint, fstype, _ = loop.filesystem_of(self.path)
        self.cephfs = _is_cephfs(self.path)
        self.ceph_snaps = self.cephfs and self._probe_snapshots()
        self.roots.ceph_snaps = self.ceph_snaps
        self.images_only = fstype.split(".")[0] in REMOTE_FSTYPES
        if self.images_only and not isinstance(self.roots.areas, ImageAreas):
            raise InvalidInput(f"the pool's source is on {fstype}, where an overlay layer "
                               "cannot live: its roots need loop devices, and this host has "
                               "none (/dev/loop-control)")
        note = ""
        if not self.cephfs:
            note = (f"{fstype} at {mountpoint} has no quota mechanism this pool can use "
                    "(it uses CephFS's ceph.quota.max_bytes): disk limits are not enforced")
        self.caps = StorageCaps(copy_on_write=True, quota=self.cephfs, quota_note=note,
                                quota_visible=self.cephfs,
                                online_resize=self.cephfs and self.roots.caps.online_resize,
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
        self.release()
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
            for sub in (*SUBDIRS, *DIR_SUBDIRS, "blanks"):
                rmtree(self.path / sub, f"{sub} of pool {self.spec.name}")

    @_host
    def release(self) -> None:
        """This host stops using the pool (an instance moving away, a host leaving): its
        mounts of the roots' images go, the shared data stays for the other hosts."""
        if self.path.exists():
            for mp in loop.mounts_under(self.path):
                loop.umount(mp)

    def usage(self) -> PoolUsage:
        st = os.statvfs(self.path)
        return PoolUsage(capacity=st.f_blocks * st.f_frsize,
                         used=(st.f_blocks - st.f_bfree) * st.f_frsize,
                         free=st.f_bavail * st.f_frsize)

    def _lock(self, name: str) -> AbstractContextManager[None]:
        return self.roots._lock(name)     # the same flocks under locks/ (shared fs locks)

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

    # --- bases: the dir pool's, over this directory
    def base_path(self, image_id: str) -> Path:
        return self.roots.base_path(image_id)

    def has_base(self, image_id: str) -> bool:
        return self.roots.has_base(image_id)

    def create_base(self, image_id: str, populate: Populate) -> Path:
        return self.roots.create_base(image_id, populate)

    def delete_base(self, image_id: str) -> None:
        self.roots.delete_base(image_id)

    # --- instance roots (the dir pool's, over this directory: see the module's docstring)
    def instance_path(self, instance_id: str) -> Path:
        return self.roots.instance_path(instance_id)

    def _size(self, size: int) -> int:
        """The image size for a root limited to `size`: none where the pool has no quota (the
        dir pool then makes a plain layer where it can), the pool's capacity for "no limit"
        on a remote filesystem (an overlay upper cannot live there: it is always an image)."""
        if not self.caps.quota:
            size = 0
        if not size and self.images_only:
            st = os.statvfs(self.path)
            size = max(UNLIMITED_MIN, st.f_blocks * st.f_frsize // GiB * GiB)
        return size

    @_host
    def create_root(self, instance_id: str, disk: Disk, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        if self.roots.has_root(instance_id):       # idempotent: mounted here again if need be
            area = self.roots._root(instance_id)
            limit = self.roots.areas.limit(area)
            if self.caps.quota and (disk.size or not self.images_only) and limit != disk.size:
                self.resize_root(instance_id, disk.size)
            return self.roots._rootfs(area)
        return self.roots.create_root(instance_id, replace(disk, size=self._size(disk.size)),
                                      uid, gid)

    @_host
    def release_root(self, instance_id: str) -> None:
        """This host stops using the root (its instance is stopped or moved): its image is
        unmounted (InUse while an instance still holds it), the root stays in the shared
        directory for whichever host uses it next."""
        area, areas = self.roots.instance_path(instance_id), self.roots.areas
        if isinstance(areas, ImageAreas) and areas.is_image(area) and loop.is_mounted(area):
            areas._unmount(area, f"the root of {instance_id}")

    def has_root(self, instance_id: str) -> bool:
        return self.roots.has_root(instance_id)

    def delete_root(self, instance_id: str) -> None:
        self.roots.delete_root(instance_id)

    def root_usage(self, instance_id: str) -> int:
        return self.roots.root_usage(instance_id)

    def resize_root(self, instance_id: str, size: int) -> None:
        if not self.caps.quota:
            raise Unsupported(f"this pool cannot limit the root of {instance_id}: "
                              f"{self.caps.quota_note}")
        if size < 0:
            raise InvalidInput("a size cannot be negative")
        self.roots.resize_root(instance_id, self._size(size))

    def clone_root(self, source_id: str, instance_id: str, disk: Disk, uid: int = 100000,
                   gid: int = 100000, snapshot: str | None = None) -> RootfsSpec:
        """uid/gid: the clone keeps the source's ownership (one id map per host)."""
        return self.roots.clone_root(source_id, instance_id,
                                     replace(disk, size=self._size(disk.size)), uid, gid,
                                     snapshot)

    def import_root(self, instance_id: str, disk: Disk, populate: Populate, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        return self.roots.import_root(instance_id, replace(disk, size=self._size(disk.size)),
                                      populate, uid, gid)

    def root_tree(self, instance_id: str,
                  snapshot: str | None = None) -> AbstractContextManager[Path]:
        return self.roots.root_tree(instance_id, snapshot)

    # --- volumes (quota'd directories of the shared filesystem)
    def _remove_area(self, area: Path, what: str) -> None:
        self._drop_ceph_snapshots(area)
        rmtree(area, what)

    def _check_unused(self, area: Path, what: str) -> None:
        """InUse while a running instance on this host mounts the volume."""
        if area.is_dir():
            users = loop.mount_users(area)
            if users:
                raise InUse(f"{what} is in use (process {users[0]} mounts it): stop it "
                            "first", pid=users[0])

    def _copy_area(self, src: Path, area: Path, size: int, what: str) -> None:
        """A new volume holding `src`'s tree."""
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
                self._check_unused(area, what)
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
            else self._snapshot(source_id, snapshot)
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

    # --- snapshots: a root's are the dir pool's (its image frozen and copied); a volume's
    # CephFS's own where it has them, else copies
    def _snapshots(self, of: SnapshotOf, target_id: str) -> Path:
        return self.path / "snapshots" / SnapshotOf(of).value / check_id(target_id)

    def _copied(self, target_id: str, snapshot_id: str) -> Path:
        return self._snapshots(SnapshotOf.VOLUME, target_id) / check_id(snapshot_id)

    def _ceph_snap(self, target_id: str, snapshot_id: str) -> Path:
        return self._volume(target_id) / ".snap" / check_id(snapshot_id)

    def _find_snapshot(self, target_id: str, snapshot_id: str) -> Path | None:
        copied = self._copied(target_id, snapshot_id)
        if copied.is_dir():
            return copied
        if self.ceph_snaps:
            snap = self._ceph_snap(target_id, snapshot_id)
            if self._volume(target_id).is_dir() and snap.is_dir():
                return snap
        return None

    def _snapshot(self, target_id: str, snapshot_id: str) -> Path:
        p = self._find_snapshot(target_id, snapshot_id)
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
        if of is SnapshotOf.ROOT:
            self.roots.create_snapshot(of, target_id, snapshot_id)
            return
        area = self.volume_path(target_id)
        check_id(snapshot_id)
        with self._lock(f"snap-{of}-{target_id}"):
            if self._find_snapshot(target_id, snapshot_id) is not None:
                raise Conflict(f"snapshot {snapshot_id} of {target_id} exists",
                               resource="snapshot")
            if self.ceph_snaps:
                (area / ".snap" / snapshot_id).mkdir()
                return
            dest = self._copied(target_id, snapshot_id)
            dest.parent.mkdir(parents=True, exist_ok=True)
            copy_into_place(area, dest)

    def has_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> bool:
        if of is SnapshotOf.ROOT:
            return self.roots.has_snapshot(of, target_id, snapshot_id)
        check_id(target_id)
        return self._find_snapshot(target_id, snapshot_id) is not None

    @_host
    def restore_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        if of is SnapshotOf.ROOT:
            self.roots.restore_snapshot(of, target_id, snapshot_id)
            return
        area = self.volume_path(target_id)
        snap = self._snapshot(target_id, snapshot_id)
        what = f"volume {target_id}"
        self._check_unused(area, what)
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
            st = snap.stat()
            os.chown(area, st.st_uid, st.st_gid)
            area.chmod(st.st_mode & 0o7777)

    @_host
    def delete_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        if of is SnapshotOf.ROOT:
            self.roots.delete_snapshot(of, target_id, snapshot_id)
            return
        copied = self._copied(target_id, snapshot_id)
        if copied.is_dir():
            rmtree(copied, f"snapshot {snapshot_id} of {target_id}")
        if self.ceph_snaps and self._volume(target_id).is_dir():
            snap = self._ceph_snap(target_id, snapshot_id)
            if snap.is_dir():
                snap.rmdir()

    def import_snapshot(self, instance_id: str, snapshot_id: str, populate: Populate) -> None:
        self.roots.import_snapshot(instance_id, snapshot_id, populate)
