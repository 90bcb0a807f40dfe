"""Volumes: disks of their own size on a pool, attached to instances (stopped or running) at a
path inside, detached, resized, deleted; made empty or from a volume's snapshot.

A volume attaches to one instance at a time unless it is shared. An attachment is a row and a
device in the instance's disks (so the instance's description carries it to the host at every
start); both change in the transaction that records the end of the operation that made the
change on the host, so the records never claim what the host did not do.
"""

from __future__ import annotations

import builtins
import dataclasses
import posixpath
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from lxcloud.config import Settings
from lxcloud.core.caller import SYSTEM, Caller
from lxcloud.core.errors import (
    Conflict,
    Forbidden,
    InUse,
    InvalidCombination,
    InvalidInput,
    InvalidState,
    NotFound,
    Reason,
)
from lxcloud.core.ids import is_id, new_id, valid_name
from lxcloud.core.instance import Disk, disk_to_dict
from lxcloud.core.lifecycle import State
from lxcloud.core.models import Attachment, Operation, Volume
from lxcloud.core.units import format_size, parse_size
from lxcloud.db.engine import Database
from lxcloud.db.tables import AttachmentRow, InstanceRow, SnapshotRow, VolumeRow, utcnow
from lxcloud.node.protocol import NodeClient
from lxcloud.services.operations import Operations, Progress
from lxcloud.services.pools import DEFAULT_POOL, PoolService
from lxcloud.services.tags import TagService

if TYPE_CHECKING:
    from lxcloud.services.instances import InstanceService

MIN_VOLUME = 16 * 1024**2
MAX_VOLUME = 16 * 1024**4
# what a volume's mount path may not be (the instance's own system directories)
_RESERVED = ("/proc", "/sys", "/dev", "/run/lxcloud")
_DEVICE_RE = re.compile(r"^/dev/[a-z][a-z0-9]{1,15}$")
VOLUME_TYPES = ("standard", "gp2", "gp3", "io1", "io2", "sc1", "st1")


def default_path(volume_id: str) -> str:
    """Where a volume appears inside an instance unless asked otherwise."""
    return f"/media/{volume_id}"


def check_path(path: str) -> str:
    """A mount path inside an instance: absolute, normalised, not / nor a system directory."""
    if not path.startswith("/") or "\0" in path or len(path) > 255:
        raise InvalidInput(f"mount path {path!r} must be an absolute path (at most 255 characters)")
    norm = posixpath.normpath(path)
    if norm != path.rstrip("/") or ".." in path.split("/"):
        raise InvalidInput(f"mount path {path!r} must be normalised (no '..', '.', '//')")
    if norm == "/" or any(norm == r or norm.startswith(r + "/") for r in _RESERVED):
        raise InvalidInput(f"a volume cannot be mounted at {norm}")
    return norm


def _attachment(r: Any, names: dict[str, str]) -> Attachment:
    return Attachment(volume_id=r.volume_id, instance_id=r.instance_id, path=r.path,
                      device=r.device, state=r.state, created=r.created,
                      instance_name=names.get(r.instance_id))


def _to_model(r: Any, attachments: builtins.list[Attachment]) -> Volume:
    return Volume(id=r.id, name=r.name, project_id=r.project_id, pool=r.pool, size=r.size,
                  state=r.state, shared=bool(r.shared), zone=r.zone, volume_type=r.volume_type,
                  created=r.created, updated=r.updated, snapshot_id=r.snapshot_id,
                  state_reason=r.state_reason, operation_id=r.operation_id,
                  attachments=attachments)


# a volume deleted while it still has snapshots: its data stays for them, it is seen no more
HIDDEN = "deleted"


