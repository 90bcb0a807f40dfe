"""The storage driver contract: one pool of image bases, instance roots, volumes and snapshots.

A driver is a stateless adapter over one pool (a directory, a btrfs filesystem, a shared mount),
built from a `PoolSpec` without touching the host; `ensure()` makes the pool real. It keeps no
database and knows no instances beyond the ids it is given. Every method raises `DriverError`
when the host refuses, `InvalidInput` for an id that could walk out of the pool or a size below
what is used, and `NotFound` for a root, volume or snapshot it does not hold.

What lives in a pool (each driver lays it out its own way):
  bases      one read-only tree per image, unpacked once (`create_base`)
  roots      one per instance: copy-on-write over its image's base where the driver can
             (`caps.copy_on_write`), limited to `Disk.size` bytes where it can (`caps.quota`)
  volumes    one directory tree per volume, limited to its size, bind-mounted into instances
  snapshots  of a root or of a volume, by id; copy-on-write where the driver can
             (`caps.cow_snapshots`); any one of them can be restored, not only the latest

Sizes are bytes; 0 means "no limit". Ownership: what an instance sees as its root user is the
mapped host uid/gid given (`uid`, `gid`); a volume's top directory is owned by it.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import DriverError, InvalidInput
from lxcloud.core.instance import Disk
from lxcloud.drivers.compute.base import RootfsSpec

Populate = Callable[[Path], None]


@dataclass(frozen=True)
class PoolSpec:
    """A pool as a host makes it.

    source "" and size > 0: the driver makes a loop-backed filesystem of `size` bytes (a sparse
    file beside `path`, formatted for the driver: XFS with project quotas for "dir", btrfs for
    "btrfs") and mounts it at `path`. source "" and size 0: `path` is a plain directory on the
    host's filesystem. source set: an existing directory (dir, shared) or block device (btrfs)
    that the operator owns; teardown never deletes its data beyond what the pool made in it."""

    name: str
    driver: str                     # "dir" | "btrfs" | "shared" | "fake"
    path: Path                      # the pool's directory on this host
    source: str = ""
    size: int = 0

    def __post_init__(self) -> None:
        check_id(self.name)
        if self.size < 0:
            raise InvalidInput("a pool's size cannot be negative")


@dataclass(frozen=True)
class PoolUsage:
    """What a pool's filesystem holds (bytes): for `pool show` and the metrics."""

    capacity: int
    used: int
    free: int


class SnapshotOf(StrEnum):
    ROOT = "root"        # an instance's root (target: the instance id)
    VOLUME = "volume"    # a volume (target: the volume id)


