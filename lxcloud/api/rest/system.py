"""REST: instance types, nodes, health and Prometheus metrics."""

from __future__ import annotations

import math
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


def _label(v: str) -> str:
    if "\\" in v or '"' in v or "\n" in v:
        v = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return v


def _value(v: Any) -> str:
    if isinstance(v, int):
        return str(int(v))              # a bool too
    f = float(v)
    if math.isfinite(f):
        return repr(f)
    return "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")


class _Families:
    """Prometheus text (format 0.0.4) of families added sample by sample, in the order they were
    made: what prometheus_client's exposition writes, without its per-sample name checks and
    escaping of names and label names we know are valid (1,000 instances are 15,000 samples:
    140 ms of CPU a scrape through generate_latest, 26 ms here)."""

    def __init__(self) -> None:
        self.fams: list[list[str]] = []

    def family(self, name: str, help_: str, kind: str) -> list[str]:
        """A new family's lines (its HELP and TYPE), for its samples to be appended to."""
        help_ = help_.replace("\\", "\\\\").replace("\n", "\\n")
        lines = [f"# HELP {name} {help_}\n# TYPE {name} {kind}\n"]
        self.fams.append(lines)
        return lines

    def text(self) -> str:
        return "".join(line for lines in self.fams for line in lines)


def usage_text(c: Cloud) -> str:
    """Each sampled instance's and node's latest figures, from the metrics service's memory (no
    host read at scrape time). `instance` is the instance's name (readable), `instance_id` its
    id (stable across renames)."""
    tracks, nodes = c.metrics.snapshot()
    out = _Families()
    inst = []
    for name, help_, counter in INSTANCE_METRICS:
        full = f"lxcloud_instance_{name}{'_total' if counter else ''}"
        inst.append((name, full, out.family(full, help_, "counter" if counter else "gauge")))
    nics = []
    for key, way, what in NIC_METRICS:
        full = f"lxcloud_instance_network_{way}_{what}_total"
        nics.append((key, full, out.family(
            full, f"{what.capitalize()} {way}: per NIC, as the instance sees it", "counter")))
    for t in tracks:
        cur = t.current
        if cur is None:
            continue
        # label names in sorted order, as prometheus_client writes them (scripts grep them)
        head = f'instance="{_label(t.name)}",instance_id="{_label(t.id)}",'
        tail = f'node="{_label(t.node)}",project="{_label(t.project or "")}"'
        lv = head + tail
        for name, full, lines in inst:
            v = cur.get(name)
            if v is not None:
                lines.append(f"{full}{{{lv}}} {_value(v)}\n")
        for nic, n in cur["nics"].items():
            nl = f'{head}nic="{_label(nic)}",{tail}'
            for key, full, lines in nics:
                lines.append(f"{full}{{{nl}}} {_value(n[key])}\n")
    node = [(k, out.family(f"lxcloud_node_{k}", h, "gauge")) for k, h in NODE_METRICS]
    for nt in nodes:
        cur = nt.current
        if cur is None:
            continue
        vals = {"cpus": cur["cpus"], "cpu_percent": cur["cpu_percent"],
                "load1": cur["load"][0], "load5": cur["load"][1], "load15": cur["load"][2],
                "memory_total_bytes": cur["memory_total_bytes"],
                "memory_free_bytes": cur["memory_free_bytes"],
                "memory_available_bytes": cur["memory_available_bytes"]}
        for k, lines in node:
            lines.append(f'lxcloud_node_{k}{{node="{_label(nt.name)}"}} {_value(vals[k])}\n')
    m = c.metrics
    for name, help_, v in (
            ("round_cpu_seconds", "CPU time the last collection round took (the sampler's "
             "thread: the node's reads and the controller's work)", m.last_round_cpu),
            ("collect_cpu_seconds", "Of which in the node's collection", m.last_collect_cpu),
            ("round_seconds", "Wall time of the last collection round", m.last_round_seconds),
            ("history_bytes_per_instance", "Memory of the histories per instance",
             m.bytes_per_instance()),
            ("rounds_total", "Collection rounds taken", m.rounds)):
        out.family(f"lxcloud_metrics_{name}", help_, "gauge").append(
            f"lxcloud_metrics_{name} {_value(v)}\n")
    return out.text()


# (name after lxcloud_instance_, help, is a counter); counters are named with _total
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
    c: Cloud = request.app.state.cloud
    return Response(generate_latest(registry) + usage_text(c).encode(),
                    media_type=CONTENT_TYPE_LATEST)
