"""Pydantic schemas of the REST API (the JSON contract users' scripts depend on)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lxcloud.core.instance import Nic
from lxcloud.core.models import Image, Instance, Operation, Pool, Snapshot, Volume


class LimitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory: str | int | None = Field(None, description="bytes, or a size such as 256MiB")
    cpus: float | None = Field(None, gt=0, description="vCPUs (may be fractional)")
    pids: int | None = Field(None, gt=0)
    swap: str | int | None = None
    disk: str | int | None = Field(None, description="the root disk's limit: bytes, or a size "
                                                     "such as 1GiB (the type's when omitted)")


class NicIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str | None = Field(None, description="name or id (the default network when omitted)")
    ip: str | None = Field(None, description="a fixed address (the next free one when omitted)")


class InstanceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(..., min_length=1, description="image name or id")
    name: str | None = None
    instance_type: str | None = None
    limits: LimitsIn | None = None
    user_data: str | None = None
    key_name: str | None = Field(None, description="a key pair of the project: its public key is "
                                                   "given to the instance (metadata, cloud-init)")
    start: bool = True
    pool: str | None = Field(None, description="the root disk's pool (the default pool when "
                                               "omitted)")
    network: str | None = Field(None, description="the network of its one NIC (the default "
                                                  "network when omitted)")
    ip: str | None = Field(None, description="a fixed address for that NIC")
    nics: list[NicIn] | None = Field(None, description="one NIC per entry, in order (eth0, "
                                                       "eth1 …); instead of network and ip")
    security_groups: list[str] | None = Field(None, description="names or ids (the project's "
                                                                "default group when omitted)")
    ingress: str | None = Field(None, description='bandwidth towards it, e.g. "10Mbit"')
    egress: str | None = Field(None, description='bandwidth from it, e.g. "10Mbit"')


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force: bool = False
    timeout: float = Field(30, gt=0, le=3600)


class ExecIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    argv: list[str] = Field(..., min_length=1)
    stdin: str | None = None
    timeout: float = Field(60, gt=0, le=3600)
    env: dict[str, str] | None = None


class ExecOut(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False


class OperationOut(BaseModel):
    id: str
    kind: str
    target: str
    status: str
    progress: int
    message: str
    error: str | None
    error_code: str | None
    result: dict[str, Any]
    created: datetime
    updated: datetime

    @classmethod
    def of(cls, op: Operation) -> OperationOut:
        return cls.model_validate(operation_dict(op))


def operation_dict(op: Operation) -> dict[str, Any]:
    """An operation as OperationOut shows it, as plain values."""
    return {"id": op.id, "kind": op.kind, "target": op.target, "status": op.status,
            "progress": op.progress, "message": op.message, "error": op.error,
            "error_code": op.error_code, "result": op.result, "created": op.created,
            "updated": op.updated}


class LimitsOut(BaseModel):
    """The limits in force (the same names as the request's `limits`; sizes in bytes)."""

    cpus: float
    memory: int
    swap: int
    pids: int
    disk: int



class NicOut(BaseModel):
    name: str
    network: str = Field(description="the network's name")
    network_id: str
    id: str = Field("", description="the NIC's id (EC2's network interface id)")
    mac: str
    ipv4: str | None
    prefix: int
    gateway: str | None
    driver: str = "bridge"
    security_groups: list[str] = Field(default_factory=list)
    ingress: int = Field(0, description="bits/s towards the instance (0: no limit)")
    egress: int = Field(0, description="bits/s from the instance (0: no limit)")



class DiskOut(BaseModel):
    name: str = Field(description='"root", or the id of the volume')
    pool: str
    size: int
    path: str
    source: str | None
    device: str = Field("", description="the device name it was attached as (e.g. /dev/sdf)")



class InstanceOut(BaseModel):
    id: str
    name: str
    state: str
    state_reason: str | None
    kind: str
    image: str | None
    image_id: str
    instance_type: str
    limits: LimitsOut
    ipv4: str | None = Field(description="the first NIC's address")
    mac: str | None = Field(description="the first NIC's MAC")
    nics: list[NicOut]
    disks: list[DiskOut]
    node: str | None
    project: str | None
    project_id: str | None
    created: datetime
    launched_at: datetime | None
    terminated_at: datetime | None
    operation: str | None
    usage: dict[str, Any] | None = Field(None, description="its latest metrics sample (as in "
                                         "/instances/{ref}/metrics), null while not sampled")

    @classmethod
    def of(cls, i: Instance, usage: dict[str, Any] | None = None) -> InstanceOut:
        return cls.model_validate(instance_dict(i, usage))


def instance_dict(i: Instance, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """An instance as InstanceOut shows it, as plain values: what lists are serialised from
    directly (a thousand instances are not a thousand models). `usage`: its latest sample."""
    lim = i.limits
    return {
        "id": i.id, "name": i.name, "state": str(i.state), "state_reason": i.state_reason,
        "kind": str(i.kind), "image": i.image_name, "image_id": i.image_id,
        "instance_type": i.instance_type,
        "limits": {"cpus": lim.vcpus, "memory": lim.memory, "swap": lim.swap, "pids": lim.pids,
                   "disk": lim.disk},
        "ipv4": i.ipv4, "mac": i.mac,
        "nics": [nic_dict(n) for n in i.nics],
        "disks": [{"name": d.name, "pool": d.pool, "size": d.size, "path": d.path,
                   "source": d.source, "device": d.device} for d in i.disks],
        "node": i.node, "project": i.project, "project_id": i.project_id, "created": i.created,
        "launched_at": i.launched_at, "terminated_at": i.terminated_at,
        "operation": i.operation_id, "usage": usage,
    }


def nic_dict(n: Nic) -> dict[str, Any]:
    """A NIC as NicOut shows it, as plain values."""
    return {"name": n.name, "network": n.network_name or n.network, "network_id": n.network,
            "id": n.id, "mac": n.mac, "ipv4": n.ipv4, "prefix": n.prefix, "gateway": n.gateway,
            "driver": n.driver, "security_groups": list(n.security_groups),
            "ingress": n.ingress, "egress": n.egress}


class ActionOut(BaseModel):
    """An instance and the operation working on it (a launch, an action, a delete)."""

    instance: InstanceOut
    operation: OperationOut


LaunchOut = ActionOut


class ImageOut(BaseModel):
    id: str
    name: str
    os: str
    release: str
    architecture: str
    format: str
    size: int
    sha256: str
    kind: str
    min_memory: int = Field(description="the least memory (bytes) the image boots in")
    public: bool
    created: datetime

    @classmethod
    def of(cls, i: Image) -> ImageOut:
        return cls(id=i.id, name=i.name, os=i.os, release=i.release, architecture=i.architecture,
                   format=i.format, size=i.size, sha256=i.sha256, kind=str(i.kind),
                   min_memory=i.min_memory, public=i.public, created=i.created)


class ImageBuildIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    builder: str = Field(..., description="busybox | debian")
    name: str | None = None
    release: str = "bookworm"
    arch: str = "amd64"
    cloud_init: bool = False


class ErrorOut(BaseModel):
    error: str
    code: str
    details: dict[str, Any] = {}


# --- storage
class PoolCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1)
    driver: str = Field(..., description="dir | btrfs | shared")
    source: str = Field("", description="an existing directory (dir, shared) or block device "
                                        "(btrfs); empty: made in the data dir")
    size: str | int = Field(0, description="a loop-backed pool of this size (e.g. 20GiB); 0 with "
                                           "no source: a plain directory")


class PoolOut(BaseModel):
    id: str
    name: str
    driver: str
    source: str
    size: int = Field(description="a loop-backed pool's size (0: not loop-backed)")
    path: str
    default: bool
    capacity: int | None
    used: int | None
    free: int | None
    quota: bool | None = Field(description="disk limits are enforced on it")
    quota_note: str = Field(description="why not, when they are not")
    caps: dict[str, Any]
    instances: int
    volumes: int
    created: datetime

    @classmethod
    def of(cls, p: Pool) -> PoolOut:
        return cls(id=p.id, name=p.name, driver=p.driver, source=p.source, size=p.size,
                   path=p.path, default=p.default, capacity=p.capacity, used=p.used, free=p.free,
                   quota=p.quota, quota_note=p.quota_note, caps=p.caps, instances=p.instances,
                   volumes=p.volumes, created=p.created)


class VolumeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, description="unique in the project (the id when omitted)")
    size: str | int | None = Field(None, description="bytes, or a size such as 1GiB (a "
                                                     "snapshot's size when omitted)")
    pool: str | None = None
    shared: bool = Field(False, description="may be attached to several instances at once")
    snapshot_id: str | None = Field(None, description="made holding this volume snapshot's data")
    zone: str | None = None
    volume_type: str | None = None


