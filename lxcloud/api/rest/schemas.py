"""Pydantic schemas of the REST API (the JSON contract users' scripts depend on)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lxcloud.core.models import Image, Instance, Operation


class LimitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory: str | int | None = Field(None, description="bytes, or a size such as 256MiB")
    cpus: float | None = Field(None, gt=0, description="vCPUs (may be fractional)")
    pids: int | None = Field(None, gt=0)
    swap: str | int | None = None


class InstanceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(..., min_length=1, description="image name or id")
    name: str | None = None
    instance_type: str | None = None
    limits: LimitsIn | None = None
    user_data: str | None = None
    start: bool = True


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
    network: str
    mac: str
    ipv4: str | None
    prefix: int
    gateway: str | None



class DiskOut(BaseModel):
    name: str
    pool: str
    size: int
    path: str
    source: str | None



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

    @classmethod
    def of(cls, i: Instance) -> InstanceOut:
        return cls.model_validate(instance_dict(i))


def instance_dict(i: Instance) -> dict[str, Any]:
    """An instance as InstanceOut shows it, as plain values: what lists are serialised from
    directly (a thousand instances are not a thousand models)."""
    lim = i.limits
    return {
        "id": i.id, "name": i.name, "state": str(i.state), "state_reason": i.state_reason,
        "kind": str(i.kind), "image": i.image_name, "image_id": i.image_id,
        "instance_type": i.instance_type,
        "limits": {"cpus": lim.vcpus, "memory": lim.memory, "swap": lim.swap, "pids": lim.pids,
                   "disk": lim.disk},
        "ipv4": i.ipv4, "mac": i.mac,
        "nics": [{"name": n.name, "network": n.network, "mac": n.mac, "ipv4": n.ipv4,
                  "prefix": n.prefix, "gateway": n.gateway} for n in i.nics],
        "disks": [{"name": d.name, "pool": d.pool, "size": d.size, "path": d.path,
                   "source": d.source} for d in i.disks],
        "node": i.node, "project": i.project, "project_id": i.project_id, "created": i.created,
        "launched_at": i.launched_at, "terminated_at": i.terminated_at,
        "operation": i.operation_id,
    }


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
