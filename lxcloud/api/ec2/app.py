"""The EC2 Query endpoint (`/ec2/`): SigV4-verified form POSTs and GETs, dispatched by Action.

A thin skin over the same services as REST: every rule lives in services/, every error is mapped
once (errors.to_ec2)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from lxcloud.api.ec2 import (  # noqa: F401 - register actions
    addresses,
    attributes,
    instances,
    resources,
    security_groups,
    sigv4,
    storage,
    vpc,
)
from lxcloud.api.ec2.dispatch import ACTIONS, Ctx
from lxcloud.api.ec2.errors import Ec2Error, to_ec2
from lxcloud.api.ec2.params import Params
from lxcloud.api.ec2.xml import new_request_id, render, render_error
from lxcloud.core.errors import LxcloudError
from lxcloud.services.cloud import Cloud

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
MAX_BODY = 1 << 20


def _xml(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="text/xml;charset=UTF-8")


@router.api_route("/ec2", methods=["GET", "POST"])
@router.api_route("/ec2/", methods=["GET", "POST"])
async def ec2_endpoint(request: Request) -> Response:
    rid = new_request_id()
    c: Cloud = request.app.state.cloud
    body = await request.body()
    act = ""
    try:
        if len(body) > MAX_BODY:
            raise Ec2Error("InvalidRequest", "The request is too large.")
        query = parse_qsl(request.url.query, keep_blank_values=True)
        raw = dict(query)
        ctype = request.headers.get("content-type", "")
        if request.method == "POST" and ctype.startswith("application/x-www-form-urlencoded"):
            raw.update(parse_qsl(body.decode("utf-8", errors="strict"), keep_blank_values=True))
        akid = await run_in_threadpool(
            sigv4.verify, request.method, request.url.path, query, request.headers, body,
            secret_for=c.accounts.secret_for, region=c.settings.region)
        who = await run_in_threadpool(c.accounts.caller_for_key, akid)
        p = Params(raw)
        act = p.str("Action") or ""
        if not act:
            raise Ec2Error("MissingAction", "The request must contain the parameter Action.")
        handler = ACTIONS.get(act)
        if handler is None:
            handler = _unsupported if act in UNSUPPORTED else None
        if handler is None:
            raise Ec2Error("InvalidAction", f"The action {act} is not valid for this web service.")
        result = await run_in_threadpool(handler, Ctx(c, who, act), p)
        return _xml(render(act, result, rid))
    except Ec2Error as e:
        return _xml(render_error(e.code, e.message, rid), e.status)
    except LxcloudError as e:
        err = to_ec2(e, action=act or "the request")
        if err.code == "InternalError":
            log.error("EC2 %s failed: %s", act, e)
        return _xml(render_error(err.code, err.message, rid), err.status)
    except UnicodeDecodeError:
        return _xml(render_error("InvalidParameterValue", "The request is not valid UTF-8.", rid),
                    400)
    except Exception:
        log.exception("EC2 %s failed", act)
        return _xml(render_error("InternalError", "An internal error has occurred.", rid), 500)


# Actions not answered (yet): refused clearly rather than as unknown.
UNSUPPORTED = frozenset({
    "DescribeVolumeStatus", "CopySnapshot", "CopyImage", "ImportImage",
    "CreateNetworkInterface", "DeleteNetworkInterface", "AttachNetworkInterface",
    "DetachNetworkInterface", "ModifyInstancePlacement",
})


def _unsupported(ctx: Ctx, p: Params) -> dict[str, Any]:
    raise Ec2Error("UnsupportedOperation",
                   f"{ctx.action} is not supported by this cloud yet (copies of snapshots and images; "
                   "an instance's network interfaces are its NICs: lxcloud nic attach|detach).")
