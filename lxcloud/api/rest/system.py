"""REST: instance types, nodes, health and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from lxcloud.api.rest.deps import cloud, require_auth
from lxcloud.core.instance_types import DEFAULT_TYPE, DEFAULT_TYPES
from lxcloud.services.cloud import Cloud

router = APIRouter(tags=["system"])
public = APIRouter(tags=["system"])


@router.get("/api/v1/instance-types")
def instance_types() -> list[dict[str, Any]]:
    return [dict(t.to_dict(), default=t.name == DEFAULT_TYPE) for t in DEFAULT_TYPES]


@router.get("/api/v1/nodes")
def nodes(c: Cloud = Depends(cloud)) -> list[dict[str, Any]]:
    return c.nodes.list()


@router.get("/api/v1/networks")
def networks(c: Cloud = Depends(cloud)) -> list[dict[str, Any]]:
    return [{"id": n.id, "name": n.name, "cidr": n.cidr, "gateway": n.gateway, "bridge": n.bridge,
             "created": n.created} for n in c.networks.list()]


@public.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


class CloudCollector:
    """Instance and operation counts, asked of the services at scrape time."""

    def __init__(self, c: Cloud) -> None:
        self.c = c

    def collect(self) -> Any:
        inst = GaugeMetricFamily("lxcloud_instances", "Instances by state", labels=["state"])
        ops = GaugeMetricFamily("lxcloud_operations", "Operations by status", labels=["status"])
        for state, n in self.c.instances.counts().items():
            inst.add_metric([state], n)
        for status, n in self.c.ops.counts().items():
            ops.add_metric([status], n)
        yield inst
        yield ops


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, _: str = Depends(require_auth)) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
