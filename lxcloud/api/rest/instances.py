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
    ExecIn,
    ExecOut,
    InstanceCreate,
    InstanceOut,
    LaunchOut,
    instance_dict,
    operation_dict,
)
from lxcloud.core.caller import Caller
from lxcloud.core.models import Instance, Operation
from lxcloud.services.cloud import Cloud
from lxcloud.services.instances import LaunchRequest

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
    items = [instance_dict(i) for i in c.instances.list(include_terminated=all, caller=who,
                                                        all_projects=all_projects)]
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
    return Response(to_json({"instance": instance_dict(inst), "operation": operation_dict(op)}),
                    status_code=202, media_type="application/json")


@router.post("", status_code=202, response_model=LaunchOut)
async def create_instance(
    request: Request, body: InstanceCreate, wait: float = WAIT, c: Cloud = Depends(cloud),
    who: Caller = Depends(caller)
) -> Response:
    lim = body.limits
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
            user_data=body.user_data,
            start=body.start,
        ),
        caller=who,
    )
    [(inst, op)] = await run_in_threadpool(launch)
    assert op is not None
    return await _answer(request, c, who, inst.id, op, wait, known=inst)


@router.get("/{ref}", response_model=InstanceOut)
def get_instance(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> InstanceOut:
    return InstanceOut.of(c.instances.get(ref, caller=who))


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
