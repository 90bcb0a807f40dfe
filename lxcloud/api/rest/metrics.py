"""REST: an instance's and a node's metrics (current sample and history, from memory)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from lxcloud.api.rest.deps import caller, cloud
from lxcloud.core.caller import Caller
from lxcloud.core.errors import NotFound
from lxcloud.services.cloud import Cloud

router = APIRouter(prefix="/api/v1", tags=["metrics"])

SINCE = Query(None, description="unix seconds: samples from then on (default: the last hour; "
                                "older ones are one-minute averages, up to 24 h)")


@router.get("/instances/{ref}/metrics")
def instance_metrics(ref: str, since: float | None = SINCE, c: Cloud = Depends(cloud),
                     who: Caller = Depends(caller)) -> dict[str, Any]:
    return c.metrics.instance_metrics(c.instances.get(ref, caller=who), since)


@router.get("/nodes/{name}/metrics")
def node_metrics(name: str, since: float | None = SINCE, c: Cloud = Depends(cloud)) -> dict[str, Any]:
    if name not in {n["name"] for n in c.nodes.list()}:
        raise NotFound(f"node {name!r} does not exist", resource="node")
    return c.metrics.node_metrics(name, since)
