"""The "dir" pool: read-only image bases on a plain filesystem, instance roots as overlayfs layers.

Layout under the pool's path:
  bases/<image_id>/            unpacked once, never written again (the overlay's lower dir)
  locks/<image_id>.lock        flock: concurrent first launches of one image unpack it once
  instances/<id>/upper/        the instance's own changes (overlay upper dir)
  instances/<id>/work/         overlayfs' work dir: liblxc derives it as dirname(upper)/work

Nothing on the launch path grows with image size: create_root makes two empty directories.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import DriverError, NotFound
from lxcloud.core.instance import Disk
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.storage.base import PoolSpec, check_id, root_source

# liblxc 5.0.2 (storage/overlay.c) mounts `overlay:LOWER:UPPER` with workdir=dirname(UPPER)/work
# (verified: it mkdir_p()s that path inside the user namespace, so we pre-create it, owned by mapped root).
OVERLAY_WORKDIR = "work"


_check_id = check_id


class DirPool:
    """A StorageDriver over a directory, copy-on-write through overlayfs."""

    name = "dir"
    caps = StorageCaps(snapshots=False, quota=False, copy_on_write=True)

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self.path = Path(spec.path)

    def ensure(self) -> None:
        for sub in ("bases", "instances", "locks"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        # The pool root must be traversable by the containers' mapped root (it is not root on the
        # host), or the overlay mount inside the user namespace cannot reach the base.
        for p in (self.path, self.path / "bases", self.path / "instances"):
            p.chmod(0o711)

    # --- bases
    def base_path(self, image_id: str) -> Path:
        return self.path / "bases" / _check_id(image_id)

    def has_base(self, image_id: str) -> bool:
        return self.base_path(image_id).is_dir()

    @contextmanager
    def _image_lock(self, image_id: str) -> Iterator[None]:
        fd = os.open(self.path / "locks" / f"{_check_id(image_id)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)   # closing releases the flock

    def create_base(self, image_id: str, populate: Callable[[Path], None]) -> Path:
        """Populate once into a temp dir, then rename into place (atomic); later callers reuse it."""
        base = self.base_path(image_id)
        if base.is_dir():
            return base
        with self._image_lock(image_id):
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
        with self._image_lock(image_id):
            if not base.exists():
                return
            # Rename first so a half-deleted base is never mistaken for a complete one.
            doomed = self.path / "bases" / f".del-{image_id}-{uuid.uuid4().hex[:8]}"
            os.rename(base, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    # --- instance roots
    def instance_path(self, instance_id: str) -> Path:
        return self.path / "instances" / _check_id(instance_id)

    def create_root(self, instance_id: str, disk: Disk, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        image_id = root_source(disk)
        inst = self.instance_path(instance_id)
        base = self.base_path(image_id)
        if not base.is_dir():
            raise NotFound(f"image {image_id} has no base in pool {self.path}", resource="image")
        upper = inst / "upper"
        work = inst / OVERLAY_WORKDIR
        inst.mkdir(mode=0o711, exist_ok=True)
        for d in (upper, work):
            d.mkdir(mode=0o755, exist_ok=True)
            os.chown(d, uid, gid)
        # The upper dir's own mode/owner become the root directory's inside: copy the base's mode.
        upper.chmod(base.stat().st_mode & 0o7777)
        return RootfsSpec(kind="overlay", path=upper, lower=base)

    def has_root(self, instance_id: str) -> bool:
        return (self.instance_path(instance_id) / "upper").is_dir()

    def delete_root(self, instance_id: str) -> None:
        inst = self.instance_path(instance_id)
        if not inst.exists():
            return
        try:
            shutil.rmtree(inst)
        except OSError as e:
            # Most likely still mounted by a running container: say so instead of half-deleting.
            raise DriverError(f"cannot remove root of {instance_id}: {e}") from e

    def root_usage(self, instance_id: str) -> int:
        """Bytes allocated by the instance's own layer (its copy-on-write changes)."""
        inst = self.instance_path(instance_id)
        if not inst.exists():
            raise NotFound(f"instance root {instance_id} does not exist", resource="instance")
        total = 0
        for dirpath, dirnames, filenames in os.walk(inst):
            for n in dirnames + filenames:
                try:
                    total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
                except FileNotFoundError:
                    continue
        return total
