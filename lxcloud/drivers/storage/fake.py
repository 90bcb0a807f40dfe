"""An in-memory StorageDriver with the dir pool's contract, for unit tests (nothing on disk)."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import NotFound
from lxcloud.core.instance import Disk
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.storage.base import PoolSpec, check_id, root_source

_check_id = check_id


class FakePool:
    """Bases and roots as records. `populate` fills a throwaway temporary directory (so that the
    contract's "populate fills it" holds); nothing is kept on disk."""

    name = "fake"

    def __init__(self, spec: PoolSpec | None = None, *, caps: StorageCaps | None = None) -> None:
        self.spec = spec or PoolSpec("fake", "fake", Path("/nonexistent/fake-pool"))
        self.path = Path(self.spec.path)
        self.caps = caps or StorageCaps(copy_on_write=True, quota=False)
        self.bases: set[str] = set()
        self.roots: dict[str, str] = {}      # instance id -> image id
        self._lock = threading.Lock()

    def ensure(self) -> None:
        pass

    def has_base(self, image_id: str) -> bool:
        return _check_id(image_id) in self.bases

    def has_root(self, instance_id: str) -> bool:
        return _check_id(instance_id) in self.roots

    def create_base(self, image_id: str, populate: Callable[[Path], None]) -> Path:
        with self._lock:
            if _check_id(image_id) not in self.bases:
                with tempfile.TemporaryDirectory(prefix="fake-base-") as tmp:
                    populate(Path(tmp))
                self.bases.add(image_id)
        return self.path / "bases" / image_id

    def delete_base(self, image_id: str) -> None:
        with self._lock:
            self.bases.discard(_check_id(image_id))

    def create_root(self, instance_id: str, disk: Disk, uid: int = 100000,
                    gid: int = 100000) -> RootfsSpec:
        image_id = root_source(disk)
        _check_id(instance_id)
        with self._lock:
            if _check_id(image_id) not in self.bases:
                raise NotFound(f"image {image_id} has no base in pool {self.path}", resource="image")
            self.roots[instance_id] = image_id
        return RootfsSpec(kind="overlay", path=self.path / "instances" / instance_id / "upper",
                          lower=self.path / "bases" / image_id)

    def delete_root(self, instance_id: str) -> None:
        with self._lock:
            self.roots.pop(_check_id(instance_id), None)

    def root_usage(self, instance_id: str) -> int:
        if _check_id(instance_id) not in self.roots:
            raise NotFound(f"instance root {instance_id} does not exist", resource="instance")
        return 0