class AttachmentOut(BaseModel):
    instance_id: str
    instance: str | None
    path: str
    device: str
    state: str
    created: datetime


class VolumeOut(BaseModel):
    id: str
    name: str
    project_id: str
    pool: str
    size: int
    used: int | None = Field(None, description="bytes it holds (shown by GET of one volume)")
    state: str = Field(description="creating | available | in-use | deleting | error")
    state_reason: str | None
    shared: bool
    zone: str
    volume_type: str
    snapshot_id: str | None
    attachments: list[AttachmentOut]
    operation: str | None
    created: datetime

    @classmethod
    def of(cls, v: Volume) -> VolumeOut:
        return cls(id=v.id, name=v.name, project_id=v.project_id, pool=v.pool, size=v.size,
                   used=v.used, state=v.state, state_reason=v.state_reason, shared=v.shared,
                   zone=v.zone, volume_type=v.volume_type, snapshot_id=v.snapshot_id,
                   operation=v.operation_id, created=v.created,
                   attachments=[AttachmentOut(instance_id=a.instance_id, instance=a.instance_name,
                                              path=a.path, device=a.device, state=a.state,
                                              created=a.created) for a in v.attachments])


class VolumeOpOut(BaseModel):
    volume: VolumeOut
    operation: OperationOut


class ResizeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: str | int = Field(..., description="bytes, or a size such as 2GiB")


class DiskResizeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disk: str | int = Field(..., description="the root disk's new limit (e.g. 2GiB)")


class AttachIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instance: str = Field(..., min_length=1, description="instance name or id")
    path: str | None = Field(None, description="where it appears inside (/media/<volume-id> "
                                               "when omitted)")
    device: str = Field("", description="a device name to show it as (e.g. /dev/sdf)")


class DetachIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    force: bool = Field(False, description="even while a process inside holds it")
    instance: str | None = Field(None, description="which one (a shared volume attached to "
                                                   "several)")


class SnapshotCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, description="unique among the target's (snapN when omitted)")
    description: str = ""


class SnapshotOut(BaseModel):
    id: str
    name: str
    of: str = Field(description="root (an instance's) | volume")
    target_id: str
    pool: str
    project_id: str
    size: int
    state: str = Field(description="pending | completed | error")
    description: str
    operation: str | None
    created: datetime

    @classmethod
    def of_(cls, s: Snapshot) -> SnapshotOut:
        return cls(id=s.id, name=s.name, of=s.of_kind, target_id=s.target_id, pool=s.pool,
                   project_id=s.project_id, size=s.size, state=s.state,
                   description=s.description, operation=s.operation_id, created=s.created)


class SnapshotOpOut(BaseModel):
    snapshot: SnapshotOut
    operation: OperationOut


class CopyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, description="the copy's name (its id when omitted)")
    snapshot: str | None = Field(None, description="copy this snapshot of it, not its root now")
    start: bool = Field(False, description="start the copy")


class ImageFromIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instance: str = Field(..., min_length=1, description="instance name or id")
    name: str = Field(..., min_length=1, description="the new image's name")
    snapshot: str | None = Field(None, description="from this snapshot of it")
    description: str | None = None
