"""REST: instance types, nodes, health and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
        yield from self.usage()

    def usage(self) -> Any:
        """Each sampled instance's and node's latest figures, from the metrics service's memory
        (no host read at scrape time). `instance` is the instance's name (readable),
        `instance_id` its id (stable across renames)."""
        tracks, nodes = self.c.metrics.snapshot()
        lab = ["instance", "instance_id", "project", "node"]
        fams: dict[str, Any] = {}
        for name, help_, counter in INSTANCE_METRICS:
            cls = CounterMetricFamily if counter else GaugeMetricFamily
            fams[name] = cls(f"lxcloud_instance_{name}", help_, labels=lab)
        nic_fams = {key: CounterMetricFamily(f"lxcloud_instance_network_{way}_{what}",
                                             f"{what.capitalize()} {way}: per NIC, as the "
                                             "instance sees it", labels=[*lab, "nic"])
                    for key, way, what in NIC_METRICS}
        for t in tracks:
            cur = t.current
            if cur is None:
                continue
            lv = [t.name, t.id, t.project or "", t.node]
            for name, _, _ in INSTANCE_METRICS:
                v = cur.get(name)
                if v is not None:
                    fams[name].add_metric(lv, v)
            for nic, n in cur["nics"].items():
                for key, _, _ in NIC_METRICS:
                    nic_fams[key].add_metric([*lv, nic], n[key])
        yield from fams.values()
        yield from nic_fams.values()
        node_fams = {k: GaugeMetricFamily(f"lxcloud_node_{k}", h, labels=["node"])
                     for k, h in NODE_METRICS}
        for nt in nodes:
            cur = nt.current
            if cur is None:
                continue
            vals = {"cpus": cur["cpus"], "cpu_percent": cur["cpu_percent"],
                    "load1": cur["load"][0], "load5": cur["load"][1], "load15": cur["load"][2],
                    "memory_total_bytes": cur["memory_total_bytes"],
                    "memory_free_bytes": cur["memory_free_bytes"],
                    "memory_available_bytes": cur["memory_available_bytes"]}
            for k, v in vals.items():
                node_fams[k].add_metric([nt.name], v)
        yield from node_fams.values()
        m = self.c.metrics
        for name, help_, v in (
                ("round_cpu_seconds", "CPU time the last collection round took (the sampler's "
                 "thread: the node's reads and the controller's work)", m.last_round_cpu),
                ("collect_cpu_seconds", "Of which in the node's collection", m.last_collect_cpu),
                ("round_seconds", "Wall time of the last collection round", m.last_round_seconds),
                ("history_bytes_per_instance", "Memory of the histories per instance",
                 m.bytes_per_instance()),
                ("rounds_total", "Collection rounds taken", m.rounds)):
            fam = GaugeMetricFamily(f"lxcloud_metrics_{name}", help_)
            fam.add_metric([], v)
            yield fam


# (name after lxcloud_instance_, help, is a counter); counters get _total from the client
INSTANCE_METRICS = (
    ("cpu_seconds", "CPU time used", True),
    ("cpu_percent", "CPU use (100 = one CPU busy)", False),
    ("cpu_limit_percent", "CPU use as a share of its limit", False),
    ("memory_bytes", "Memory used", False),
    ("memory_limit_bytes", "Memory limit", False),
    ("swap_bytes", "Swap used", False),
    ("oom_kills", "Processes killed for lack of memory", True),
    ("pids", "Processes and threads", False),
    ("pids_limit", "Limit of processes and threads", False),
    ("disk_bytes", "Bytes used on the root disk", False),
    ("disk_limit_bytes", "The root disk's quota", False),
)
NIC_METRICS = (("rx_bytes", "receive", "bytes"), ("tx_bytes", "transmit", "bytes"),
               ("rx_packets", "receive", "packets"), ("tx_packets", "transmit", "packets"),
               ("rx_dropped", "receive", "drops"), ("tx_dropped", "transmit", "drops"))
NODE_METRICS = (("cpus", "CPUs of the node"), ("cpu_percent", "CPU use (100 = one CPU busy)"),
                ("load1", "Load average over 1 minute"), ("load5", "Load average over 5 minutes"),
                ("load15", "Load average over 15 minutes"),
                ("memory_total_bytes", "Memory of the node"),
                ("memory_free_bytes", "Memory free"),
                ("memory_available_bytes", "Memory available (free and reclaimable)"))


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, _: str = Depends(require_auth)) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
