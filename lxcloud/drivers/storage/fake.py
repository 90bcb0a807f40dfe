"""An in-memory StorageDriver with the dir pool's contract, for unit tests (nothing on disk).

It really keeps what a pool holds: bases, roots (their image, limit and files), volumes (size,
files), snapshots (copies of a root's or a volume's files), and refuses what a real pool refuses
(a limit below what is used, an unknown snapshot, a duplicate one, an id that walks out). Files
are a name → bytes map per root or volume; what they use is the sum of their sizes, or what a
test set with `set_usage`. `write`/`read` stand in for an instance writing into its root.
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import Conflict, InvalidInput, NotFound, Unsupported
from lxcloud.core.instance import Disk
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.storage.base import (
    PoolSpec,
    PoolUsage,
    Populate,
    SnapshotOf,
    check_id,
    root_source,
)

_check_id = check_id
CAPACITY = 1 << 40          # what the fake pool says it holds
# By default like a loop-backed dir pool: limits enforced, snapshots, volumes (the services'
# tests count on it); NO_QUOTA_CAPS like a plain dir pool, which cannot enforce a limit
QUOTA_CAPS = StorageCaps(copy_on_write=True, quota=True, quota_visible=True, online_resize=True,
                         snapshots=True, cow_snapshots=True, volumes=True)
NO_QUOTA_CAPS = StorageCaps(copy_on_write=True, quota=False, snapshots=True, cow_snapshots=True,
                            volumes=True, quota_note="the fake pool was made without quotas")


@dataclass
class FakeArea:
    """A root's or a volume's content: its limit, its files, what a test says it uses."""

    size: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    image: str = ""                     # a root's image ("" for one imported whole)
    usage: int | None = None            # set by a test; else the files' sizes

    @property
    def used(self) -> int:
        return self.usage if self.usage is not None else sum(len(v) for v in self.files.values())


def _read_tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for n in filenames:
            p = Path(dirpath) / n
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


class FakePool:
    """Bases, roots, volumes and snapshots as records. `populate` fills a throwaway temporary
    directory (so that the contract's "populate fills it" holds); what it wrote is kept as the
    files of the root or snapshot it made."""

    name = "fake"

    def __init__(self, spec: PoolSpec | None = None, *, caps: StorageCaps | None = None) -> None:
        self.spec = spec or PoolSpec("fake", "fake", Path("/nonexistent/fake-pool"))
        self.path = Path(self.spec.path)
        self.caps = caps or QUOTA_CAPS
        self.bases: dict[str, dict[str, bytes]] = {}     # image id -> the files populate made
        self.roots: dict[str, FakeArea] = {}
        self.volumes: dict[str, FakeArea] = {}
        self.snapshots: dict[tuple[SnapshotOf, str, str], FakeArea] = {}
        self.ensured = False
        self._lock = threading.RLock()

    # --- the pool
    def ensure(self) -> None:
        self.ensured = True

    def teardown(self) -> None:
        with self._lock:
            self.bases.clear()
            self.roots.clear()
            self.volumes.clear()
            self.snapshots.clear()
            self.ensured = False

    def usage(self) -> PoolUsage:
        with self._lock:
            used = sum(a.used for a in (*self.roots.values(), *self.volumes.values(),
                                        *self.snapshots.values()))
        return PoolUsage(capacity=CAPACITY, used=used, free=CAPACITY - used)

    # --- test hooks
    def _area(self, of: SnapshotOf, target_id: str) -> FakeArea:
        table = self.roots if of is SnapshotOf.ROOT else self.volumes
        try:
            return table[_check_id(target_id)]
        except KeyError:
            raise NotFound(f"{of.value} {target_id} does not exist",
                           resource="instance" if of is SnapshotOf.ROOT else "volume") from None

    def write(self, of: SnapshotOf, target_id: str, name: str, data: bytes) -> None:
        """What an instance writing the file `name` into its root (or a volume) does."""
        with self._lock:
            area = self._area(of, target_id)
            if self.caps.quota and area.size and area.used - len(area.files.get(name, b"")) \
                    + len(data) > area.size:
                raise OSError(28, "No space left on device", name)
            area.files[name] = data

    def read(self, of: SnapshotOf, target_id: str, name: str) -> bytes | None:
        with self._lock:
            return self._area(of, target_id).files.get(name)

    def set_usage(self, of: SnapshotOf, target_id: str, used: int | None) -> None:
        """Pretend the root or volume uses `used` bytes (None: what its files hold)."""
        with self._lock:
            self._area(of, target_id).usage = used

    # --- bases
    def has_base(self, image_id: str) -> bool:
        return _check_id(image_id) in self.bases

    def create_base(self, image_id: str, populate: Callable[[Path], None]) -> Path:
        with self._lock:
            if _check_id(image_id) not in self.bases:
                self.bases[image_id] = self._populated(populate)
        return self.path / "bases" / image_id

    def delete_base(self, image_id: str) -> None:
        with self._lock:
            self.bases.pop(_check_id(image_id), None)

    # --- roots
    def _rootfs(self, instance_id: str) -> RootfsSpec:
        image = self.roots[instance_id].image
        return RootfsSpec(kind="overlay", path=self.path / "instances" / instance_id / "upper",
                          lower=self.path / ("bases/" + image if image else "empty"))

    def _limit(self, size: int) -> int:
        return size if self.caps.quota else 0

    def create_root(self, instance_id: str, disk: Disk, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        image_id = root_source(disk)
        _check_id(instance_id)
        with self._lock:
            if instance_id in self.roots:
                if self.caps.quota and self.roots[instance_id].size != disk.size:
                    self.resize_root(instance_id, disk.size)
                return self._rootfs(instance_id)
            if _check_id(image_id) not in self.bases:
                raise NotFound(f"image {image_id} has no base in pool {self.path}", resource="image")
            self.roots[instance_id] = FakeArea(size=self._limit(disk.size), image=image_id)
            return self._rootfs(instance_id)

    def has_root(self, instance_id: str) -> bool:
        return _check_id(instance_id) in self.roots

    def delete_root(self, instance_id: str) -> None:
        with self._lock:
            self.roots.pop(_check_id(instance_id), None)
            self._drop_snapshots(SnapshotOf.ROOT, instance_id)

    def root_usage(self, instance_id: str) -> int:
        return self._area(SnapshotOf.ROOT, instance_id).used

    def _resize(self, area: FakeArea, size: int, what: str) -> None:
        if not self.caps.quota:
            raise Unsupported(f"this pool cannot limit {what}: {self.caps.quota_note}")
        if size and area.used > size:
            raise InvalidInput(f"{what} uses {area.used} bytes: it cannot be limited to {size}",
                               used=area.used, size=size)
        area.size = size

    def resize_root(self, instance_id: str, size: int) -> None:
        with self._lock:
            self._resize(self._area(SnapshotOf.ROOT, instance_id), size,
                         f"the root of {instance_id}")

    def _copy_into(self, src: FakeArea, size: int, what: str) -> FakeArea:
        new = copy.deepcopy(src)
        new.size = self._limit(size)
        if new.size and new.used > new.size:
            raise InvalidInput(f"{what} would hold {new.used} bytes, over {new.size}",
                               used=new.used, size=new.size)
        return new

    def _source(self, of: SnapshotOf, target_id: str, snapshot: str | None) -> FakeArea:
        if snapshot is None:
            return self._area(of, target_id)
        return self._snapshot(of, target_id, snapshot)

    def clone_root(self, source_id: str, instance_id: str, disk: Disk, uid: int = 100000,
                   gid: int = 100000, snapshot: str | None = None) -> RootfsSpec:
        with self._lock:
            src = self._source(SnapshotOf.ROOT, source_id, snapshot)
            if _check_id(instance_id) in self.roots:
                raise Conflict(f"instance root {instance_id} exists", resource="instance")
            self.roots[instance_id] = self._copy_into(src, disk.size, f"the root of {instance_id}")
            return self._rootfs(instance_id)

    def _populated(self, populate: Populate) -> dict[str, bytes]:
        with tempfile.TemporaryDirectory(prefix="fake-tree-") as tmp:
            populate(Path(tmp))
            return _read_tree(Path(tmp))

    def import_root(self, instance_id: str, disk: Disk, populate: Populate, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        with self._lock:
            if _check_id(instance_id) in self.roots:
                raise Conflict(f"instance root {instance_id} exists", resource="instance")
        area = FakeArea(size=self._limit(disk.size), files=self._populated(populate))
        if area.size and area.used > area.size:
            raise OSError(28, "No space left on device")
        with self._lock:
            self.roots[instance_id] = area
            return self._rootfs(instance_id)

    def root_tree(self, instance_id: str,
                  snapshot: str | None = None) -> AbstractContextManager[Path]:
        with self._lock:
            area = self._source(SnapshotOf.ROOT, instance_id, snapshot)
            files = {**self.bases.get(area.image, {}), **area.files}   # the layer over its base
        return self._tree(files)

    @contextmanager
    def _tree(self, files: dict[str, bytes]) -> Iterator[Path]:
        # the "merged" tree: a throwaway directory holding the root's files
        with tempfile.TemporaryDirectory(prefix="fake-merged-") as tmp:
            for name, data in files.items():
                p = Path(tmp) / name
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
            yield Path(tmp)

    # --- volumes
    def _volume_dir(self, volume_id: str) -> Path:
        return self.path / "volumes" / volume_id

    def create_volume(self, volume_id: str, size: int, uid: int = 100000,
                      gid: int = 100000) -> Path:
        with self._lock:
            self.volumes.setdefault(_check_id(volume_id), FakeArea(size=self._limit(size)))
        return self._volume_dir(volume_id)

    def has_volume(self, volume_id: str) -> bool:
        return _check_id(volume_id) in self.volumes

    def volume_path(self, volume_id: str) -> Path:
        self._area(SnapshotOf.VOLUME, volume_id)
        return self._volume_dir(volume_id)

    def delete_volume(self, volume_id: str) -> None:
        with self._lock:
            self.volumes.pop(_check_id(volume_id), None)
            self._drop_snapshots(SnapshotOf.VOLUME, volume_id)

    def volume_usage(self, volume_id: str) -> int:
        return self._area(SnapshotOf.VOLUME, volume_id).used

    def resize_volume(self, volume_id: str, size: int) -> None:
        with self._lock:
            self._resize(self._area(SnapshotOf.VOLUME, volume_id), size, f"volume {volume_id}")

    def clone_volume(self, source_id: str, volume_id: str, size: int,
                     snapshot: str | None = None, uid: int = 100000, gid: int = 100000) -> Path:
        with self._lock:
            src = self._source(SnapshotOf.VOLUME, source_id, snapshot)
            if _check_id(volume_id) in self.volumes:
                raise Conflict(f"volume {volume_id} exists", resource="volume")
            self.volumes[volume_id] = self._copy_into(src, size, f"volume {volume_id}")
        return self._volume_dir(volume_id)

    # --- snapshots
    def _key(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> tuple[SnapshotOf, str, str]:
        return SnapshotOf(of), _check_id(target_id), _check_id(snapshot_id)

    def _snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> FakeArea:
        try:
            return self.snapshots[self._key(of, target_id, snapshot_id)]
        except KeyError:
            raise NotFound(f"snapshot {snapshot_id} of {target_id} does not exist",
                           resource="snapshot") from None

    def _drop_snapshots(self, of: SnapshotOf, target_id: str) -> None:
        for key in [k for k in self.snapshots if k[0] is of and k[1] == target_id]:
            del self.snapshots[key]

    def create_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        with self._lock:
            area = self._area(of, target_id)
            key = self._key(of, target_id, snapshot_id)
            if key in self.snapshots:
                raise Conflict(f"snapshot {snapshot_id} of {target_id} exists",
                               resource="snapshot")
            self.snapshots[key] = copy.deepcopy(area)

    def has_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> bool:
        return self._key(of, target_id, snapshot_id) in self.snapshots

    def restore_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        with self._lock:
            area = self._area(of, target_id)
            snap = self._snapshot(of, target_id, snapshot_id)
            what = f"{of.value} {target_id}"
            restored = self._copy_into(snap, area.size, what)
            area.files, area.image, area.usage = restored.files, restored.image, restored.usage

    def delete_snapshot(self, of: SnapshotOf, target_id: str, snapshot_id: str) -> None:
        with self._lock:
            self.snapshots.pop(self._key(of, target_id, snapshot_id), None)

    def import_snapshot(self, instance_id: str, snapshot_id: str, populate: Populate) -> None:
        with self._lock:
            area = self._area(SnapshotOf.ROOT, instance_id)
            key = self._key(SnapshotOf.ROOT, instance_id, snapshot_id)
            if key in self.snapshots:
                raise Conflict(f"snapshot {snapshot_id} of {instance_id} exists",
                               resource="snapshot")
        snap = FakeArea(size=area.size, files=self._populated(populate))
        with self._lock:
            self.snapshots[key] = snap
