"""REST: /api/v1/instances."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.api.rest.operations import awaited
from lxcloud.api.rest.schemas import (
    ActionIn,
    ActionOut,
    CopyIn,
    DiskResizeIn,
    ExecIn,
    ExecOut,
    InstanceCreate,
    InstanceOut,
    LaunchOut,
    OperationOut,
    SnapshotCreate,
    SnapshotOpOut,
    SnapshotOut,
    instance_dict,
    operation_dict,
)
from lxcloud.core.caller import Caller
from lxcloud.core.errors import InvalidInput
from lxcloud.core.models import Instance, Operation
from lxcloud.services.cloud import Cloud
from lxcloud.services.instances import LaunchRequest, NicRequest

router = APIRouter(prefix="/api/v1/instances", tags=["instances"])




@router.get("", response_model=list[InstanceOut])
def list_instances(
    all: bool = Query(False, description="include terminated instances"),
    all_projects: bool = Query(False, description="every project's instances (admins only)"),
    c: Cloud = Depends(cloud),
    who: Caller = Depends(caller),
) -> Response:
    # plain values serialised once here (pydantic-core's encoder, InstanceOut's shape): neither
    # built into models nor validated again by the framework
    usage = c.metrics.usage
    items = [instance_dict(i, usage(i.id)) for i in c.instances.list(
        include_terminated=all, caller=who, all_projects=all_projects)]
    return Response(to_json(items), media_type="application/json")


WAIT = Query(0, ge=0, le=3600, description="seconds to wait for the operation to end before "
                                            "answering (0: answer at once)")


async def _answer(request: Request, c: Cloud, who: Caller, iid: str, op: Operation,
                  wait: float, known: Instance | None = None) -> Response:
    """The instance and its operation (ActionOut's shape, serialised once from plain values);
    with `wait`, once the operation has ended."""
    if wait > 0:
        op = await awaited(request, c, op.id, who, wait, op)
    inst = c.instances.left_by(op, caller=who) if wait > 0 else known
    if inst is None:
        inst = await run_in_threadpool(lambda: c.instances.get(iid, caller=who))
    return Response(to_json({"instance": instance_dict(inst, c.metrics.usage(inst.id)),
                             "operation": operation_dict(op)}),
                    status_code=202, media_type="application/json")


@router.post("", status_code=202, response_model=LaunchOut)
async def create_instance(
    request: Request, body: InstanceCreate, wait: float = WAIT, c: Cloud = Depends(cloud),
    who: Caller = Depends(caller)
) -> Response:
    lim = body.limits
    if body.nics and (body.network or body.ip):
        raise InvalidInput("give either nics or network and ip, not both")
    launch = partial(
        c.instances.launch,
        LaunchRequest(
            image=body.image,
            name=body.name,
            instance_type=body.instance_type,
            memory=lim.memory if lim else None,
            cpus=lim.cpus if lim else None,
            pids=lim.pids if lim else None,
            swap=lim.swap if lim else None,
            disk=lim.disk if lim else None,
            user_data=body.user_data,
            key_name=body.key_name,
            start=body.start,
            pool=body.pool,
            network=body.network,
            nics=tuple(NicRequest(n.network, n.ip) for n in body.nics) if body.nics
            else (NicRequest(body.network, body.ip),),
            security_groups=tuple(body.security_groups or ()),
            ingress=body.ingress,
            egress=body.egress,
        ),
        caller=who,
    )
    [(inst, op)] = await run_in_threadpool(launch)
    assert op is not None
    return await _answer(request, c, who, inst.id, op, wait, known=inst)


@router.post("/import", status_code=202, response_model=ActionOut,
             openapi_extra={"requestBody": {"content": {"application/x-tar": {}}}})
async def import_instance(request: Request, name: str | None = Query(None),
                          wait: float = WAIT, c: Cloud = Depends(cloud),
                          who: Caller = Depends(caller)) -> Response:
    """An exported instance (the archive as the raw request body) made anew, stopped, with its
    snapshots; checked as templates are."""
    from lxcloud.api.rest.images import receive_upload

    tmp = await receive_upload(request, c)
    try:     # the operation reads the upload, and removes it once it has
        inst, op = await run_in_threadpool(partial(c.copies.import_, tmp, name=name, caller=who,
                                                   consume=True))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return await _answer(request, c, who, inst.id, op, wait, known=inst)


@router.get("/{ref}", response_model=InstanceOut)
def get_instance(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> InstanceOut:
    inst = c.instances.get(ref, caller=who)
    return InstanceOut.of(inst, c.metrics.usage(inst.id))


@router.post("/{ref}/actions/{action}", status_code=202, response_model=ActionOut)
async def instance_action(
    request: Request,
    ref: str,
    action: str,
    body: ActionIn | None = Body(None),
    wait: float = WAIT,
    c: Cloud = Depends(cloud),
    who: Caller = Depends(caller),
) -> Response:
    b = body or ActionIn(force=False, timeout=30)
    op = await run_in_threadpool(partial(c.instances.action, ref, action, force=b.force,
                                         timeout=b.timeout, caller=who))
    return await _answer(request, c, who, op.target, op, wait)


@router.delete("/{ref}", status_code=202, response_model=ActionOut)
async def delete_instance(
    request: Request, ref: str, force: bool = Query(False), wait: float = WAIT,
    c: Cloud = Depends(cloud), who: Caller = Depends(caller)
) -> Response:
    op = await run_in_threadpool(partial(c.instances.delete, ref, force=force, caller=who))
    return await _answer(request, c, who, op.target, op, wait)


@router.post("/{ref}/exec", response_model=ExecOut)
def exec_instance(
    ref: str, body: ExecIn, c: Cloud = Depends(cloud), who: Caller = Depends(caller)
) -> Response:
    res = c.instances.exec(
        ref,
        body.argv,
        stdin=body.stdin.encode() if body.stdin is not None else None,
        timeout=body.timeout,
        env=body.env,
        caller=who,
    )
    # ExecOut's shape, serialised once (no model, no second validation)
    return Response(to_json({"exit_code": res.exit_code,
                             "stdout": res.stdout.decode(errors="replace"),
                             "stderr": res.stderr.decode(errors="replace"),
                             "timed_out": res.timed_out}), media_type="application/json")


@router.get("/{ref}/console", response_class=PlainTextResponse)
def console_log(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> PlainTextResponse:
    return PlainTextResponse(c.instances.console_log(ref, caller=who).decode(errors="replace"))


# --- storage of an instance: its root disk's size, snapshots, copies, exports
@router.post("/{ref}/resize", status_code=202, response_model=ActionOut)
async def resize_instance(request: Request, ref: str, body: DiskResizeIn, wait: float = WAIT,
                          c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    op = await run_in_threadpool(partial(c.instances.resize, ref, body.disk, caller=who))
    return await _answer(request, c, who, op.target, op, wait)


@router.get("/{ref}/snapshots", response_model=list[SnapshotOut])
def list_instance_snapshots(ref: str, c: Cloud = Depends(cloud),
                            who: Caller = Depends(caller)) -> list[SnapshotOut]:
    return [SnapshotOut.of_(s) for s in c.snapshots.of_instance(ref, caller=who)]


@router.post("/{ref}/snapshots", status_code=202, response_model=SnapshotOpOut)
async def snapshot_instance(request: Request, ref: str, body: SnapshotCreate | None = Body(None),
                            wait: float = WAIT, c: Cloud = Depends(cloud),
                            who: Caller = Depends(caller)) -> Response:
    from lxcloud.api.rest.storage import snapshot_answer
    from lxcloud.drivers.storage.base import SnapshotOf

    b = body or SnapshotCreate.model_validate({})
    snap, op = await run_in_threadpool(partial(c.snapshots.create, SnapshotOf.ROOT, ref,
                                               name=b.name, description=b.description,
                                               caller=who))
    return await snapshot_answer(request, c, who, snap.id, op, wait)


def _snap_of(c: Cloud, ref: str, snap: str, who: Caller) -> str:
    inst = c.instances.get(ref, caller=who)
    return c.snapshots.get(snap, target=inst.id, caller=who).id


@router.get("/{ref}/snapshots/{snap}", response_model=SnapshotOut)
def get_instance_snapshot(ref: str, snap: str, c: Cloud = Depends(cloud),
                          who: Caller = Depends(caller)) -> SnapshotOut:
    return SnapshotOut.of_(c.snapshots.get(_snap_of(c, ref, snap, who), caller=who))


@router.post("/{ref}/snapshots/{snap}/restore", status_code=202, response_model=ActionOut)
async def restore_instance_snapshot(request: Request, ref: str, snap: str, wait: float = WAIT,
                                    c: Cloud = Depends(cloud),
                                    who: Caller = Depends(caller)) -> Response:
    sid = await run_in_threadpool(lambda: _snap_of(c, ref, snap, who))
    op = await run_in_threadpool(partial(c.snapshots.restore, sid, caller=who))
    return await _answer(request, c, who, op.target, op, wait)


@router.delete("/{ref}/snapshots/{snap}", status_code=202, response_model=OperationOut)
async def delete_instance_snapshot(request: Request, ref: str, snap: str, wait: float = WAIT,
                                   c: Cloud = Depends(cloud),
                                   who: Caller = Depends(caller)) -> Response:
    from lxcloud.api.rest.storage import op_answer

    sid = await run_in_threadpool(lambda: _snap_of(c, ref, snap, who))
    op = await run_in_threadpool(partial(c.snapshots.delete, sid, caller=who))
    return await op_answer(request, c, who, op, wait)


@router.post("/{ref}/copy", status_code=202, response_model=ActionOut)
async def copy_instance(request: Request, ref: str, body: CopyIn | None = Body(None),
                        wait: float = WAIT, c: Cloud = Depends(cloud),
                        who: Caller = Depends(caller)) -> Response:
    """A clone with a new identity (name, address, MAC, machine-id, ssh host keys); stopped
    unless `start`."""
    b = body or CopyIn.model_validate({})
    inst, op = await run_in_threadpool(partial(c.copies.copy, ref, b.name, snapshot=b.snapshot,
                                               start=b.start, caller=who))
    return await _answer(request, c, who, inst.id, op, wait, known=inst)


@router.post("/{ref}/export", status_code=202, response_model=OperationOut)
async def export_instance(request: Request, ref: str, wait: float = WAIT,
                          c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    """The whole instance (root, snapshots, config) as one archive: the operation's result
    names it (`export_id`), to download from /api/v1/exports/{export_id}."""
    from lxcloud.api.rest.storage import op_answer

    op = await run_in_threadpool(partial(c.copies.export, ref, caller=who))
    return await op_answer(request, c, who, op, wait)
