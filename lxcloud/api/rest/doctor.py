"""REST: /api/v1/doctor, the host's networking preflight (admins)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.core.caller import Caller
from lxcloud.services.cloud import Cloud

router = APIRouter(prefix="/api/v1/doctor", tags=["system"])


class CheckOut(BaseModel):
    name: str
    status: Literal["ok", "warn", "fail"]
    message: str
    fix: str


class DoctorOut(BaseModel):
    status: Literal["ok", "warn", "fail"]    # the worst of the checks
    checks: list[CheckOut]


@router.get("", response_model=DoctorOut)
async def doctor(c: Cloud = Depends(cloud), who: Caller = Depends(caller)) -> DoctorOut:
    """What on the host breaks the cloud's networking, each with the command that fixes it."""
    from lxcloud.node.doctor import worst

    found = await run_in_threadpool(c.doctor.run, who)
    return DoctorOut(status=worst(found),  # type: ignore[arg-type]
                     checks=[CheckOut.model_validate(x.to_dict()) for x in found])
