"""EC2 actions for volumes, snapshots and images made from instances or registered from a file,
over the volume, snapshot, copy and image services (every rule is theirs; this only translates).

How EC2's terms map onto lxcloud's:

- A volume's Size is in GiB (a volume made elsewhere with a size that is not a whole number of
  GiB shows rounded up). Its zone is one of the cloud's zones; VolumeType is recorded as given.
- AttachVolume's Device (`/dev/sdf`) is recorded and shown back as given (DescribeVolumes'
  attachments, DescribeInstances' BlockDeviceMappings); inside the container the volume is a
  directory at `/media/<volume-id>`, not a block device.
- Snapshots are those of volumes (snapshots of instance roots are not EBS snapshots, and are
  only seen through REST and the CLI).
- CreateImage makes a template of the instance's root, without a reboot (a running instance is
  frozen for the moment a snapshot is taken): NoReboot is accepted and changes nothing. The
  image is `pending` in DescribeImages until it is made, then `available` (with the tags of its
  TagSpecifications); one whose making failed is seen no more.
- RegisterImage takes ImageLocation as the absolute path of a template archive on the
  controller (admins only), checked as any image import is (hostile archives refused); it does
  not register an image from EBS snapshots.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lxcloud.api.ec2.common import (
    account_id,
    apply_filters,
    check_ids,
    owner,
    request_tags,
    tag_set,
)
from lxcloud.api.ec2.dispatch import Ctx, action
from lxcloud.api.ec2.errors import Ec2Error, dry_run_ok
from lxcloud.api.ec2.pagination import paginate
from lxcloud.api.ec2.params import Params
from lxcloud.core.models import Attachment, Snapshot, Volume
from lxcloud.drivers.storage.base import SnapshotOf

GiB = 1024**3


def gib(nbytes: int) -> int:
    """A size in whole GiB, rounded up (EC2 sizes are whole GiB)."""
    return max(1, -(-nbytes // GiB))


# --- volumes
def render_attachment(a: Attachment, state: str | None = None) -> dict[str, Any]:
    return {"volumeId": a.volume_id, "instanceId": a.instance_id, "device": a.device or a.path,
            "status": state or a.state, "attachTime": a.created, "deleteOnTermination": False}


def render_volume(v: Volume, tags: dict[str, str]) -> dict[str, Any]:
    return {"volumeId": v.id, "size": gib(v.size), "snapshotId": v.snapshot_id or "",
            "availabilityZone": v.zone, "status": v.state, "createTime": v.created,
            "attachmentSet": [render_attachment(a) for a in v.attachments],
            "volumeType": v.volume_type, "encrypted": False, "multiAttachEnabled": v.shared,
            "tagSet": tag_set(tags)}


def _volumes(ctx: Ctx, ids: list[str]) -> list[Volume]:
    """Exactly these volumes of the caller, or InvalidVolume.NotFound naming the missing."""
    check_ids(ids, "volume")
    found = {v.id: v for v in ctx.cloud.volumes.list(caller=ctx.caller, ids=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise Ec2Error("InvalidVolume.NotFound",
                       f"The volume{'s' if len(missing) > 1 else ''} "
                       f"'{', '.join(missing)}' do{'' if len(missing) > 1 else 'es'} not exist.")
    return [found[i] for i in ids]


def _volume(ctx: Ctx, p: Params) -> Volume:
    return _volumes(ctx, [p.req("VolumeId")])[0]


@action("CreateVolume")
def create_volume(ctx: Ctx, p: Params) -> dict[str, Any]:
    size = p.int("Size", min=1)
    snapshot_id = p.str("SnapshotId") or None
    if snapshot_id:
        check_ids([snapshot_id], "snapshot")
    if p.bool("Encrypted"):
        raise Ec2Error("UnsupportedOperation", "Encrypted volumes are not supported by this cloud.")
    if p.dry_run():
        if snapshot_id:
            ctx.cloud.snapshots.get(snapshot_id, caller=ctx.caller)
        raise dry_run_ok()
    tags = request_tags(p, "volume")
    vol, _op = ctx.cloud.volumes.create(
        tags.get("Name"), size * GiB if size is not None else None,
        zone=p.str("AvailabilityZone") or None, volume_type=p.str("VolumeType") or None,
        snapshot_id=snapshot_id, shared=p.bool("MultiAttachEnabled"), tags=tags or None,
        caller=ctx.caller)
    return render_volume(vol, ctx.cloud.tags.of(ctx.caller, [vol.id])[vol.id])


VOLUME_FILTERS = {
    "volume-id": lambda v: v.id, "status": lambda v: v.state, "size": lambda v: gib(v.size),
    "availability-zone": lambda v: v.zone, "snapshot-id": lambda v: v.snapshot_id or "",
    "volume-type": lambda v: v.volume_type, "encrypted": lambda v: False,
    "multi-attach-enabled": lambda v: v.shared,
    "create-time": lambda v: _iso(v.created),
    "attachment.instance-id": lambda v: [a.instance_id for a in v.attachments],
    "attachment.device": lambda v: [a.device or a.path for a in v.attachments],
    "attachment.status": lambda v: [a.state for a in v.attachments],
    "attachment.attach-time": lambda v: [_iso(a.created) for a in v.attachments],
    "attachment.delete-on-termination": lambda v: [False for _ in v.attachments],
}


def _iso(t: datetime) -> str:
    from lxcloud.api.ec2.xml import timestamp

    return timestamp(t)


@action("DescribeVolumes")
def describe_volumes(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.list("VolumeId")
    vols = _volumes(ctx, ids) if ids else ctx.cloud.volumes.list(caller=ctx.caller)
    filters = p.filters()
    tags = ctx.cloud.tags.of(ctx.caller, [v.id for v in vols])
    vols = apply_filters(vols, filters, VOLUME_FILTERS, lambda v: tags.get(v.id, {}))
    page, token = paginate(vols, p.int("MaxResults"), p.str("NextToken"),
                           key="DescribeVolumes|" + repr(sorted(filters.items())),
                           secret=ctx.cloud.ec2_token_secret)
    return {"volumeSet": [render_volume(v, tags.get(v.id, {})) for v in page],
            "nextToken": token}


@action("AttachVolume")
def attach_volume(ctx: Ctx, p: Params) -> dict[str, Any]:
    device = p.req("Device")
    instance_id = p.req("InstanceId")
    check_ids([instance_id], "instance")
    vol = _volume(ctx, p)
    inst = ctx.cloud.instances.get(instance_id, caller=ctx.caller)
    if p.dry_run():
        raise dry_run_ok()
    op = ctx.cloud.volumes.attach(vol.id, inst.id, device=device, caller=ctx.caller)
    # what was asked (an attach that already failed has no attachment left to read)
    return {"volumeId": vol.id, "instanceId": inst.id, "device": device, "status": "attaching",
            "attachTime": op.created, "deleteOnTermination": False}


@action("DetachVolume")
def detach_volume(ctx: Ctx, p: Params) -> dict[str, Any]:
    instance_id = p.str("InstanceId") or None
    if instance_id:
        check_ids([instance_id], "instance")
    device = p.str("Device") or None
    vol = _volume(ctx, p)
    atts = [a for a in vol.attachments if (instance_id is None or a.instance_id == instance_id)
            and (device is None or device in (a.device, a.path))]
    if vol.attachments and not atts:
        raise Ec2Error("InvalidAttachment.NotFound",
                       f"The volume {vol.id} is not attached to "
                       f"{instance_id or ''}{' at ' + device if device else ''}".rstrip())
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.volumes.detach(vol.id, instance_ref=atts[0].instance_id if atts else None,
                             force=p.bool("Force"), caller=ctx.caller)
    return render_attachment(atts[0], "detaching")


@action("DeleteVolume")
def delete_volume(ctx: Ctx, p: Params) -> dict[str, Any]:
    vol = _volume(ctx, p)
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.volumes.delete(vol.id, caller=ctx.caller)
    return {"return": True}


@action("ModifyVolume")
def modify_volume(ctx: Ctx, p: Params) -> dict[str, Any]:
    vol = _volume(ctx, p)
    size = p.int("Size", min=1)
    vtype = p.str("VolumeType") or None
    if vtype is not None and vtype != vol.volume_type:
        raise Ec2Error("UnsupportedOperation",
                       "Changing a volume's type is not supported by this cloud (only its size).")
    if size is None:
        raise Ec2Error("MissingParameter", "The request must contain the parameter Size")
    if p.dry_run():
        raise dry_run_ok()
    op = ctx.cloud.volumes.resize(vol.id, size * GiB, grow_only=True, caller=ctx.caller)
    return {"volumeModification": {
        "volumeId": vol.id, "modificationState": "modifying", "targetSize": size,
        "originalSize": gib(vol.size), "targetVolumeType": vol.volume_type,
        "originalVolumeType": vol.volume_type, "targetMultiAttachEnabled": vol.shared,
        "originalMultiAttachEnabled": vol.shared, "progress": 0, "startTime": op.created}}


# --- snapshots (of volumes)
def render_snapshot(snap: Snapshot, tags: dict[str, str], zone: str = "") -> dict[str, Any]:
    return {"snapshotId": snap.id, "volumeId": snap.target_id, "status": snap.state,
            "startTime": snap.created, "progress": "100%" if snap.state == "completed" else "0%",
            "ownerId": account_id(snap.project_id), "volumeSize": gib(snap.size),
            "description": snap.description, "encrypted": False,
            "availabilityZone": zone or None, "tagSet": tag_set(tags)}


def _snapshots(ctx: Ctx, ids: list[str]) -> list[Snapshot]:
    check_ids(ids, "snapshot")
    found = {s.id: s for s in ctx.cloud.snapshots.list(of=SnapshotOf.VOLUME, ids=ids,
                                                       caller=ctx.caller)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise Ec2Error("InvalidSnapshot.NotFound",
                       f"The snapshot{'s' if len(missing) > 1 else ''} "
                       f"'{', '.join(missing)}' do{'' if len(missing) > 1 else 'es'} not exist.")
    return [found[i] for i in ids]


@action("CreateSnapshot")
def create_snapshot(ctx: Ctx, p: Params) -> dict[str, Any]:
    vol = _volume(ctx, p)
    if p.dry_run():
        raise dry_run_ok()
    tags = request_tags(p, "snapshot")
    snap, _op = ctx.cloud.snapshots.create(SnapshotOf.VOLUME, vol.id,
                                           description=p.str("Description") or "",
                                           tags=tags or None, caller=ctx.caller)
    return render_snapshot(snap, ctx.cloud.tags.of(ctx.caller, [snap.id])[snap.id], vol.zone)


SNAPSHOT_FILTERS = {
    "snapshot-id": lambda s: s.id, "volume-id": lambda s: s.target_id,
    "status": lambda s: s.state, "owner-id": lambda s: account_id(s.project_id),
    "description": lambda s: s.description, "volume-size": lambda s: gib(s.size),
    "start-time": lambda s: _iso(s.created), "encrypted": lambda s: False,
    "progress": lambda s: "100%" if s.state == "completed" else "0%",
}


@action("DescribeSnapshots")
def describe_snapshots(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.list("SnapshotId")
    snaps = _snapshots(ctx, ids) if ids else \
        ctx.cloud.snapshots.list(of=SnapshotOf.VOLUME, caller=ctx.caller)
    me = owner(ctx.caller)
    owners = {me if o == "self" else o for o in p.list("Owner")}
    if owners:
        snaps = [s for s in snaps if account_id(s.project_id) in owners]
    elif not ids:      # an admin sees every project's through REST; here, as on EC2, its own
        snaps = [s for s in snaps if account_id(s.project_id) == me]
    filters = p.filters()
    tags = ctx.cloud.tags.of(ctx.caller, [s.id for s in snaps])
    snaps = apply_filters(snaps, filters, SNAPSHOT_FILTERS, lambda s: tags.get(s.id, {}))
    page, token = paginate(snaps, p.int("MaxResults"), p.str("NextToken"),
                           key="DescribeSnapshots|" + repr((sorted(owners),
                                                            sorted(filters.items()))),
                           secret=ctx.cloud.ec2_token_secret)
    return {"snapshotSet": [render_snapshot(s, tags.get(s.id, {})) for s in page],
            "nextToken": token}


@action("DeleteSnapshot")
def delete_snapshot(ctx: Ctx, p: Params) -> dict[str, Any]:
    snap = _snapshots(ctx, [p.req("SnapshotId")])[0]
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.snapshots.delete(snap.id, caller=ctx.caller)
    return {"return": True}


# --- images from instances and from template files
@action("CreateImage")
def create_image(ctx: Ctx, p: Params) -> dict[str, Any]:
    instance_id = p.req("InstanceId")
    name = p.req("Name")
    check_ids([instance_id], "instance")
    p.bool("NoReboot")      # well-formed, and without effect: no reboot ever happens
    inst = ctx.cloud.instances.get(instance_id, caller=ctx.caller)
    if p.dry_run():
        ctx.cloud.images.check_name(name)
        raise dry_run_ok()
    op = ctx.cloud.copies.image_from(inst.id, name, description=p.str("Description") or None,
                                     tags=request_tags(p, "image") or None, caller=ctx.caller)
    return {"imageId": op.result["image_id"]}


@action("RegisterImage")
def register_image(ctx: Ctx, p: Params) -> dict[str, Any]:
    name = p.req("Name")
    if p.has("BlockDeviceMapping") and not p.str("ImageLocation"):
        raise Ec2Error("UnsupportedOperation",
                       "Registering an image from snapshots is not supported: ImageLocation "
                       "names a template archive on the controller.")
    location = p.str("ImageLocation")
    if not location:
        raise Ec2Error("MissingParameter", "The request must contain the parameter ImageLocation")
    if p.str("KernelId") or p.str("RamdiskId"):
        raise Ec2Error("InvalidParameterCombination",
                       "KernelId and RamdiskId cannot be used with a container image.")
    if p.dry_run():
        if not ctx.caller.is_admin:
            raise Ec2Error("UnauthorizedOperation",
                           "You are not authorized to perform this operation.")
        raise dry_run_ok()
    tags = request_tags(p, "image")
    if tags:
        ctx.cloud.tags.check(tags)       # refused before anything is stored
    image = ctx.cloud.images.import_path(location, name, description=p.str("Description") or None,
                                         caller=ctx.caller)
    if tags:
        ctx.cloud.tags.set(ctx.caller, [image.id], tags)
    return {"imageId": image.id}