class StorageDriver(Protocol):
    name: str
    caps: StorageCaps               # quota/quota_note are known once ensure() has run
    path: Path

    # --- the pool
    def ensure(self) -> None:
        """Make the pool real and usable: its directories, and for a loop-backed pool the file,
        the filesystem and the mount (again after a host reboot). Idempotent. Sets `caps` from
        what the filesystem can do (quota, with `quota_note` saying why not when it cannot)."""

    def teardown(self) -> None:
        """Undo `ensure`: unmount and remove what the pool made (loop file, mount point, its
        directories in a given source). Missing: no-op. The caller has checked it is unused."""

    def usage(self) -> PoolUsage: ...

    # --- bases
    def has_base(self, image_id: str) -> bool: ...

    def create_base(self, image_id: str, populate: Populate) -> Path:
        """Make the read-only base for an image once: `populate(tmpdir)` fills it, then it is
        moved into place atomically. Concurrent callers for one image wait for the first.
        On failure nothing is left behind."""

    def delete_base(self, image_id: str) -> None:
        """Remove an image's base. Missing: no-op."""

    # --- instance roots
    def create_root(self, instance_id: str, disk: Disk, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        """The instance's root disk as the description says it (`disk.source` is its image): a
        copy-on-write root over the image's base, owned by the mapped root uid/gid, limited to
        `disk.size` where the pool has quotas. NotFound when the image has no base here.
        Idempotent: an existing root is kept as is (and its limit set to `disk.size`)."""

    def has_root(self, instance_id: str) -> bool: ...

    def delete_root(self, instance_id: str) -> None:
        """Remove the instance's root and its snapshots. Missing: no-op."""

    def root_usage(self, instance_id: str) -> int:
        """Bytes the instance's own data holds (its layer, not the shared base); NotFound when
        it has no root here."""

    def resize_root(self, instance_id: str, size: int) -> None:
        """The root's limit becomes `size` (0: none). InvalidInput when `size` is below what
        the root uses; Unsupported when the pool has no quotas. Works on a running instance
        where `caps.online_resize`."""

    def clone_root(self, source_id: str, instance_id: str, disk: Disk, uid: int = 100000,
                   gid: int = 100000, snapshot: str | None = None) -> RootfsSpec:
        """A new root for `instance_id` holding what `source_id`'s root holds now (or held in
        its snapshot `snapshot`): copy-on-write where the driver can. The source must not change
        meanwhile (the agent freezes or stops it). On failure nothing is left behind."""

    def import_root(self, instance_id: str, disk: Disk, populate: Populate, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        """A root made from a whole tree rather than an image's base: `populate(dir)` fills it
        (already owned by the mapped ids). On failure nothing is left behind."""

    def root_tree(self, instance_id: str,
                  snapshot: str | None = None) -> AbstractContextManager[Path]:
        """The whole tree of the root as the instance sees it (base and own changes merged; or
        of its snapshot `snapshot`), read-only, for as long as the context lasts: what an image
        or an export is made from. The instance is stopped (or its snapshot is used)."""

    # --- volumes
    def create_volume(self, volume_id: str, size: int, uid: int = 100000,
                      gid: int = 100000) -> Path:
        """A new empty volume limited to `size` bytes, its top directory owned by uid/gid;
        returns the directory instances bind-mount. Idempotent."""

    def has_volume(self, volume_id: str) -> bool: ...

    def volume_path(self, volume_id: str) -> Path:
        """The directory of an existing volume (NotFound otherwise)."""

    def delete_volume(self, volume_id: str) -> None:
        """Remove the volume and its snapshots. Missing: no-op."""

    def volume_usage(self, volume_id: str) -> int: ...

    def resize_volume(self, volume_id: str, size: int) -> None:
        """As resize_root, for a volume (attached or not)."""

    def clone_volume(self, source_id: str, volume_id: str, size: int,
                     snapshot: str | None = None, uid: int = 100000, gid: int = 100000) -> Path:
        """A new volume holding what `source_id` holds (or held in its snapshot `snapshot`)."""

    # --- snapshots (of roots and volumes)
    def create_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        """Keep the target's content as it is now under `snapshot_id` (copy-on-write where the
        driver can). Consistency is the caller's: it freezes a running instance meanwhile.
        Conflict when the snapshot exists; on failure nothing is left behind."""

    def has_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> bool: ...

    def restore_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        """The target's content becomes the snapshot's (which is kept, as are later ones). The
        target is not in use (a stopped instance; a volume attached to none running)."""

    def delete_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        """Missing: no-op."""

    def import_snapshot(self, instance_id: str, snapshot_id: str, populate: Populate) -> None:
        """A snapshot of the instance's root (made by import_root) whose content is the whole
        tree `populate(dir)` fills: how an exported instance's snapshots come back."""


F = TypeVar("F", bound=Callable[..., Any])


def host_step(fn: F) -> F:
    """The host refusing (a full pool, a missing file) is a DriverError naming the step."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OSError as e:
            raise DriverError(f"{fn.__name__.replace('_', ' ')}: {e}") from e
    return cast(F, wrapper)


def check_id(value: str) -> str:
    """An id or a name that becomes a path component: anything that could walk out of the pool
    is refused."""
    if not value or "/" in value or value in (".", "..") or value.startswith(".") or "\0" in value:
        raise InvalidInput(f"invalid storage id {value!r}")
    return value


@contextmanager
def pool_lock(pool: Path, name: str) -> Iterator[None]:
    """An exclusive flock on `pool`/locks/`name`.lock (a shared filesystem's own locks too),
    released when the context ends (closing the file releases it)."""
    fd = os.open(pool / "locks" / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def snapshots_dir(pool: Path, of: SnapshotOf, target_id: str) -> Path:
    """Where a pool keeps the snapshots of a root or volume: snapshots/root|volume/<target>/."""
    return pool / "snapshots" / SnapshotOf(of).value / check_id(target_id)


def root_source(disk: Disk) -> str:
    """The image a root disk is made from (InvalidInput for a disk that names none)."""
    if not disk.source:
        raise InvalidInput(f"disk {disk.name!r} names no image to make a root from")
    return disk.source


def walk_usage(path: Path) -> Iterator[int]:
    """Bytes allocated by every entry under `path` (st_blocks), entries vanishing meanwhile
    skipped: for pools whose filesystem cannot say it faster."""
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            try:
                yield os.lstat(os.path.join(dirpath, n)).st_blocks * 512
            except FileNotFoundError:
                continue
