"""REST: /api/v1/pools, /api/v1/volumes (with their attachments and snapshots) and
/api/v1/snapshots."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.api.rest.operations import awaited
from lxcloud.api.rest.schemas import (
    AttachIn,
    DetachIn,
    OperationOut,
    PoolCreate,
    PoolOut,
    ResizeIn,
    SnapshotCreate,
    SnapshotOpOut,
    SnapshotOut,
    VolumeCreate,
    VolumeOpOut,
    VolumeOut,
    operation_dict,
)
from lxcloud.core.caller import Caller
from lxcloud.core.errors import Forbidden
from lxcloud.core.models import Operation
from lxcloud.drivers.storage.base import SnapshotOf
from lxcloud.services.cloud import Cloud

pools = APIRouter(prefix="/api/v1/pools", tags=["pools"])
volumes = APIRouter(prefix="/api/v1/volumes", tags=["volumes"])
snapshots = APIRouter(prefix="/api/v1/snapshots", tags=["snapshots"])
exports = APIRouter(prefix="/api/v1/exports", tags=["instances"])

WAIT = Query(0, ge=0, le=3600, description="seconds to wait for the operation to end before "
                                            "answering (0: answer at once)")


def _admin(who: Caller) -> None:
    if not who.is_admin:
        raise Forbidden("only an admin may change pools")


async def op_answer(request: Request, c: Cloud, who: Caller, op: Operation, wait: float,
                    extra: dict[str, Any] | None = None) -> Response:
    """202 with the operation (once ended, with `wait`) and, in `extra`, what it works on."""
    op = await awaited(request, c, op.id, who, wait, op)
    body = {**(extra or {}), "operation": operation_dict(op)}
    return Response(to_json(body), status_code=202, media_type="application/json")


# --- pools
@pools.get("", response_model=list[PoolOut])
def list_pools(c: Cloud = Depends(cloud)) -> list[PoolOut]:
    return [PoolOut.of(p) for p in c.pools.list()]


@pools.post("", status_code=201, response_model=PoolOut)
def create_pool(body: PoolCreate, c: Cloud = Depends(cloud),
                who: Caller = Depends(caller)) -> PoolOut:
    _admin(who)
    return PoolOut.of(c.pools.create(body.name, body.driver, source=body.source, size=body.size))


@pools.get("/{name}", response_model=PoolOut)
def get_pool(name: str, c: Cloud = Depends(cloud)) -> PoolOut:
    return PoolOut.of(c.pools.get(name))


@pools.delete("/{name}", status_code=204)
def delete_pool(name: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    _admin(who)
    c.pools.delete(name)
    return Response(status_code=204)


# --- volumes
@volumes.get("", response_model=list[VolumeOut])
def list_volumes(all_projects: bool = Query(False, description="every project's (admins only)"),
                 c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> list[VolumeOut]:
    return [VolumeOut.of(v) for v in c.volumes.list(caller=who, all_projects=all_projects)]


@volumes.post("", status_code=202, response_model=VolumeOpOut)
async def create_volume(request: Request, body: VolumeCreate, wait: float = WAIT,
                        c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    vol, op = await run_in_threadpool(partial(
        c.volumes.create, body.name, body.size, pool=body.pool, shared=body.shared,
        zone=body.zone, volume_type=body.volume_type, snapshot_id=body.snapshot_id, caller=who))
    return await _volume_answer(request, c, who, vol.id, op, wait)


async def _volume_answer(request: Request, c: Cloud, who: Caller, vid: str, op: Operation,
                         wait: float) -> Response:
    op = await awaited(request, c, op.id, who, wait, op)
    vol = await run_in_threadpool(lambda: c.volumes.get(vid, caller=who))
    return Response(to_json({"volume": VolumeOut.of(vol).model_dump(mode="json"),
                             "operation": operation_dict(op)}),
                    status_code=202, media_type="application/json")


@volumes.get("/{ref}", response_model=VolumeOut)
def get_volume(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> VolumeOut:
    return VolumeOut.of(c.volumes.get(ref, caller=who, with_usage=True))


@volumes.post("/{ref}/resize", status_code=202, response_model=VolumeOpOut)
async def resize_volume(request: Request, ref: str, body: ResizeIn, wait: float = WAIT,
                        c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    op = await run_in_threadpool(partial(c.volumes.resize, ref, body.size, caller=who))
    return await _volume_answer(request, c, who, op.target, op, wait)


@volumes.delete("/{ref}", status_code=202, response_model=OperationOut)
async def delete_volume(request: Request, ref: str, wait: float = WAIT,
                        c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    op = await run_in_threadpool(partial(c.volumes.delete, ref, caller=who))
    return await op_answer(request, c, who, op, wait)


@volumes.post("/{ref}/attach", status_code=202, response_model=VolumeOpOut)
async def attach_volume(request: Request, ref: str, body: AttachIn, wait: float = WAIT,
                        c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    vol = await run_in_threadpool(lambda: c.volumes.get(ref, caller=who))
    op = await run_in_threadpool(partial(c.volumes.attach, vol.id, body.instance, path=body.path,
                                         device=body.device, caller=who))
    return await _volume_answer(request, c, who, vol.id, op, wait)


@volumes.post("/{ref}/detach", status_code=202, response_model=VolumeOpOut)
async def detach_volume(request: Request, ref: str, body: DetachIn | None = Body(None),
                        wait: float = WAIT, c: Cloud = Depends(cloud),
                        who: Caller = Depends(caller)) -> Response:
    b = body or DetachIn.model_validate({})
    vol = await run_in_threadpool(lambda: c.volumes.get(ref, caller=who))
    op = await run_in_threadpool(partial(c.volumes.detach, vol.id, instance_ref=b.instance,
                                         force=b.force, caller=who))
    return await _volume_answer(request, c, who, vol.id, op, wait)


@volumes.get("/{ref}/snapshots", response_model=list[SnapshotOut])
def list_volume_snapshots(ref: str, c: Cloud = Depends(cloud),
                          who: Caller = Depends(caller)) -> list[SnapshotOut]:
    vol = c.volumes.get(ref, caller=who)
    return [SnapshotOut.of_(s) for s in c.snapshots.list(target=vol.id, caller=who)]


@volumes.post("/{ref}/snapshots", status_code=202, response_model=SnapshotOpOut)
async def snapshot_volume(request: Request, ref: str, body: SnapshotCreate | None = Body(None),
                          wait: float = WAIT, c: Cloud = Depends(cloud),
                          who: Caller = Depends(caller)) -> Response:
    b = body or SnapshotCreate.model_validate({})
    snap, op = await run_in_threadpool(partial(c.snapshots.create, SnapshotOf.VOLUME, ref,
                                               name=b.name, description=b.description,
                                               caller=who))
    return await snapshot_answer(request, c, who, snap.id, op, wait)


async def snapshot_answer(request: Request, c: Cloud, who: Caller, sid: str, op: Operation,
                          wait: float) -> Response:
    op = await awaited(request, c, op.id, who, wait, op)
    try:
        snap: dict[str, Any] | None = SnapshotOut.of_(
            await run_in_threadpool(lambda: c.snapshots.get(sid, caller=who))).model_dump(
            mode="json")
    except Exception:      # a failed snapshot leaves no record: the operation says why
        snap = None
    return Response(to_json({"snapshot": snap, "operation": operation_dict(op)}),
                    status_code=202, media_type="application/json")


# --- snapshots by id (of volumes and of instance roots)
@snapshots.get("", response_model=list[SnapshotOut])
def list_snapshots(of: str | None = Query(None, description="root | volume"),
                   c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> list[SnapshotOut]:
    kind = SnapshotOf(of) if of in ("root", "volume") else None
    return [SnapshotOut.of_(s) for s in c.snapshots.list(of=kind, caller=who)]


@snapshots.get("/{sid}", response_model=SnapshotOut)
def get_snapshot(sid: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> SnapshotOut:
    return SnapshotOut.of_(c.snapshots.get(sid, caller=who))


@snapshots.post("/{sid}/restore", status_code=202, response_model=OperationOut)
async def restore_snapshot(request: Request, sid: str, wait: float = WAIT,
                           c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    op = await run_in_threadpool(partial(c.snapshots.restore, sid, caller=who))
    return await op_answer(request, c, who, op, wait)


@snapshots.delete("/{sid}", status_code=202, response_model=OperationOut)
async def delete_snapshot(request: Request, sid: str, wait: float = WAIT,
                          c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    op = await run_in_threadpool(partial(c.snapshots.delete, sid, caller=who))
    return await op_answer(request, c, who, op, wait)


# --- exports of instances (made by POST /api/v1/instances/{ref}/export)
@exports.get("/{export_id}", response_class=FileResponse,
             responses={200: {"content": {"application/x-tar": {}}}})
def download_export(export_id: str, c: Cloud = Depends(cloud),
                    who: Caller = Depends(caller)) -> FileResponse:
    exp = c.copies.export_file(export_id, caller=who)
    return FileResponse(exp.path, media_type="application/x-tar",
                        filename=f"{exp.instance_name}.lxcloud.tar")


@exports.delete("/{export_id}", status_code=204)
def delete_export(export_id: str, c: Cloud = Depends(cloud),
                  who: Caller = Depends(caller)) -> Response:
    c.copies.delete_export(export_id, caller=who)
    return Response(status_code=204)
