"""Snapshots of instance roots and of volumes: taken consistently (what uses the disk is frozen for
the moment), listed, restored — any of them, not only the latest — and deleted.

Restoring a running instance's root stops it (its state is being thrown away), restores and
starts it again; a volume is restored while no running instance has it.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from lxcloud.core.caller import SYSTEM, Caller
from lxcloud.core.errors import (
    Conflict,
    InUse,
    InvalidCombination,
    InvalidInput,
    InvalidState,
    NotFound,
)
from lxcloud.core.ids import is_id, new_id
from lxcloud.core.lifecycle import State
from lxcloud.core.models import Operation, Snapshot
from lxcloud.db.engine import Database
from lxcloud.db.tables import SnapshotRow, utcnow
from lxcloud.drivers.storage.base import SnapshotOf
from lxcloud.node.protocol import NodeClient
from lxcloud.services.instances import InstanceService
from lxcloud.services.operations import Operations, Progress
from lxcloud.services.pools import PoolService
from lxcloud.services.tags import TagService
from lxcloud.services.volumes import VolumeService

SNAP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
MAX_DESCRIPTION = 255


def _to_model(r: Any) -> Snapshot:
    return Snapshot(id=r.id, name=r.name, of_kind=r.of_kind, target_id=r.target_id, pool=r.pool,
                    project_id=r.project_id, size=r.size, state=r.state,
                    description=r.description or "", created=r.created,
                    operation_id=r.operation_id)


class SnapshotService:
    def __init__(self, db: Database, ops: Operations, node: NodeClient, pools: PoolService,
                 instances: InstanceService, volumes: VolumeService, tags: TagService) -> None:
        self.db = db
        self.ops = ops
        self.node = node
        self.pools = pools
        self.instances = instances
        self.volumes = volumes
        self.tags = tags

    @staticmethod
    def _sees(caller: Caller, project_id: str | None) -> bool:
        return caller is SYSTEM or caller.is_admin or project_id == caller.project_id

    # --- queries
    def get(self, ref: str, *, target: str | None = None, caller: Caller = SYSTEM) -> Snapshot:
        """By id, or by name among the snapshots of `target` (an instance or volume id)."""
        with self.db.reader() as s:
            if is_id(ref, "snapshot"):
                row = s.get(SnapshotRow, ref)
            elif target is not None:
                row = s.scalar(select(SnapshotRow).where(SnapshotRow.target_id == target,
                                                         SnapshotRow.name == ref))
            else:
                row = None
            if row is None or (target is not None and row.target_id != target) or \
                    not self._sees(caller, row.project_id):
                raise NotFound(f"snapshot {ref!r} not found", resource="snapshot", id=ref)
            return _to_model(row)

    def list(self, *, target: str | None = None, of: SnapshotOf | None = None,
             ids: Sequence[str] | None = None, caller: Caller = SYSTEM) -> builtins.list[Snapshot]:
        with self.db.reader() as s:
            q = select(SnapshotRow).order_by(SnapshotRow.created)
            if caller is not SYSTEM and not caller.is_admin:
                q = q.where(SnapshotRow.project_id == caller.project_id)
            if target is not None:
                q = q.where(SnapshotRow.target_id == target)
            if of is not None:
                q = q.where(SnapshotRow.of_kind == str(of))
            if ids is not None:
                q = q.where(SnapshotRow.id.in_(list(ids)))
            return [_to_model(r) for r in s.scalars(q)]

    def of_instance(self, ref: str, *, caller: Caller = SYSTEM) -> builtins.list[Snapshot]:
        inst = self.instances.get(ref, caller=caller)
        return self.list(target=inst.id, of=SnapshotOf.ROOT, caller=caller)

    # --- create
    def create(self, of: SnapshotOf, target_ref: str, *, name: str | None = None,
               description: str = "", tags: dict[str, str] | None = None,
               caller: Caller = SYSTEM) -> tuple[Snapshot, Operation]:
        """A snapshot of an instance's root (running ones are frozen for the moment it is
        taken) or of a volume (the running instances it is attached to are frozen)."""
        if len(description) > MAX_DESCRIPTION:
            raise InvalidInput(f"a description is at most {MAX_DESCRIPTION} characters")
        if tags:
            self.tags.check(tags)
        if of is SnapshotOf.ROOT:
            inst = self.instances.get(target_ref, caller=caller)
            if inst.state not in (State.RUNNING, State.STOPPED, State.FROZEN):
                raise InvalidState(f"cannot snapshot an instance that is {inst.state}",
                                   state=inst.state)
            target_id, pool, size, project_id = (inst.id, inst.disks[0].pool, inst.limits.disk,
                                                 inst.project_id or "")
            freeze = [inst.id]
        else:
            vol = self.volumes.get(target_ref, caller=caller)
            if vol.state not in ("available", "in-use"):
                raise InvalidState(f"volume {vol.id} is {vol.state}", state=vol.state,
                                   resource="volume")
            target_id, pool, size, project_id = vol.id, vol.pool, vol.size, vol.project_id
            freeze = [a.instance_id for a in vol.attachments]
        if not self.pools.caps(pool).snapshots:
            raise InvalidCombination(f"pool {pool!r} cannot take snapshots", capability="snapshots",
                                     pool=pool)
        sid = new_id("snapshot")
        with self.db.session() as s:
            taken = set(s.scalars(select(SnapshotRow.name).where(SnapshotRow.target_id == target_id)))
            if name is None:
                name = next(f"snap{n}" for n in range(len(taken) + 1) if f"snap{n}" not in taken)
            elif not SNAP_NAME_RE.match(name) or is_id(name):
                raise InvalidInput(f"snapshot name {name!r} is not valid (letters, digits, . _ -; "
                                   "at most 63)")
            if name in taken:
                raise Conflict(f"{target_ref} already has a snapshot named {name!r}",
                               resource="snapshot")
            op = self.ops.begin(s, "snapshot", target_id, project_id=project_id)
            s.add(SnapshotRow(id=sid, name=name, of_kind=str(of), target_id=target_id, pool=pool,
                              project_id=project_id, size=size, state="pending",
                              description=description, operation_id=op.id, created=utcnow()))
            if tags:
                from dataclasses import replace

                self.tags.add(s, replace(caller, project_id=project_id), [sid], tags)

        def job(progress: Progress) -> dict[str, Any]:
            progress(30, f"taking snapshot {name}")
            self.node.create_snapshot(of, pool, target_id, sid, freeze)
            return {"snapshot_id": sid}

        def commit(s: Session) -> None:
            s.execute(update(SnapshotRow).where(SnapshotRow.id == sid).values(state="completed"))

        def on_error(err: Exception) -> None:    # nothing half-made stays: the row goes too
            with self.db.session() as s:
                s.execute(delete(SnapshotRow).where(SnapshotRow.id == sid))
                self.tags.remove_all(s, [sid])

        self.ops.submit(op, job, on_error=on_error, commit=commit)
        return self.get(sid), op

    # --- restore, delete
    def restore(self, ref: str, *, target: str | None = None,
                caller: Caller = SYSTEM) -> Operation:
        snap = self.get(ref, target=target, caller=caller)
        if snap.state != "completed":
            raise InvalidState(f"snapshot {snap.name} is {snap.state}", state=snap.state,
                               resource="snapshot")
        of = SnapshotOf(snap.of_kind)
        restart = False
        if of is SnapshotOf.ROOT:
            inst = self.instances.get(snap.target_id, caller=caller)
            if inst.state not in (State.RUNNING, State.STOPPED):
                raise InvalidState(f"cannot restore an instance that is {inst.state}",
                                   state=inst.state)
            restart = inst.state == State.RUNNING
        else:
            vol = self.volumes.get(snap.target_id, caller=caller)
            busy = [a for a in vol.attachments
                    if self.instances.get(a.instance_id).state != State.STOPPED]
            if busy:
                raise InUse(f"volume {vol.id} is attached to running instance "
                            f"{busy[0].instance_name or busy[0].instance_id}: stop it or detach "
                            "the volume first", resource="volume")
        with self.db.session() as s:
            op = self.ops.begin(s, "restore", snap.target_id, project_id=snap.project_id)

        def job(progress: Progress) -> None:
            if restart:
                progress(20, "stopping (its running state is thrown away)")
                self.node.stop(snap.target_id, force=True)
            progress(50, f"restoring snapshot {snap.name}")
            try:
                self.node.restore_snapshot(of, snap.pool, snap.target_id, snap.id)
            finally:
                if restart:
                    progress(80, "starting")
                    self.node.start(snap.target_id)

        def on_error(err: Exception) -> None:
            if of is SnapshotOf.ROOT:
                self.instances.sync_state(snap.target_id, reason=f"restore failed: {err}")

        self.ops.submit(op, job, on_error=on_error)
        return op

    def delete(self, ref: str, *, target: str | None = None,
               caller: Caller = SYSTEM) -> Operation:
        snap = self.get(ref, target=target, caller=caller)
        with self.db.session() as s:
            op = self.ops.begin(s, "delete-snapshot", snap.target_id, project_id=snap.project_id)
            last_of_deleted = self._last_of_deleted_volume(s, snap)

        def job(progress: Progress) -> None:
            progress(30, f"deleting snapshot {snap.name}")
            of = SnapshotOf(snap.of_kind)
            self.node.delete_snapshot(of, snap.pool, snap.target_id, snap.id)
            if last_of_deleted:     # the volume was deleted: its data was kept for this one
                self.node.delete_volume(snap.pool, snap.target_id)

        def commit(s: Session) -> None:
            s.execute(delete(SnapshotRow).where(SnapshotRow.id == snap.id))
            self.tags.remove_all(s, [snap.id])
            if of_volume:
                self.volumes.forget_if_unused(s, snap.target_id)

        of_volume = snap.of_kind == str(SnapshotOf.VOLUME)
        self.ops.submit(op, job, commit=commit)
        return op

    @staticmethod
    def _last_of_deleted_volume(s: Session, snap: Snapshot) -> bool:
        from lxcloud.db.tables import VolumeRow
        from lxcloud.services.volumes import HIDDEN

        if snap.of_kind != str(SnapshotOf.VOLUME):
            return False
        vol = s.get(VolumeRow, snap.target_id)
        others = s.scalar(select(SnapshotRow.id).where(SnapshotRow.target_id == snap.target_id,
                                                       SnapshotRow.id != snap.id))
        return vol is not None and vol.state == HIDDEN and others is None

    def forget_instance(self, s: Session, instance_id: str) -> None:
        """In the transaction that terminates an instance: its root's snapshots are gone with it
        (the host removed them with the root)."""
        ids = list(s.scalars(select(SnapshotRow.id).where(
            SnapshotRow.target_id == instance_id, SnapshotRow.of_kind == str(SnapshotOf.ROOT))))
        if ids:
            s.execute(delete(SnapshotRow).where(SnapshotRow.id.in_(ids)))
            self.tags.remove_all(s, ids)
