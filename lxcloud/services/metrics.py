"""Metrics in the controller: a sampler thread asks each node for a collection round, turns
consecutive counters into rates and keeps a bounded history per instance and per node.

History: `FINE` samples at the sampling interval (the last hour at 10 s), then one average per
minute up to 24 h (`COARSE`): two fixed-size rings of float rows, never growing. An instance's
history is dropped when it is deleted. Everything the API shows (`usage` in instance JSON, the
metrics endpoints, Prometheus' /metrics) is read from here: no host call at request time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxcloud.config import Settings
from lxcloud.core.lifecycle import State
from lxcloud.core.models import Instance
from lxcloud.node.metrics import InstanceCounters, MetricsTarget, NicCounters, NodeCounters
from lxcloud.node.protocol import NodeClient

log = logging.getLogger(__name__)

FINE_SECONDS = 3600          # full resolution for the last hour
COARSE_SECONDS = 86400       # one-minute averages up to a day
COARSE_STEP = 60
# instance states whose cgroup exists (frozen: its CPU stands still)
SAMPLED = (State.RUNNING, State.FROZEN, State.REBOOTING, State.STOPPING)

NIC_FIELDS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_dropped", "tx_dropped")
NIC_COLS = (*NIC_FIELDS, "rx_bps", "tx_bps")
INSTANCE_COLS = ("time", "cpu_seconds", "cpu_percent", "cpu_limit_percent", "memory_bytes",
                 "swap_bytes", "oom_kills", "pids", "disk_bytes")
NODE_COLS = ("time", "cpu_percent", "load1", "load5", "load15", "memory_total_bytes",
             "memory_free_bytes", "memory_available_bytes")
# cumulative columns: a minute's row keeps the last value, the others are averaged
COUNTERS = {"time", "cpu_seconds", "oom_kills", "rx_bytes", "tx_bytes", "rx_packets",
            "tx_packets", "rx_dropped", "tx_dropped"}
INT_COLS = {"memory_bytes", "swap_bytes", "oom_kills", "pids", "disk_bytes",
            "memory_total_bytes", "memory_free_bytes", "memory_available_bytes", *NIC_FIELDS}


def rate(new: float, old: float, dt: float) -> float:
    """Per second between two readings of a counter; 0 when it went back (a restart reset it)
    or no time passed."""
    if dt <= 0 or new < old:
        return 0.0
    return (new - old) / dt


class Ring:
    """`capacity` rows of `width` floats in one flat array: the oldest row is overwritten."""

    def __init__(self, capacity: int, width: int) -> None:
        self.capacity = capacity
        self.width = width
        self.data = array("d", bytes(8 * capacity * width))
        self.start = 0          # index of the oldest row
        self.count = 0

    def push(self, row: Sequence[float]) -> None:
        i = (self.start + self.count) % self.capacity
        if self.count == self.capacity:
            self.start = (self.start + 1) % self.capacity
        else:
            self.count += 1
        self.data[i * self.width:(i + 1) * self.width] = array("d", row)

    def rows(self) -> Iterator[array[float]]:
        """Oldest first."""
        w = self.width
        for k in range(self.count):
            i = (self.start + k) % self.capacity
            yield self.data[i * w:(i + 1) * w]

    def newest(self) -> float | None:
        """Column 0 (the time) of the newest row."""
        if not self.count:
            return None
        return self.data[((self.start + self.count - 1) % self.capacity) * self.width]

    def nbytes(self) -> int:
        return self.data.itemsize * len(self.data)


class Series:
    """One history of rows (column 0 the time): full resolution in `fine`, and every minute's
    average in `coarse`."""

    def __init__(self, cols: Sequence[str], interval: float) -> None:
        self.cols = tuple(cols)
        w = len(self.cols)
        self.fine = Ring(max(1, math.ceil(FINE_SECONDS / interval)), w)
        self.coarse = Ring(COARSE_SECONDS // COARSE_STEP - FINE_SECONDS // COARSE_STEP, w)
        self._last = [c in COUNTERS for c in self.cols]
        self._bucket: int | None = None
        self._sum = [0.0] * w
        self._n = 0

    def push(self, row: Sequence[float]) -> None:
        self.fine.push(row)
        minute = int(row[0] // COARSE_STEP)
        if self._bucket is not None and minute != self._bucket:
            self._flush()
        self._bucket = minute
        for k, v in enumerate(row):
            self._sum[k] = v if self._last[k] else self._sum[k] + v
        self._n += 1

    def _flush(self) -> None:
        if self._n:
            self.coarse.push([s if last else s / self._n
                              for s, last in zip(self._sum, self._last, strict=True)])
        self._sum = [0.0] * len(self.cols)
        self._n = 0

    def since(self, t: float) -> list[array[float]]:
        """Rows from time `t` on, oldest first: minute averages older than the fine ring's
        oldest row, then the fine rows."""
        fine = [r for r in self.fine.rows() if r[0] >= t]
        first = next(iter(self.fine.rows()), None)
        edge = first[0] if first is not None else math.inf
        return [r for r in self.coarse.rows() if t <= r[0] < edge] + fine

    def nbytes(self) -> int:
        return self.fine.nbytes() + self.coarse.nbytes()


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _val(col: str, v: float) -> Any:
    if math.isnan(v):
        return None
    return int(round(v)) if col in INT_COLS else round(v, 3)


def _hour_before(series: Series | None) -> float:
    """The default start of a history: an hour before its newest row."""
    newest = series.fine.newest() if series is not None else None
    return (newest if newest is not None else time.time()) - FINE_SECONDS


@dataclass
class InstanceTrack:
    """What the controller keeps of one instance: who it is (for labels), its last counters,
    the current sample, its history, and the limits already reported as hit."""

    id: str
    name: str
    project: str | None
    project_id: str | None
    node: str
    nic_names: tuple[str, ...]
    series: Series
    last: InstanceCounters | None = None
    current: dict[str, Any] | None = None
    disk_bytes: int | None = None
    volumes: dict[str, int] = field(default_factory=dict)
    hit: set[str] = field(default_factory=set)

    def sample_of(self, row: Sequence[float], limits: dict[str, Any],
                  volumes: list[dict[str, Any]]) -> dict[str, Any]:
        """The SAMPLE JSON of one history row."""
        d = {c: _val(c, v) for c, v in zip(INSTANCE_COLS, row, strict=False)}
        d["time"] = row[0]
        d.update(limits)
        d["volumes"] = volumes
        nics: dict[str, Any] = {}
        base = len(INSTANCE_COLS)
        for k, name in enumerate(self.nic_names):
            off = base + k * len(NIC_COLS)
            nics[name] = {c: _val(c, row[off + j]) for j, c in enumerate(NIC_COLS)}
        d["nics"] = nics
        return d


@dataclass
class NodeTrack:
    name: str
    series: Series
    last: NodeCounters | None = None
    current: dict[str, Any] | None = None


Publish = Callable[..., object]


class MetricsService:
    """The sampler and the histories. `publish` (the events bus's, when there is one) is told of
    OOM kills and limits hit, once per crossing."""

    def __init__(self, settings: Settings, node: NodeClient,
                 instances: Callable[[], list[Instance]],
                 counts: Callable[[], dict[str, int]] | None = None,
                 publish: Publish | None = None) -> None:
        self.interval = float(getattr(settings, "metrics_interval", 10.0)) or 10.0
        self.disk_every = max(1, round(float(getattr(settings, "metrics_disk_interval", 60.0))
                                       / self.interval))
        self.node = node
        self.instances = instances
        self.counts = counts or (lambda: {})
        self.publish = publish
        self.tracks: dict[str, InstanceTrack] = {}
        self.nodes: dict[str, NodeTrack] = {}
        self.rounds = 0
        self.last_round_cpu = 0.0       # CPU seconds the sampler's thread spent on the last round
        self.last_collect_cpu = 0.0     # of which in the node's collection (reading the files)
        self.last_round_seconds = 0.0   # wall time of the last round
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._round = threading.Condition()

    # --- the sampler
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.run_once()
                except Exception:
                    log.exception("metrics round failed")
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wait_round(self, after: int, timeout: float) -> bool:
        """Block until round `after` + 1 has been taken (tests wait on it)."""
        with self._round:
            return self._round.wait_for(lambda: self.rounds > after, timeout)

    def run_once(self) -> None:
        """One round: every sampled instance of this node measured, rates and events worked out."""
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        live = [i for i in self.instances() if i.node in (None, self.node.name)]
        sampled = [i for i in live if i.state in SAMPLED]
        disk = self.rounds % self.disk_every == 0
        targets = [MetricsTarget(
            instance_id=i.id, kind=i.kind, nics={n.name: n.index for n in i.nics},
            root_pool=next((d.pool for d in i.disks if d.is_root), None),
            volumes=tuple((d.pool, d.name) for d in i.disks if not d.is_root), disk=disk)
            for i in sampled]
        cpu1 = time.thread_time()
        got = self.node.collect_metrics(targets)
        self.last_collect_cpu = time.thread_time() - cpu1
        with self._lock:
            alive = {i.id for i in live}
            for iid in [k for k in self.tracks if k not in alive]:
                del self.tracks[iid]
            for i in live:
                if i.state not in SAMPLED and i.id in self.tracks:
                    tr = self.tracks[i.id]
                    tr.current, tr.last = None, None
            for i in sampled:
                c = got.instances.get(i.id)
                if c is not None and c.running:
                    self._add(i, c)
            self._add_node(got.node)
        self.last_round_cpu = time.thread_time() - cpu0
        self.last_round_seconds = time.perf_counter() - wall0
        with self._round:
            self.rounds += 1
            self._round.notify_all()

    def forget(self, instance_id: str) -> None:
        """An instance's history dropped (it was deleted)."""
        with self._lock:
            self.tracks.pop(instance_id, None)

    # --- instances
    def _track(self, i: Instance) -> InstanceTrack:
        names = tuple(n.name for n in i.nics)
        tr = self.tracks.get(i.id)
        if tr is None or tr.nic_names != names:
            # a NIC added or removed changes the row's shape: its history starts anew
            cols = list(INSTANCE_COLS) + [c for _ in names for c in NIC_COLS]
            tr = InstanceTrack(i.id, i.name, i.project, i.project_id, i.node or self.node.name,
                               names, Series(cols, self.interval))
            self.tracks[i.id] = tr
        tr.name, tr.project = i.name, i.project
        return tr

    def _add(self, i: Instance, c: InstanceCounters) -> None:
        tr = self._track(i)
        prev = tr.last
        if prev is not None and c.time <= prev.time:   # the clock went back: start anew
            prev = None
        dt = c.time - prev.time if prev is not None else 0.0
        if c.disk_bytes is not None:
            tr.disk_bytes, tr.volumes = c.disk_bytes, dict(c.volumes)
        cpu_pct = rate(c.cpu_seconds, prev.cpu_seconds, dt) * 100 if prev else 0.0
        cpus = c.cpu_limit or i.limits.vcpus or 1.0
        row: list[float] = [c.time, c.cpu_seconds, cpu_pct, cpu_pct / cpus, c.memory_bytes,
                            c.swap_bytes, c.oom_kills, c.pids, _num(tr.disk_bytes)]
        for name in tr.nic_names:
            n = c.nics.get(name, NicCounters())
            p = prev.nics.get(name) if prev is not None else None
            row += [float(getattr(n, f)) for f in NIC_FIELDS]
            row += [rate(n.rx_bytes, p.rx_bytes, dt) * 8 if p else 0.0,
                    rate(n.tx_bytes, p.tx_bytes, dt) * 8 if p else 0.0]
        self._events(i, tr, prev, c)
        tr.last = c
        if prev is None:    # a first reading has no rates: it only starts the series
            return
        tr.series.push(row)
        root = next((d for d in i.disks if d.is_root), None)
        limits = {"memory_limit_bytes": c.memory_limit_bytes, "pids_limit": c.pids_limit,
                  "disk_limit_bytes": (root.size or None) if root else None}
        vols = [{"id": d.name, "used_bytes": tr.volumes.get(d.name), "size_bytes": d.size or None}
                for d in i.disks if not d.is_root]
        tr.current = tr.sample_of(row, limits, vols)

    def _events(self, i: Instance, tr: InstanceTrack, prev: InstanceCounters | None,
                c: InstanceCounters) -> None:
        """instance.oom when the OOM kills grew; instance.limit once per crossing of a limit."""
        if prev is None:
            return
        if c.oom_kills > prev.oom_kills:
            self._publish("instance.oom", i, f"{c.oom_kills - prev.oom_kills} process(es) "
                          f"killed for lack of memory",
                          {"oom_kills": c.oom_kills, "new": c.oom_kills - prev.oom_kills})
        root = next((d for d in i.disks if d.is_root), None)
        disk_limit = (root.size or None) if root else None
        crossing = {
            "memory": c.memory_max_hits > prev.memory_max_hits,
            "pids": c.pids_max_hits > prev.pids_max_hits,
            "cpu": c.cpu_throttled > prev.cpu_throttled,
            "disk": bool(disk_limit and tr.disk_bytes is not None
                         and tr.disk_bytes >= disk_limit),
        }
        detail: dict[str, dict[str, Any]] = {
            "memory": {"limit": c.memory_limit_bytes, "used": c.memory_bytes},
            "pids": {"limit": c.pids_limit, "used": c.pids},
            "cpu": {"limit": c.cpu_limit, "throttled": c.cpu_throttled},
            "disk": {"limit": disk_limit, "used": tr.disk_bytes}}
        for res, now in crossing.items():
            if now and res not in tr.hit:
                tr.hit.add(res)
                self._publish("instance.limit", i, f"{res} limit reached",
                              {"resource": res, **detail[res]})
            elif not now:
                tr.hit.discard(res)

    def _publish(self, kind: str, i: Instance, message: str, data: dict[str, Any]) -> None:
        if self.publish is None:
            return
        try:
            self.publish(kind, project_id=i.project_id, instance_id=i.id, message=message,
                         data=data)
        except Exception:
            log.exception("publishing %s failed", kind)

    # --- nodes
    def _add_node(self, n: NodeCounters) -> None:
        tr = self.nodes.get(self.node.name)
        if tr is None:
            tr = self.nodes[self.node.name] = NodeTrack(self.node.name,
                                                        Series(NODE_COLS, self.interval))
        prev = tr.last
        if prev is not None and n.time <= prev.time:
            prev = None
        dt = n.time - prev.time if prev is not None else 0.0
        busy = n.cpu_busy_ticks - prev.cpu_busy_ticks if prev else 0
        total = n.cpu_total_ticks - prev.cpu_total_ticks if prev else 0
        # 100 = one CPU busy, as for instances
        cpu = 100.0 * n.cpus * busy / total if total > 0 else 0.0
        row = [n.time, cpu, *n.load, n.memory_total_bytes, n.memory_free_bytes,
               n.memory_available_bytes]
        if prev is not None:
            tr.series.push(row)
        nics: dict[str, Any] = {}
        for name, c in n.nics.items():
            p = prev.nics.get(name) if prev else None
            nics[name] = {**{f: getattr(c, f) for f in NIC_FIELDS},
                          "rx_bps": rate(c.rx_bytes, p.rx_bytes, dt) * 8 if p else 0.0,
                          "tx_bps": rate(c.tx_bytes, p.tx_bytes, dt) * 8 if p else 0.0}
        tr.current = self._node_sample(row, n.cpus)
        tr.current["pools"] = {k: {"used_bytes": u.used, "capacity_bytes": u.capacity,
                                   "free_bytes": u.free} for k, u in n.pools.items()}
        try:
            tr.current["instances"] = dict(self.counts())
        except Exception:
            log.exception("instance counts")
            tr.current["instances"] = {}
        tr.current["nics"] = nics
        tr.last = n

    @staticmethod
    def _node_sample(row: Sequence[float], cpus: int) -> dict[str, Any]:
        d = {c: _val(c, v) for c, v in zip(NODE_COLS, row, strict=True)}
        return {"time": row[0], "cpus": cpus, "cpu_percent": d["cpu_percent"],
                "load": [row[2], row[3], row[4]],
                "memory_total_bytes": d["memory_total_bytes"],
                "memory_free_bytes": d["memory_free_bytes"],
                "memory_available_bytes": d["memory_available_bytes"]}

    # --- reads (no host call)
    def usage(self, instance_id: str) -> dict[str, Any] | None:
        """The instance's latest sample (None until it has run for two rounds, or stopped)."""
        tr = self.tracks.get(instance_id)
        return tr.current if tr is not None else None

    def instance_metrics(self, i: Instance, since: float | None = None) -> dict[str, Any]:
        """The metrics JSON of an instance the caller may see: its current sample and its
        history from `since` (default: the last hour)."""
        with self._lock:
            tr = self.tracks.get(i.id)
            t = since if since is not None else _hour_before(tr.series if tr else None)
            samples: list[dict[str, Any]] = []
            current = None
            if tr is not None:
                current = tr.current
                limits = {k: current[k] for k in ("memory_limit_bytes", "pids_limit",
                                                  "disk_limit_bytes")} if current else {
                    "memory_limit_bytes": None, "pids_limit": None, "disk_limit_bytes": None}
                samples = [tr.sample_of(r, limits, []) for r in tr.series.since(t)]
        return {"instance": i.id, "name": i.name, "node": i.node or self.node.name,
                "interval": self.interval, "current": current, "samples": samples}

    def node_metrics(self, name: str, since: float | None = None) -> dict[str, Any]:
        with self._lock:
            tr = self.nodes.get(name)
            t = since if since is not None else _hour_before(tr.series if tr else None)
            current = tr.current if tr else None
            cpus = current["cpus"] if current else 0
            samples = [self._node_sample(r, cpus) for r in tr.series.since(t)] if tr else []
        return {"node": name, "interval": self.interval, "current": current, "samples": samples}

    def snapshot(self) -> tuple[list[InstanceTrack], list[NodeTrack]]:
        """The tracks as they are (for /metrics)."""
        with self._lock:
            return list(self.tracks.values()), list(self.nodes.values())

    def bytes_per_instance(self) -> float:
        """The histories' memory per tracked instance (their arrays, full size from the start)."""
        with self._lock:
            if not self.tracks:
                return 0.0
            return sum(t.series.nbytes() for t in self.tracks.values()) / len(self.tracks)

