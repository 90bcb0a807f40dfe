"""REST: /api/v1/instances/{id}/nics — an instance's network interfaces, hot attached and
detached, and their bandwidth limits."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.api.rest.operations import awaited
from lxcloud.api.rest.schemas import (
    InstanceOut,
    NicOut,
    OperationOut,
    instance_dict,
    nic_dict,
    operation_dict,
)
from lxcloud.api.rest.storage import WAIT
from lxcloud.core.caller import Caller
from lxcloud.core.models import Instance, Operation
from lxcloud.services.cloud import Cloud
from lxcloud.services.nics import parse_rates

router = APIRouter(prefix="/api/v1/instances", tags=["nics"])


class NicAttach(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str = Field(description="the network's name or id")
    ip: str | None = Field(None, description="a fixed address (default: the next free one)")
    no_ip: bool = Field(False, description="no address: the NIC comes up unconfigured")


class NicRates(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ingress: str | int | None = Field(None, description='towards the instance, e.g. "10Mbit" '
                                                        "(0: no limit; omitted: unchanged)")
    egress: str | int | None = Field(None, description='from the instance, e.g. "10Mbit"')


class NicOpOut(BaseModel):
    instance: InstanceOut
    nic: NicOut | None
    operation: OperationOut


async def _answer(request: Request, c: Cloud, who: Caller, inst: Instance, op: Operation,
                  nic: str, wait: float) -> Response:
    """202 with the instance (as it is once the operation ended, with `wait`), the NIC and the
    operation."""
    op = await awaited(request, c, op.id, who, wait, op)
    if op.done:
        inst = await run_in_threadpool(lambda: c.instances.get(inst.id, caller=who))
    found = next((n for n in inst.nics if n.name == nic), None)
    body = {"instance": instance_dict(inst, c.metrics.usage(inst.id)),
            "nic": nic_dict(found) if found else None, "operation": operation_dict(op)}
    return Response(to_json(body), status_code=202, media_type="application/json")


@router.get("/{ref}/nics", response_model=list[NicOut])
def list_nics(ref: str, c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> list[NicOut]:
    return [NicOut.model_validate(nic_dict(n)) for n in c.instances.get(ref, caller=who).nics]


@router.post("/{ref}/nics", status_code=202, response_model=NicOpOut)
async def attach_nic(request: Request, ref: str, body: NicAttach, wait: float = WAIT,
                     c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    inst, op = await run_in_threadpool(partial(c.nics.attach, ref, body.network, ip=body.ip,
                                               address=not body.no_ip, caller=who))
    return await _answer(request, c, who, inst, op, inst.nics[-1].name, wait)


@router.delete("/{ref}/nics/{nic}", status_code=202, response_model=NicOpOut)
async def detach_nic(request: Request, ref: str, nic: str, wait: float = WAIT,
                     c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> Response:
    inst, op = await run_in_threadpool(partial(c.nics.detach, ref, nic, caller=who))
    return await _answer(request, c, who, inst, op, nic, wait)


@router.patch("/{ref}/nics/{nic}", status_code=202, response_model=NicOpOut)
async def set_nic_rates(request: Request, ref: str, nic: str, body: NicRates,
                        wait: float = WAIT, c: Cloud = Depends(cloud),
                        who: Caller = Depends(caller)) -> Response:
    rates = parse_rates(body.ingress, body.egress)
    inst, op = await run_in_threadpool(partial(c.nics.set_rates, ref, rates, nic_name=nic,
                                               caller=who))
    return await _answer(request, c, who, inst, op, nic, wait)
