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
        return cls(id=op.id, kind=op.kind, target=op.target, status=op.status, progress=op.progress,
                   message=op.message, error=op.error, error_code=op.error_code, result=op.result,
                   created=op.created, updated=op.updated)


class InstanceOut(BaseModel):
    id: str
    name: str
    state: str
    state_reason: str | None
    image: str | None
    image_id: str
    instance_type: str
    limits: dict[str, Any]
    ipv4: str | None
    mac: str | None
    node: str | None
    created: datetime
    launched_at: datetime | None
    terminated_at: datetime | None
    operation: str | None

    @classmethod
    def of(cls, i: Instance) -> InstanceOut:
        # the record comes from our own database: no need to validate it again
        return cls.model_construct(id=i.id, name=i.name, state=i.state, state_reason=i.state_reason,
                   image=i.image_name, image_id=i.image_id, instance_type=i.instance_type,
                   limits=i.limits, ipv4=i.ipv4, mac=i.mac, node=i.node, created=i.created,
                   launched_at=i.launched_at, terminated_at=i.terminated_at, operation=i.operation_id)


class LaunchOut(BaseModel):
    instance: InstanceOut
    operation: OperationOut


class ActionOut(BaseModel):
    instance: InstanceOut
    operation: OperationOut


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
    created: datetime

    @classmethod
    def of(cls, i: Image) -> ImageOut:
        return cls(id=i.id, name=i.name, os=i.os, release=i.release, architecture=i.architecture,
                   format=i.format, size=i.size, sha256=i.sha256, kind=i.kind, created=i.created)


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
