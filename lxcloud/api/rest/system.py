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


@public.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


class CloudCollector:
    """Instance and operation counts and pool usage, asked of the services at scrape time."""

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
        labels = ["pool", "driver"]
        cap = GaugeMetricFamily("lxcloud_pool_capacity_bytes", "A pool's capacity", labels=labels)
        used = GaugeMetricFamily("lxcloud_pool_used_bytes", "Bytes used on a pool", labels=labels)
        free = GaugeMetricFamily("lxcloud_pool_free_bytes", "Bytes free on a pool", labels=labels)
        n_inst = GaugeMetricFamily("lxcloud_pool_instances", "Live instances whose root is on a "
                                   "pool", labels=labels)
        n_vol = GaugeMetricFamily("lxcloud_pool_volumes", "Volumes on a pool", labels=labels)
        for p in self.c.pools.list():
            lv = [p.name, p.driver]
            for fam, val in ((cap, p.capacity), (used, p.used), (free, p.free),
                             (n_inst, p.instances), (n_vol, p.volumes)):
                if val is not None:
                    fam.add_metric(lv, val)
        yield from (cap, used, free, n_inst, n_vol)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, _: str = Depends(require_auth)) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
