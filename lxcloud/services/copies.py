"""What is made from an instance's disk: a copy (a new instance with a new identity), an image
(a template others launch), an export (one archive with its snapshots and config), and the
instance an export imports back.

A running instance is not stopped for any of them: a copy freezes it for the moment its root is
cloned; an image or an export is made from a snapshot taken for the purpose (frozen for the moment)
and deleted after.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from lxcloud.config import Settings
from lxcloud.core.caller import SYSTEM, Caller
from lxcloud.core.errors import InvalidInput, InvalidState, NotFound
from lxcloud.core.ids import is_id, new_id
from lxcloud.core.instance_types import Limits, get_type, resolve_limits
from lxcloud.core.lifecycle import State
from lxcloud.core.models import Image, Instance, Operation
from lxcloud.db.engine import Database
from lxcloud.db.tables import OperationRow, SnapshotRow, utcnow
from lxcloud.drivers.storage.base import SnapshotOf
from lxcloud.node.protocol import NodeClient
from lxcloud.services.images import ImageService
from lxcloud.services.instances import InstanceService
from lxcloud.services.networks import NetworkService
from lxcloud.services.operations import Operations, Progress
from lxcloud.services.snapshots import SnapshotService

EXPORT_FORMAT = "lxcloud-export"
EXPORT_VERSION = 1
META = "lxcloud-export.json"
ROOT = "rootfs.tar"
_SNAP_FILE = re.compile(r"^snapshots/([A-Za-z0-9][A-Za-z0-9._-]{0,62})\.tar$")
MAX_META = 1 << 20
# an export is kept this long for its download (then removed at the next start-up)
EXPORT_TTL = 24 * 3600


@dataclass(frozen=True)
class PendingImage:
    """An image from an instance while it is being made (see CopyService.image_from)."""

    id: str
    name: str
    instance_id: str
    project_id: str
    source_image: str
    description: str
    created: datetime
    operation_id: str


@dataclass(frozen=True)
class Export:
    id: str
    instance_id: str
    instance_name: str
    project_id: str
    size: int
    path: Path
    created: datetime


class CopyService:
    def __init__(self, settings: Settings, db: Database, ops: Operations, node: NodeClient,
                 instances: InstanceService, images: ImageService, networks: NetworkService,
                 snapshots: SnapshotService) -> None:
        self.settings = settings
        self.db = db
        self.ops = ops
        self.node = node
        self.instances = instances
        self.images = images
        self.networks = networks
        self.snapshots = snapshots

    # --- copies
    def copy(self, ref: str, name: str | None, *, snapshot: str | None = None,
             start: bool = False, caller: Caller = SYSTEM) -> tuple[Instance, Operation]:
        """A new instance holding what `ref`'s root holds now (a running one is frozen for the
        moment) or held in its snapshot: same type, limits and pool, its own id, name, address,
        MAC, machine-id and ssh host keys. Stopped unless `start`. Volumes are not copied."""
        src = self.instances.get(ref, caller=caller)
        if src.state not in (State.RUNNING, State.STOPPED, State.FROZEN):
            raise InvalidState(f"cannot copy an instance that is {src.state}", state=src.state)
        snap = self.snapshots.get(snapshot, target=src.id, caller=caller) if snapshot else None
        image = self.images.get(src.image_id)
        with self.db.session() as s:
            inst, op = self.instances.new_like(s, src, name=name, op_kind="copy", image=image)
        src_spec = self.instances.spec_of(src)
        spec = self.instances.spec_of(inst)

        def job(progress: Progress) -> dict[str, Any]:
            self._add_dns(inst)
            if self.instances.security_groups is not None:   # filtered before it first runs
                self.instances.security_groups.secure(inst.id, spec.nics)
            timings = self.node.clone(src_spec, spec, snapshot=snap.id if snap else None,
                                      start=start, progress=progress)
            return {"instance_id": inst.id, "ipv4": inst.ipv4,
                    "timings": {k: round(v * 1000, 3) for k, v in timings.items()}}

        def commit(s: Any) -> None:
            self.instances.finish_new(s, inst, op, running=start)

        self.ops.submit(op, job, commit=commit,
                        on_error=lambda err: self.instances.fail_new(inst, err, "copy"))
        return inst, op

    def _add_dns(self, inst: Instance) -> None:
        for nic in inst.nics:
            self.networks.add_dns(self.networks.by_id(nic.network), nic, inst.name)

    # --- images from instances
    def image_from(self, ref: str, name: str, *, snapshot: str | None = None,
                   description: str | None = None, tags: dict[str, str] | None = None,
                   caller: Caller = SYSTEM) -> Operation:
        """A template of the instance's root as it is (stopped; a running one through a
        snapshot taken for the purpose) or as its snapshot holds it, recorded as image `name`
        that `launch` uses like any other. The source image's boot facts carry over. Its id is
        in the operation's result from the start; `tags` are put on it once it is made."""
        inst = self.instances.get(ref, caller=caller)
        self.images.check_name(name)
        tag_service = self.snapshots.tags
        if tags:
            tag_service.check(tags)
        snap = self.snapshots.get(snapshot, target=inst.id, caller=caller) if snapshot else None
        self._check_state(inst, snap is not None)
        source = self.images.get(inst.image_id)
        owner = Caller(user_id=caller.user_id, user=caller.user, project_id=inst.project_id or "",
                       project=inst.project or "", role=caller.role)
        image_id = new_id("image")
        with self.db.session() as s:
            op = self.ops.begin(s, "create-image", inst.id, project_id=inst.project_id)
            # the image's id is known from the start: it is pending under it until done
            s.execute(update(OperationRow).where(OperationRow.id == op.id).values(
                result={"image_id": image_id, "image": name, "source_image": source.id,
                        "description": description or ""}))
        op = replace(op, result={"image_id": image_id, "image": name})
        spec = self.instances.spec_of(inst)
        pool = inst.disks[0].pool

        def job(progress: Progress) -> dict[str, Any]:
            with self._frozen_view(inst, pool, snap.id if snap else None, progress) as snap_id, \
                    tempfile.TemporaryDirectory(dir=self.images.upload_dir()) as tmp:
                tar = Path(tmp) / "root.tar"
                self.node.export_root(spec, tar, snapshot=snap_id,
                                      progress=lambda p, m: progress(10 + p * 70 // 100, m))
                progress(85, "recording the image")
                image = self.images.import_file(tar, name, meta=_image_meta(source, description),
                                                caller=owner, image_id=image_id)
                if tags:
                    tag_service.set(owner, [image.id], tags)
            return {"image_id": image.id, "image": image.name}

        self.ops.submit(op, job)
        return op

    def pending_images(self, *, caller: Caller = SYSTEM) -> list[PendingImage]:
        """The images being made from instances (their operations still run), the caller's
        project's own (every one for SYSTEM and admins)."""
        with self.db.reader() as s:
            q = select(OperationRow).where(OperationRow.kind == "create-image",
                                           OperationRow.status.in_(("pending", "running")))
            if not (caller is SYSTEM or caller.is_admin):
                q = q.where(OperationRow.project_id == caller.project_id)
            rows = list(s.scalars(q.order_by(OperationRow.created)))
        return [PendingImage(id=r.result["image_id"], name=str(r.result.get("image", "")),
                             instance_id=r.target, project_id=r.project_id or "",
                             source_image=str(r.result.get("source_image", "")),
                             description=str(r.result.get("description", "")),
                             created=r.created, operation_id=r.id)
                for r in rows if isinstance(r.result, dict) and r.result.get("image_id")]

    def _check_state(self, inst: Instance, from_snapshot: bool) -> None:
        if from_snapshot:
            return
        if inst.state not in (State.STOPPED, State.RUNNING, State.FROZEN):
            raise InvalidState(f"cannot make an image of an instance that is {inst.state}",
                               state=inst.state)
        pool = self.instances.caps.storage.get(inst.disks[0].pool)
        if inst.state != State.STOPPED and not (pool and pool.snapshots):
            raise InvalidState(f"instance {inst.name} runs on a pool without snapshots: stop it "
                               "first", state=inst.state)

    def _frozen_view(self, inst: Instance, pool: str, snapshot: str | None,
                     progress: Progress) -> Any:
        """A context whose value is the snapshot to read from: the given one, or one taken for
        the purpose from a running instance (frozen for the moment) and deleted on exit, or None
        (a stopped instance is read as it is)."""
        from contextlib import contextmanager

        @contextmanager
        def view() -> Any:
            if snapshot is not None or self.instances.get(inst.id).state == State.STOPPED:
                yield snapshot
                return
            tmp = new_id("snapshot")
            progress(5, "taking a snapshot of the running instance")
            self.node.create_snapshot(SnapshotOf.ROOT, pool, inst.id, tmp, [inst.id])
            try:
                yield tmp
            finally:
                self.node.delete_snapshot(SnapshotOf.ROOT, pool, inst.id, tmp)

        return view()

    # --- exports
    def _exports_dir(self) -> Path:
        d = self.settings.data_dir / "exports"
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return d

    def export(self, ref: str, *, caller: Caller = SYSTEM) -> Operation:
        """The whole instance — its root, each of its snapshots, its config — as one archive,
        kept for download (`export_file`) once the operation has ended (result: export_id)."""
        inst = self.instances.get(ref, caller=caller)
        self._check_state(inst, False)
        source = self.images.get(inst.image_id)
        snaps = [s for s in self.snapshots.list(target=inst.id, of=SnapshotOf.ROOT)
                 if s.state == "completed"]
        with self.db.session() as s:
            op = self.ops.begin(s, "export", inst.id, project_id=inst.project_id)
        spec = self.instances.spec_of(inst)
        pool = inst.disks[0].pool
        xid = new_id("export")
        dest = self._exports_dir() / f"{xid}.tar"

        def job(progress: Progress) -> dict[str, Any]:
            meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                    "created": utcnow().isoformat(), "project_id": inst.project_id,
                    "instance": {"id": inst.id, "name": inst.name,
                                 "instance_type": inst.instance_type, "kind": str(inst.kind),
                                 "limits": inst.limits.to_dict(), "user_data": inst.user_data,
                                 "key_name": inst.key_name},
                    "image": _image_meta(source, source.description) | {"id": source.id,
                                                                         "name": source.name},
                    "snapshots": [{"name": s.name, "description": s.description,
                                   "created": s.created.isoformat(),
                                   "file": f"snapshots/{s.name}.tar"} for s in snaps]}
            parts = len(snaps) + 1
            try:
                with tempfile.TemporaryDirectory(dir=self._exports_dir()) as tmp, \
                        tarfile.open(dest, "w") as out:
                    data = json.dumps(meta, indent=2).encode()
                    ti = tarfile.TarInfo(META)
                    ti.size, ti.mode, ti.mtime = len(data), 0o644, int(utcnow().timestamp())
                    out.addfile(ti, io.BytesIO(data))
                    for n, (snap_id, arc) in enumerate([(s.id, f"snapshots/{s.name}.tar")
                                                        for s in snaps] + [(None, ROOT)]):
                        lo, hi = 5 + 90 * n // parts, 5 + 90 * (n + 1) // parts
                        part = Path(tmp) / "part.tar"

                        def report(p: int, m: str, lo: int = lo, hi: int = hi,
                                   arc: str = arc) -> None:
                            progress(lo + (hi - lo) * p // 100, f"{arc}: {m}")

                        if snap_id is None:
                            with self._frozen_view(inst, pool, None, progress) as view:
                                self.node.export_root(spec, part, snapshot=view, progress=report)
                        else:
                            self.node.export_root(spec, part, snapshot=snap_id, progress=report)
                        out.add(part, arcname=arc, recursive=False,
                                filter=_plain_member)
                        part.unlink()
            except BaseException:
                dest.unlink(missing_ok=True)
                raise
            (self._exports_dir() / f"{xid}.json").write_text(json.dumps(
                {"instance_id": inst.id, "instance_name": inst.name,
                 "project_id": inst.project_id or "", "created": utcnow().isoformat()}))
            return {"export_id": xid, "size": dest.stat().st_size}

        self.ops.submit(op, job)
        return op

    def export_file(self, export_id: str, *, caller: Caller = SYSTEM) -> Export:
        """A finished export, for download; another project's is "not found"."""
        if not is_id(export_id, "export"):
            raise NotFound(f"export {export_id!r} not found", resource="export")
        d = self._exports_dir()
        meta_file, path = d / f"{export_id}.json", d / f"{export_id}.tar"
        if not meta_file.is_file() or not path.is_file():
            raise NotFound(f"export {export_id!r} not found", resource="export")
        meta = json.loads(meta_file.read_text())
        if not (caller is SYSTEM or caller.is_admin or meta["project_id"] == caller.project_id):
            raise NotFound(f"export {export_id!r} not found", resource="export")
        return Export(id=export_id, instance_id=meta["instance_id"],
                      instance_name=meta["instance_name"], project_id=meta["project_id"],
                      size=path.stat().st_size, path=path,
                      created=datetime.fromisoformat(meta["created"]))

    def delete_export(self, export_id: str, *, caller: Caller = SYSTEM) -> None:
        exp = self.export_file(export_id, caller=caller)
        exp.path.unlink(missing_ok=True)
        exp.path.with_suffix(".json").unlink(missing_ok=True)

    def expire_exports(self) -> int:
        """At start-up: exports older than a day (or left half-written) are removed."""
        d = self._exports_dir()
        now = utcnow().timestamp()
        gone = 0
        for p in d.iterdir():
            if p.is_dir() or now - p.stat().st_mtime > EXPORT_TTL or \
                    (p.suffix == ".tar" and not p.with_suffix(".json").exists()):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                gone += 1
        return gone

    # --- imports
    def import_(self, archive: Path, *, name: str | None = None, caller: Caller = SYSTEM,
                consume: bool = False) -> tuple[Instance, Operation]:
        """A new stopped instance from an export: its config read (and checked) at once, its
        root and snapshots unpacked by an operation through the same checks as a template's.
        The image it was made from is used when this cloud has it; otherwise the export's root
        is recorded as a new image of the caller's project (so that copies and images work).
        `consume`: the operation removes `archive` once it has read it."""
        meta, members = read_export(archive)
        inst_meta, img_meta = meta["instance"], meta["image"]
        itype = get_type(str(inst_meta.get("instance_type") or "t3.micro"))
        limits = _limits(itype.name, inst_meta.get("limits") or {})
        image, new_image = self._image_for(img_meta, caller)
        name = name or str(inst_meta.get("name") or "") or None
        snaps = [(str(sm["name"]), str(sm.get("description") or ""), str(sm["file"]))
                 for sm in meta.get("snapshots") or ()]
        like = Instance(id="", name="", state=State.PENDING, image_id=image.id,
                        instance_type=itype.name, limits=limits, node=None, created=utcnow(),
                        updated=utcnow(), project_id=caller.project_id or None,
                        project=caller.project, user_data=inst_meta.get("user_data"),
                        zone=self.settings.zones[0])
        with self.db.session() as s:
            inst, op = self.instances.new_like(s, like, name=name, op_kind="import", image=image)
            snap_ids = []
            for snap_name, desc, _file in snaps:
                sid = new_id("snapshot")
                snap_ids.append(sid)
                s.add(SnapshotRow(id=sid, name=snap_name, of_kind=str(SnapshotOf.ROOT),
                                  target_id=inst.id, pool=inst.disks[0].pool,
                                  project_id=inst.project_id or "", size=limits.disk,
                                  state="pending", description=desc, operation_id=op.id,
                                  created=utcnow()))
        spec = self.instances.spec_of(inst) if not new_image else None

        def job(progress: Progress) -> dict[str, Any]:
            nonlocal spec
            with tempfile.TemporaryDirectory(dir=self.images.upload_dir()) as tmp:
                progress(5, "reading the archive")
                try:
                    files = _unpack_members(archive, members, Path(tmp))
                finally:
                    if consume:
                        archive.unlink(missing_ok=True)
                if new_image:
                    progress(10, "recording its image")
                    self.images.import_file(files[ROOT], image.name, meta=img_meta,
                                            caller=caller, image_id=image.id)
                    spec = self.instances.spec_of(inst)
                assert spec is not None
                self._add_dns(inst)
                self.node.import_instance(
                    spec, files[ROOT], [(sid, files[f]) for sid, (_n, _d, f) in zip(snap_ids, snaps,
                                                                                     strict=True)],
                    progress=progress)
            return {"instance_id": inst.id, "snapshots": snap_ids,
                    **({"image_id": image.id} if new_image else {})}

        def commit(s: Any) -> None:
            from sqlalchemy import update

            s.execute(update(SnapshotRow).where(SnapshotRow.target_id == inst.id)
                      .values(state="completed"))
            self.instances.finish_new(s, inst, op, running=False)

        def on_error(err: Exception) -> None:
            from sqlalchemy import delete

            with self.db.session() as s:
                s.execute(delete(SnapshotRow).where(SnapshotRow.target_id == inst.id))
            self.instances.fail_new(inst, err, "import")

        self.ops.submit(op, job, commit=commit, on_error=on_error)
        return inst, op

    def _image_for(self, meta: dict[str, Any], caller: Caller) -> tuple[Image, bool]:
        """The image the export names when this cloud has it (same id and content), else a new
        image record to be made from the export's root (not yet stored: False/True says)."""
        image_id = str(meta.get("id") or "")
        if is_id(image_id, "image"):
            try:
                found = self.images.get(image_id, caller=caller)
                return found, False
            except NotFound:
                pass
        base = re.sub(r"[^A-Za-z0-9._-]", "-", str(meta.get("name") or "imported"))[:90]
        name = f"{base}-import-{new_id('image')[4:12]}"
        self.images.check_name(name)
        img = Image(id=new_id("image"), name=name, os=str(meta.get("os") or ""),
                    release=str(meta.get("release") or ""),
                    architecture=str(meta.get("architecture") or ""), format="tar", size=0,
                    sha256="", created=utcnow(), halt_signal=meta.get("halt_signal"),
                    init=meta.get("init"))
        return img, True


def _image_meta(image: Image, description: str | None) -> dict[str, Any]:
    """What an image made from an instance inherits from the instance's image."""
    return {"os": image.os, "release": image.release, "architecture": image.architecture,
            "kind": str(image.kind), "halt_signal": image.halt_signal, "init": image.init,
            "min_memory": image.min_memory, "description": description}


def _plain_member(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mode = 0o644
    return ti


def _limits(itype: str, given: dict[str, Any]) -> Limits:
    def num(key: str) -> Any:
        v = given.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            raise InvalidInput(f"the export's limits.{key} is not a number")
        return v

    return resolve_limits(get_type(itype), memory=num("memory"), vcpus=num("vcpus"),
                          pids=num("pids"), swap=num("swap"), disk=num("disk") or None)


def read_export(archive: Path) -> tuple[dict[str, Any], dict[str, tarfile.TarInfo]]:
    """The config of an export and its members (name -> member), checked: only regular files
    named as an export names them (its config, the root, one file per snapshot it lists), the
    config bounded and well-formed. InvalidInput otherwise; nothing is extracted."""
    try:
        tf = tarfile.open(archive, "r:")
    except (tarfile.TarError, OSError) as e:
        raise InvalidInput(f"not an lxcloud export (an uncompressed tar): {e}") from None
    with tf:
        members: dict[str, tarfile.TarInfo] = {}
        for m in tf:
            if not m.isfile():
                raise InvalidInput(f"export member {m.name!r} is not a regular file")
            if m.name != META and m.name != ROOT and not _SNAP_FILE.match(m.name):
                raise InvalidInput(f"unexpected member {m.name!r} in an export")
            if m.name in members:
                raise InvalidInput(f"member {m.name!r} appears twice in the export")
            members[m.name] = m
        if META not in members or ROOT not in members:
            raise InvalidInput(f"an export holds {META} and {ROOT}: this archive does not")
        if members[META].size > MAX_META:
            raise InvalidInput(f"{META} is larger than {MAX_META} bytes")
        f = tf.extractfile(members[META])
        assert f is not None
        try:
            meta = json.loads(f.read())
        except ValueError as e:
            raise InvalidInput(f"{META} is not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise InvalidInput(f"{META} does not describe an lxcloud export")
    if meta.get("version") != EXPORT_VERSION:
        raise InvalidInput(f"export version {meta.get('version')!r} is not understood "
                           f"(this cloud reads version {EXPORT_VERSION})")
    if not isinstance(meta.get("instance"), dict) or not isinstance(meta.get("image"), dict):
        raise InvalidInput(f"{META} lacks its instance or image")
    listed = meta.get("snapshots") or []
    if not isinstance(listed, list) or not all(isinstance(x, dict) for x in listed):
        raise InvalidInput(f"{META}: snapshots must be a list of objects")
    names = set()
    for sm in listed:
        file = str(sm.get("file", ""))
        if not _SNAP_FILE.match(file) or file not in members or \
                _SNAP_FILE.match(file).group(1) != sm.get("name"):  # type: ignore[union-attr]
            raise InvalidInput(f"snapshot {sm.get('name')!r} of the export has no file of its own")
        if sm["name"] in names:
            raise InvalidInput(f"snapshot {sm['name']!r} appears twice in the export")
        names.add(sm["name"])
    if len(names) != len(members) - 2:
        raise InvalidInput("the export holds snapshot files its config does not list")
    return meta, members


def _unpack_members(archive: Path, members: dict[str, tarfile.TarInfo],
                    dest: Path) -> dict[str, Path]:
    """Each member (checked by read_export) copied to a file of its own under `dest`."""
    out: dict[str, Path] = {}
    with tarfile.open(archive, "r:") as tf:
        for name, m in members.items():
            if name == META:
                continue
            src = tf.extractfile(m)
            assert src is not None
            path = dest / name.replace("/", "_")
            with open(path, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
            out[name] = path
    return out
