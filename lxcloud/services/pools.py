"""Storage pools: the operator's records of where instance roots and volumes live, made real on
the host by their drivers (dir, btrfs, shared), with what each can do (quotas, snapshots).

The default pool is made on first start: a loop-backed filesystem of `default_pool_size` in the
data dir (so that disk limits are enforced out of the box), or a plain directory when the
operator says so (size 0) — and an existing default directory that already holds instances is
kept as it is (it keeps working, and says it cannot enforce a limit).
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from lxcloud.config import Settings
from lxcloud.core.caps import StorageCaps
from lxcloud.core.errors import Conflict, InUse, InvalidCombination, InvalidInput, NotFound
from lxcloud.core.ids import new_id, valid_name
from lxcloud.core.lifecycle import State
from lxcloud.core.models import Pool
from lxcloud.core.units import format_size, parse_size
from lxcloud.db.engine import Database
from lxcloud.db.tables import InstanceRow, PoolRow, VolumeRow, utcnow
from lxcloud.drivers.storage.base import PoolSpec
from lxcloud.drivers.storage.registry import STORAGE
from lxcloud.node.protocol import NodeClient

log = logging.getLogger(__name__)

DEFAULT_POOL = "default"
# what an operator may make (the fake is for tests)
DRIVERS = ("dir", "btrfs", "shared")
MIN_LOOP_SIZE = 256 * 1024**2


def _to_model(r: Any) -> Pool:
    return Pool(id=r.id, name=r.name, driver=r.driver, source=r.source, size=r.size, path=r.path,
                created=r.created, default=r.name == DEFAULT_POOL)


class PoolService:
    def __init__(self, settings: Settings, db: Database, node: NodeClient) -> None:
        self.settings = settings
        self.db = db
        self.node = node
        self.on_change: list[Any] = []     # told (no arguments) when a pool comes or goes

    @staticmethod
    def spec(pool: Pool) -> PoolSpec:
        return PoolSpec(name=pool.name, driver=pool.driver, path=Path(pool.path),
                        source=pool.source, size=pool.size)

    # --- start-up
    def ensure_all(self) -> None:
        """The default pool's row made on first start; every pool made real on the host (again
        after a reboot). A pool the host cannot bring up is logged, not fatal: the others work."""
        self._ensure_default_row()
        for pool in self.list(with_usage=False):
            try:
                self.node.ensure_pool(self.spec(pool))
            except Exception:
                log.exception("pool %s could not be brought up on this host", pool.name)
        self._changed()

    def _ensure_default_row(self) -> None:
        with self.db.session() as s:
            if s.scalar(select(PoolRow).where(PoolRow.name == DEFAULT_POOL)) is not None:
                return
            path = self.settings.pools_dir / DEFAULT_POOL
            size = parse_size(self.settings.default_pool_size or 0, "default_pool_size")
            if size and path.is_dir() and any(path.iterdir()):
                # made before pools had records: its instances stay where they are
                log.warning("the default pool %s holds data from before; kept as a plain "
                            "directory (no enforced disk limits)", path)
                size = 0
            s.add(PoolRow(id=new_id("pool"), name=DEFAULT_POOL, driver="dir", source="",
                          size=size, path=str(path)))

    # --- queries
    def get(self, name: str, *, with_usage: bool = True) -> Pool:
        with self.db.reader() as s:
            row = s.scalar(select(PoolRow).where(PoolRow.name == name))
            if row is None:
                raise NotFound(f"pool {name!r} not found", resource="pool", id=name)
            pool = _to_model(row)
        return self._with_usage(pool) if with_usage else pool

    def list(self, *, with_usage: bool = True) -> builtins.list[Pool]:
        with self.db.reader() as s:
            pools = [_to_model(r) for r in s.scalars(select(PoolRow).order_by(PoolRow.created))]
        return [self._with_usage(p) for p in pools] if with_usage else pools

    def caps(self, name: str) -> StorageCaps:
        """What the pool `name` can do on this host (InvalidCombination when it has none)."""
        caps = self.node.capabilities().storage.get(name)
        if caps is None:
            raise InvalidCombination(f"pool {name!r} does not exist on this host",
                                     capability="pool", pool=name)
        return caps

    def _with_usage(self, pool: Pool) -> Pool:
        with self.db.reader() as s:
            disks = s.execute(select(InstanceRow.disks).where(
                InstanceRow.state != State.TERMINATED)).scalars()
            pool.instances = sum(1 for ds in disks
                                 if any(d.get("name", "root") == "root" and d.get("pool") == pool.name
                                        for d in ds or ()))
            pool.volumes = s.scalar(select(func.count()).select_from(VolumeRow).where(
                VolumeRow.pool == pool.name)) or 0
        try:
            caps = self.node.capabilities().storage.get(pool.name)
            usage = self.node.pool_usage(pool.name)
        except Exception as e:     # the host cannot say: the record is still shown
            pool.quota_note = f"not available on this host: {e}"
            return pool
        pool.capacity, pool.used, pool.free = usage.capacity, usage.used, usage.free
        if caps is not None:
            pool.quota, pool.quota_note, pool.caps = caps.quota, caps.quota_note, asdict(caps)
        return pool

    # --- changes
    def create(self, name: str, driver: str, *, source: str = "", size: str | int = 0) -> Pool:
        """A new pool, made on the host before it is recorded (a pool the host refuses leaves no
        row; a row that cannot be written leaves no pool)."""
        if not valid_name(name):
            raise InvalidInput(f"pool name {name!r} is not valid: a letter, then letters, digits "
                               "or dashes, at most 63 characters", resource="pool")
        if driver not in DRIVERS or driver not in STORAGE.names():
            raise InvalidInput(f"unknown pool driver {driver!r} (known: {', '.join(DRIVERS)})",
                               resource="pool")
        nbytes = parse_size(size, "size")
        if source and nbytes:
            raise InvalidInput("give a source or a size, not both: a size makes a loop-backed "
                               "pool in the data dir, a source uses what is there")
        if driver == "shared" and not source:
            raise InvalidInput("a shared pool needs --source: the directory every host mounts")
        if nbytes and nbytes < MIN_LOOP_SIZE:
            raise InvalidInput(f"a loop-backed pool needs at least {format_size(MIN_LOOP_SIZE)}")
        if source:
            src = Path(source)
            if not src.is_absolute():
                raise InvalidInput(f"source {source!r} must be an absolute path")
            if not src.exists():
                raise InvalidInput(f"source {source!r} does not exist on this host")
            if driver != "btrfs" and not src.is_dir():
                raise InvalidInput(f"source {source!r} is not a directory")
        with self.db.reader() as s:
            if s.scalar(select(PoolRow).where(PoolRow.name == name)) is not None:
                raise Conflict(f"a pool named {name!r} already exists", resource="pool")
        # a given directory is the pool's place; else the data dir holds it
        path = Path(source) if source and driver != "btrfs" else self.settings.pools_dir / name
        pool = Pool(id=new_id("pool"), name=name, driver=driver, source=source, size=nbytes,
                    path=str(path), created=utcnow())
        if source and driver != "btrfs":
            # the pool's own directory inside the operator's: nothing of theirs is touched
            pool.path = str(path / f"lxcloud-{self.settings.cloud_id}-{name}")
        self.node.ensure_pool(self.spec(pool))
        try:
            with self.db.session() as s:
                s.add(PoolRow(id=pool.id, name=name, driver=driver, source=source, size=nbytes,
                              path=pool.path, created=pool.created))
        except Exception:
            self.node.delete_pool(name)
            raise
        self._changed()
        return self.get(name)

    def delete(self, name: str) -> None:
        """Refused for the default pool and while instances or volumes are on it."""
        pool = self.get(name, with_usage=False)
        if pool.default:
            raise InvalidInput("the default pool cannot be deleted", resource="pool")
        used = self._with_usage(pool)
        if used.instances or used.volumes:
            raise InUse(f"pool {name!r} is in use by {used.instances} instance(s) and "
                        f"{used.volumes} volume(s)", resource="pool", instances=used.instances,
                        volumes=used.volumes)
        self.node.delete_pool(name)
        with self.db.session() as s:
            row = s.scalar(select(PoolRow).where(PoolRow.name == name))
            if row is not None:
                s.delete(row)
        self._changed()

    def _changed(self) -> None:
        for cb in self.on_change:
            cb()