class VolumeService:
    def __init__(self, settings: Settings, db: Database, ops: Operations, node: NodeClient,
                 pools: PoolService, tags: TagService) -> None:
        self.settings = settings
        self.db = db
        self.ops = ops
        self.node = node
        self.pools = pools
        self.tags = tags
        self.instances: InstanceService | None = None     # set by the Cloud (they know each other)

    # --- queries
    @staticmethod
    def _sees(caller: Caller, project_id: str | None) -> bool:
        return caller is SYSTEM or caller.is_admin or project_id == caller.project_id

    def get(self, ref: str, *, caller: Caller = SYSTEM, with_usage: bool = False) -> Volume:
        """By id, or by name within the caller's project; another project's is "not found"."""
        with self.db.reader() as s:
            q = select(VolumeRow).where(VolumeRow.state != HIDDEN)
            if is_id(ref, "volume"):
                row = s.scalar(q.where(VolumeRow.id == ref))
            else:
                rows = list(s.scalars(q.where(VolumeRow.name == ref)))
                # names are per project: the caller's own first (an admin may name another's)
                mine = [r for r in rows if r.project_id == caller.project_id]
                seen = mine or (rows if caller is SYSTEM or caller.is_admin else [])
                row = seen[0] if seen else None
            if row is None or not self._sees(caller, row.project_id):
                raise NotFound(f"volume {ref!r} not found", resource="volume", id=ref)
            vol = _to_model(row, self._attachments(s, [row.id]).get(row.id, []))
        if with_usage:
            try:
                vol.used = self.node.volume_usage(vol.pool, vol.id)
            except Exception:
                vol.used = None
        return vol

    def list(self, *, caller: Caller = SYSTEM, ids: Sequence[str] | None = None,
             all_projects: bool = False) -> builtins.list[Volume]:
        if all_projects and not (caller is SYSTEM or caller.is_admin):
            raise Forbidden("only an admin may list the volumes of all projects")
        with self.db.reader() as s:
            q = select(VolumeRow).where(VolumeRow.state != HIDDEN).order_by(VolumeRow.created)
            if caller is not SYSTEM and not all_projects:
                q = q.where(VolumeRow.project_id == caller.project_id)
            if ids is not None:
                q = q.where(VolumeRow.id.in_(list(ids)))
            rows = list(s.scalars(q))
            atts = self._attachments(s, [r.id for r in rows])
            return [_to_model(r, atts.get(r.id, [])) for r in rows]

    @staticmethod
    def _attachments(s: Session, volume_ids: Sequence[str]) -> dict[str, builtins.list[Attachment]]:
        if not volume_ids:
            return {}
        rows = list(s.scalars(select(AttachmentRow).where(
            AttachmentRow.volume_id.in_(list(volume_ids))).order_by(AttachmentRow.created)))
        names = dict(s.execute(select(InstanceRow.id, InstanceRow.name).where(  # type: ignore[arg-type]
            InstanceRow.id.in_([r.instance_id for r in rows]))).all()) if rows else {}
        out: dict[str, builtins.list[Attachment]] = {}
        for r in rows:
            out.setdefault(r.volume_id, []).append(_attachment(r, names))
        return out

    # --- create
    def create(self, name: str | None, size: str | int | None, *, pool: str | None = None,
               shared: bool = False, zone: str | None = None, volume_type: str | None = None,
               snapshot_id: str | None = None, tags: dict[str, str] | None = None,
               caller: Caller = SYSTEM) -> tuple[Volume, Operation]:
        """A new volume, empty or holding a volume snapshot's data (its size then defaults to
        the snapshot's, and may only be larger). Made on the host by an operation."""
        src = self._snapshot(snapshot_id, caller) if snapshot_id else None
        if size is None:
            if src is None:
                raise InvalidInput("a volume needs a size (or a snapshot to copy)",
                                   reason=Reason.MISSING_PARAMETER)
            nbytes = src.size
        else:
            nbytes = parse_size(size, "size")
        if not MIN_VOLUME <= nbytes <= MAX_VOLUME:
            raise InvalidInput(f"a volume's size must be between {format_size(MIN_VOLUME)} and "
                               f"{format_size(MAX_VOLUME)}")
        if src is not None and nbytes < src.size:
            raise InvalidInput(f"the volume must be at least as large as snapshot {src.id} "
                               f"({format_size(src.size)})")
        zone = zone or self.settings.zones[0]
        if zone not in self.settings.zones:
            raise InvalidInput(f"invalid availability zone: [{zone}] (this cloud has "
                               f"{', '.join(self.settings.zones)})", resource="zone")
        if volume_type is not None and volume_type not in VOLUME_TYPES:
            raise InvalidInput(f"invalid volume type {volume_type!r} (one of "
                               f"{', '.join(VOLUME_TYPES)})")
        pool_name = src.pool if src is not None else (pool or DEFAULT_POOL)
        if src is not None and pool and pool != src.pool:
            raise InvalidInput(f"a volume from snapshot {src.id} is made on its pool {src.pool!r}")
        caps = self.pools.caps(pool_name)
        if not caps.volumes or not caps.quota:
            raise InvalidCombination(f"pool {pool_name!r} cannot hold volumes of their own size"
                                     + (f" ({caps.quota_note})" if caps.quota_note else ""),
                                     capability="quota", pool=pool_name)
        if tags:
            self.tags.check(tags)
        vid = new_id("volume")
        if name is None:
            name = vid
        elif not valid_name(name):
            raise InvalidInput(f"volume name {name!r} is not valid: a letter, then letters, "
                               "digits or dashes, at most 63 characters", resource="volume")
        project_id = caller.project_id or self._default_project()
        now = utcnow()
        with self.db.session() as s:
            if s.scalar(select(VolumeRow.id).where(VolumeRow.project_id == project_id,
                                                   VolumeRow.name == name)):
                raise Conflict(f"a volume named {name!r} already exists", resource="volume")
            op = self.ops.begin(s, "create-volume", vid, project_id=project_id, new=True)
            s.add(VolumeRow(id=vid, name=name, project_id=project_id, pool=pool_name, size=nbytes,
                            state="creating", shared=shared, zone=zone,
                            volume_type=volume_type or "standard",
                            snapshot_id=src.id if src else None, operation_id=op.id,
                            created=now, updated=now))
            if tags:
                self.tags.add(s, dataclasses.replace(caller, project_id=project_id), [vid], tags)

        def job(progress: Progress) -> dict[str, Any]:
            if src is None:
                progress(30, "making the volume")
                self.node.create_volume(pool_name, vid, nbytes)
            else:
                progress(30, f"copying snapshot {src.id}")
                self.node.clone_volume(pool_name, src.target_id, vid, nbytes, snapshot=src.id)
            return {"volume_id": vid}

        def commit(s: Session) -> None:
            s.execute(update(VolumeRow).where(VolumeRow.id == vid).values(state="available",
                                                                           updated=utcnow()))

        def on_error(err: Exception) -> None:
            with self.db.session() as s:
                s.execute(update(VolumeRow).where(VolumeRow.id == vid).values(
                    state="error", state_reason=f"create failed: {err}", updated=utcnow()))

        self.ops.submit(op, job, on_error=on_error, commit=commit)
        return self.get(vid, caller=SYSTEM), op

    def _snapshot(self, snapshot_id: str, caller: Caller) -> Any:
        with self.db.reader() as s:
            row = s.get(SnapshotRow, snapshot_id) if is_id(snapshot_id, "snapshot") else None
            if row is None or row.of_kind != "volume" or not self._sees(caller, row.project_id):
                raise NotFound(f"snapshot {snapshot_id!r} not found", resource="snapshot",
                               id=snapshot_id)
            if row.state != "completed":
                raise InvalidState(f"snapshot {snapshot_id} is {row.state}", state=row.state,
                                   resource="snapshot")
            s.expunge(row)
            return row

    def _default_project(self) -> str:
        from lxcloud.core.caller import DEFAULT_PROJECT
        from lxcloud.db.tables import ProjectRow

        with self.db.reader() as s:
            return s.scalar(select(ProjectRow.id).where(ProjectRow.name == DEFAULT_PROJECT)) or ""

    # --- resize, delete
    def resize(self, ref: str, size: str | int, *, grow_only: bool = False,
               caller: Caller = SYSTEM) -> Operation:
        """Grown or shrunk (never below what it holds), attached or not where the pool can.
        `grow_only`: a smaller size is refused (EC2's ModifyVolume never shrinks)."""
        vol = self.get(ref, caller=caller)
        nbytes = parse_size(size, "size")
        if not MIN_VOLUME <= nbytes <= MAX_VOLUME:
            raise InvalidInput(f"a volume's size must be between {format_size(MIN_VOLUME)} and "
                               f"{format_size(MAX_VOLUME)}")
        if grow_only and nbytes < vol.size:
            raise InvalidInput(f"New size cannot be smaller than existing size: volume {vol.id} "
                               f"is {format_size(vol.size)}")
        if vol.state not in ("available", "in-use"):
            raise InvalidState(f"volume {vol.id} is {vol.state}", state=vol.state,
                               resource="volume")
        if vol.attachments and not self.pools.caps(vol.pool).online_resize:
            raise InvalidState(f"pool {vol.pool!r} cannot resize an attached volume: detach it "
                               "first", state=vol.state, resource="volume")
        with self.db.session() as s:
            op = self.ops.begin(s, "resize-volume", vol.id, project_id=vol.project_id)

        def job(progress: Progress) -> None:
            progress(30, f"resizing to {format_size(nbytes)}")
            self.node.resize_volume(vol.pool, vol.id, nbytes)

        def commit(s: Session) -> None:
            s.execute(update(VolumeRow).where(VolumeRow.id == vol.id).values(size=nbytes,
                                                                              updated=utcnow()))
            self._set_disk_size(s, vol.id, nbytes)

        self.ops.submit(op, job, commit=commit)
        return op

    @staticmethod
    def _set_disk_size(s: Session, volume_id: str, size: int) -> None:
        for r in s.scalars(select(InstanceRow).join(
                AttachmentRow, AttachmentRow.instance_id == InstanceRow.id).where(
                AttachmentRow.volume_id == volume_id)):
            r.disks = [dict(d, size=size) if d.get("name") == volume_id else d
                       for d in r.disks or ()]

    def delete(self, ref: str, *, caller: Caller = SYSTEM) -> Operation:
        """Refused while attached. Its snapshots outlive it (as on EC2): while it has some, its
        data stays on the pool for them, and it is seen no more."""
        vol = self.get(ref, caller=caller)
        if vol.attachments:
            raise InUse(f"volume {vol.id} is attached to "
                        f"{', '.join(a.instance_name or a.instance_id for a in vol.attachments)}: "
                        "detach it first", resource="volume",
                        instances=[a.instance_id for a in vol.attachments])
        if vol.state not in ("available", "error"):
            raise InvalidState(f"volume {vol.id} is {vol.state}", state=vol.state,
                               resource="volume")
        with self.db.session() as s:
            op = self.ops.begin(s, "delete-volume", vol.id, project_id=vol.project_id)
            n = s.execute(update(VolumeRow).where(VolumeRow.id == vol.id,
                                                  VolumeRow.state == vol.state)
                          .values(state="deleting", updated=utcnow()))
            if not n.rowcount:  # type: ignore[attr-defined]
                raise Conflict(f"volume {vol.id} changed meanwhile", resource="volume")
            keep = s.scalar(select(SnapshotRow.id).where(SnapshotRow.target_id == vol.id)) \
                is not None

        def job(progress: Progress) -> None:
            if not keep:
                progress(30, "removing the volume")
                self.node.delete_volume(vol.pool, vol.id)

        def commit(s: Session) -> None:
            if keep:
                s.execute(update(VolumeRow).where(VolumeRow.id == vol.id).values(
                    state=HIDDEN, updated=utcnow()))
            else:
                s.execute(delete(VolumeRow).where(VolumeRow.id == vol.id))
            self.tags.remove_all(s, [vol.id])

        def on_error(err: Exception) -> None:
            # refused by the host while something still holds it (a process that kept it
            # after a forced detach): the volume is as it was, whole, and may be deleted later.
            # The dir pool says so as a DriverError raised from the InUse.
            held = isinstance(err, InUse) or isinstance(err.__cause__, InUse)
            with self.db.session() as s:
                s.execute(update(VolumeRow).where(VolumeRow.id == vol.id).values(
                    state=vol.state if held else "error",
                    state_reason=vol.state_reason if held else f"delete failed: {err}",
                    updated=utcnow()))

        self.ops.submit(op, job, on_error=on_error, commit=commit)
        return op

    def forget_if_unused(self, s: Session, volume_id: str) -> str | None:
        """A hidden (deleted) volume whose last snapshot is going: its pool, for the caller to
        remove its data from once the transaction has committed; None otherwise."""
        row = s.get(VolumeRow, volume_id)
        if row is None or row.state != HIDDEN:
            return None
        if s.scalar(select(SnapshotRow.id).where(SnapshotRow.target_id == volume_id)):
            return None
        s.delete(row)
        return row.pool

    # --- attach, detach
    def _instances(self) -> InstanceService:
        assert self.instances is not None
        return self.instances

    def attach(self, ref: str, instance_ref: str, *, path: str | None = None, device: str = "",
               caller: Caller = SYSTEM) -> Operation:
        """To a stopped or a running instance (where its driver can hot-plug), at `path` inside
        (/media/<volume-id> by default); one instance at a time unless the volume is shared."""
        vol = self.get(ref, caller=caller)
        insts = self._instances()
        inst = insts.get(instance_ref, caller=caller)
        if inst.project_id != vol.project_id:
            raise NotFound(f"volume {ref!r} not found", resource="volume", id=ref)
        if inst.zone and inst.zone != vol.zone:
            raise InvalidInput(f"the volume {vol.id} is in zone {vol.zone} and the instance "
                               f"{inst.id} in {inst.zone}", reason=Reason.ZONE_MISMATCH,
                               resource="volume")
        mount = check_path(path or default_path(vol.id))
        if device and not _DEVICE_RE.match(device):
            raise InvalidInput(f"device name {device!r} is not valid (e.g. /dev/sdf)")
        if inst.state not in (State.STOPPED, State.RUNNING):
            raise InvalidState(f"cannot attach a volume to an instance that is {inst.state}",
                               state=inst.state)
        if inst.state == State.RUNNING and not insts.caps.compute[inst.kind].hotplug_disk:
            raise InvalidCombination(f"a {inst.kind} instance here cannot take a volume while it "
                                     "runs: stop it first", capability="hotplug_disk")
        if any(a.instance_id == inst.id for a in vol.attachments):
            raise InUse(f"volume {vol.id} is already attached to {inst.name}", resource="volume")
        if vol.attachments and not vol.shared:
            raise InUse(f"volume {vol.id} is attached to "
                        f"{vol.attachments[0].instance_name or vol.attachments[0].instance_id}"
                        " (only a shared volume attaches to several)", resource="volume")
        for d in inst.disks:
            if d.path == mount or (device and d.device == device):
                raise Conflict(f"instance {inst.name} already has a disk at "
                               f"{mount if d.path == mount else device}", resource="device")
        disk = Disk(pool=vol.pool, name=vol.id, size=vol.size, source=None, path=mount,
                    device=device)
        with self.db.session() as s:
            op = self.ops.begin(s, "attach-volume", inst.id, project_id=inst.project_id)
            r = s.get(VolumeRow, vol.id)
            if r is None or r.state not in ("available", "in-use"):
                raise InvalidState(f"volume {vol.id} is {r.state if r else 'gone'}",
                                   state=r.state if r else "gone", resource="volume")
            if r.state == "in-use" and not r.shared:
                raise InUse(f"volume {vol.id} is {r.state}", resource="volume")
            r.state = "in-use"
            s.add(AttachmentRow(volume_id=vol.id, instance_id=inst.id, path=mount, device=device,
                                state="attaching", created=utcnow()))
        spec = insts.spec_of(dataclasses.replace(inst, disks=[*inst.disks, disk]))

        def job(progress: Progress) -> None:
            progress(30, f"attaching {vol.id} at {mount}")
            self.node.attach_disk(spec, disk)

        def commit(s: Session) -> None:
            s.execute(update(AttachmentRow).where(AttachmentRow.volume_id == vol.id,
                                                  AttachmentRow.instance_id == inst.id)
                      .values(state="attached"))
            row = s.get(InstanceRow, inst.id)
            if row is not None:
                row.disks = [*(row.disks or ()), disk_to_dict(disk)]

        def on_error(err: Exception) -> None:
            with self.db.session() as s:
                s.execute(delete(AttachmentRow).where(AttachmentRow.volume_id == vol.id,
                                                      AttachmentRow.instance_id == inst.id))
                self._settle(s, vol.id)

        self.ops.submit(op, job, on_error=on_error, commit=commit)
        return op

    def detach(self, ref: str, *, instance_ref: str | None = None, force: bool = False,
               caller: Caller = SYSTEM) -> Operation:
        """From its instance (or, for a shared volume, the one named). A running instance lets
        go of it first; while a process inside holds it the detach fails naming it (InUse),
        unless `force`."""
        vol = self.get(ref, caller=caller)
        if not vol.attachments:
            raise InvalidState(f"volume {vol.id} is not attached", state=vol.state,
                               resource="volume")
        insts = self._instances()
        if instance_ref is not None:
            target = insts.get(instance_ref, caller=caller)
            att = next((a for a in vol.attachments if a.instance_id == target.id), None)
            if att is None:
                raise InvalidState(f"volume {vol.id} is not attached to {target.name}",
                                   state=vol.state, resource="volume")
        elif len(vol.attachments) > 1:
            raise InvalidInput(f"volume {vol.id} is attached to several instances: name one")
        else:
            att = vol.attachments[0]
        inst = insts.get(att.instance_id)
        disk = next((d for d in inst.disks if d.name == vol.id), None)
        with self.db.session() as s:
            op = self.ops.begin(s, "detach-volume", inst.id, project_id=inst.project_id)
            s.execute(update(AttachmentRow).where(AttachmentRow.volume_id == vol.id,
                                                  AttachmentRow.instance_id == inst.id)
                      .values(state="detaching"))
        rest = [d for d in inst.disks if d.name != vol.id]
        spec = insts.spec_of(dataclasses.replace(inst, disks=rest)) \
            if inst.state != State.TERMINATED else None

        def job(progress: Progress) -> None:
            progress(30, f"detaching {vol.id} from {att.path}")
            if spec is not None and disk is not None:
                self.node.detach_disk(spec, disk, force=force)

        def commit(s: Session) -> None:
            self._unattach(s, vol.id, inst.id)

        def on_error(err: Exception) -> None:
            with self.db.session() as s:
                s.execute(update(AttachmentRow).where(AttachmentRow.volume_id == vol.id,
                                                      AttachmentRow.instance_id == inst.id)
                          .values(state="attached"))

        self.ops.submit(op, job, on_error=on_error, commit=commit)
        return op

    def _unattach(self, s: Session, volume_id: str, instance_id: str) -> None:
        s.execute(delete(AttachmentRow).where(AttachmentRow.volume_id == volume_id,
                                              AttachmentRow.instance_id == instance_id))
        row = s.get(InstanceRow, instance_id)
        if row is not None:
            row.disks = [d for d in row.disks or () if d.get("name") != volume_id]
        self._settle(s, volume_id)

    @staticmethod
    def _settle(s: Session, volume_id: str) -> None:
        """The volume is in-use while an attachment remains, available otherwise."""
        left = s.scalar(select(AttachmentRow.instance_id).where(
            AttachmentRow.volume_id == volume_id))
        s.execute(update(VolumeRow).where(VolumeRow.id == volume_id,
                                          VolumeRow.state.in_(("in-use", "available")))
                  .values(state="in-use" if left else "available", updated=utcnow()))

    def release_instance(self, s: Session, instance_id: str) -> None:
        """In the transaction that terminates an instance: its volumes are detached (their data
        is kept)."""
        for vid in list(s.scalars(select(AttachmentRow.volume_id).where(
                AttachmentRow.instance_id == instance_id))):
            self._unattach(s, vid, instance_id)
