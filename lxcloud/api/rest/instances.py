"""REST: /api/v1/instances."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import TypeAdapter

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.api.rest.schemas import (
    ActionIn,
    ActionOut,
    ExecIn,
    ExecOut,
    InstanceCreate,
    InstanceOut,
    LaunchOut,
    OperationOut,
)
from lxcloud.core.caller import Caller
from lxcloud.services.cloud import Cloud
from lxcloud.services.instances import LaunchRequest

router = APIRouter(prefix="/api/v1/instances", tags=["instances"])


_LIST = TypeAdapter(list[InstanceOut])


@router.get("", response_model=list[InstanceOut])
def list_instances(
    all: bool = Query(False, description="include terminated instances"),
    all_projects: bool = Query(False, description="every project's instances (admins only)"),
    c: Cloud = Depends(cloud),
    who: Caller = Depends(caller),
) -> Response:
    # serialised once here, not validated a second time by the framework
    items = [InstanceOut.of(i) for i in c.instances.list(include_terminated=all, caller=who,
                                                         all_projects=all_projects)]
    return Response(_LIST.dump_json(items), media_type="application/json")


@router.post("", status_code=202, response_model=LaunchOut)
def create_instance(
    body: InstanceCreate, c: Cloud = Depends(cloud), who: Caller = Depends(caller)
) -> LaunchOut:
    lim = body.limits
    [(inst, op)] = c.instances.launch(
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
    assert op is not None
    return LaunchOut(instance=InstanceOut.of(inst), operation=OperationOut.of(op))


@router.get("/{ref}", response_model=InstanceOut)
def get_instance(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> InstanceOut:
    return InstanceOut.of(c.instances.get(ref, caller=who))


@router.post("/{ref}/actions/{action}", status_code=202, response_model=ActionOut)
def instance_action(
    ref: str,
    action: str,
    body: ActionIn | None = Body(None),
    c: Cloud = Depends(cloud),
    who: Caller = Depends(caller),
) -> ActionOut:
    body = body or ActionIn(force=False, timeout=30)
    op = c.instances.action(ref, action, force=body.force, timeout=body.timeout, caller=who)
    return ActionOut(
        instance=InstanceOut.of(c.instances.get(op.target, caller=who)), operation=OperationOut.of(op)
    )


@router.delete("/{ref}", status_code=202, response_model=ActionOut)
def delete_instance(
    ref: str, force: bool = Query(False), c: Cloud = Depends(cloud), who: Caller = Depends(caller)
) -> ActionOut:
    op = c.instances.delete(ref, force=force, caller=who)
    return ActionOut(
        instance=InstanceOut.of(c.instances.get(op.target, caller=who)), operation=OperationOut.of(op)
    )


@router.post("/{ref}/exec", response_model=ExecOut)
def exec_instance(
    ref: str, body: ExecIn, c: Cloud = Depends(cloud), who: Caller = Depends(caller)
) -> ExecOut:
    res = c.instances.exec(
        ref,
        body.argv,
        stdin=body.stdin.encode() if body.stdin is not None else None,
        timeout=body.timeout,
        env=body.env,
        caller=who,
    )
    return ExecOut(
        exit_code=res.exit_code,
        stdout=res.stdout.decode(errors="replace"),
        stderr=res.stderr.decode(errors="replace"),
        timed_out=res.timed_out,
    )


@router.get("/{ref}/console", response_class=PlainTextResponse)
def console_log(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> PlainTextResponse:
    return PlainTextResponse(c.instances.console_log(ref, caller=who).decode(errors="replace"))
