#!/usr/bin/env python3
"""Metrics: the cost of one collection round with N idle running busybox instances (CPU time of
the sampler's thread, split into the node's reads and the controller's work), per instance, the
`/metrics` scrape (p50/p95, size), and the histories' memory per instance. The floor reads the
same files of the same containers by hand (one open+read each, no rates, no history).

    .venv/bin/python bench/metrics.py --count 1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _cloud import BenchCloud, summary  # noqa: E402

from lxcloud.drivers.compute.lxc import cgroup_version  # noqa: E402

CG = Path("/sys/fs/cgroup")
V2_FILES = ("cpu.stat", "cpu.max", "memory.current", "memory.max", "memory.swap.current",
            "memory.events", "pids.current", "pids.max", "pids.events")
V1_FILES = (("memory", "memory.usage_in_bytes"), ("memory", "memory.memsw.usage_in_bytes"),
            ("memory", "memory.limit_in_bytes"), ("memory", "memory.oom_control"),
            ("memory", "memory.failcnt"), ("cpu", "cpu.cfs_quota_us"),
            ("cpu", "cpu.cfs_period_us"), ("cpu", "cpu.stat"), ("cpuacct", "cpuacct.usage"),
            ("pids", "pids.current"), ("pids", "pids.max"), ("pids", "pids.events"))
NIC_FILES = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_dropped", "tx_dropped")


def gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def floor_round(ids: list[str], ports: list[str]) -> float:
    """The same files read by hand, once each: CPU seconds."""
    v2 = cgroup_version() == 2
    paths = []
    for iid in ids:
        leaf = f"lxc.payload.{iid}"
        if v2:
            paths += [CG / leaf / f for f in V2_FILES]
        else:
            paths += [CG / c / leaf / f for c, f in V1_FILES]
    for p in ports:
        paths += [Path("/sys/class/net") / p / "statistics" / f for f in NIC_FILES]
    t0 = time.thread_time()
    for p in paths:
        try:
            with open(p, "rb", buffering=0) as f:
                f.read(65536)
        except OSError:
            pass
    return time.thread_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5, help="collection rounds measured")
    ap.add_argument("--scrapes", type=int, default=50)
    args = ap.parse_args()
    cloud = BenchCloud(network="10.199.0.0/20",
                       config={"max_instances_per_project": args.count + 10,
                               "metrics_interval": 5})
    try:
        cloud.cli("image", "build", "busybox")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            insts = list(pool.map(lambda i: cloud.launch("busybox", f"m{i}", memory=32 << 20),
                                  range(args.count)))
        print(f"launched {args.count} running instances in {time.perf_counter() - t0:.0f} s")
        m0 = gauge(cloud.http.get("/metrics").text, "lxcloud_metrics_rounds_total")
        cpu, collect, wall = [], [], []
        deadline = time.monotonic() + args.rounds * 5 * 4 + 60
        last = m0
        while len(cpu) < args.rounds and time.monotonic() < deadline:
            time.sleep(1)     # a benchmark polling its subject, not a test
            text = cloud.http.get("/metrics").text
            n = gauge(text, "lxcloud_metrics_rounds_total")
            if n > last and n > m0 + 1:      # a full round with every instance known
                cpu.append(gauge(text, "lxcloud_metrics_round_cpu_seconds"))
                collect.append(gauge(text, "lxcloud_metrics_collect_cpu_seconds"))
                wall.append(gauge(text, "lxcloud_metrics_round_seconds"))
            last = n
        hist = gauge(cloud.http.get("/metrics").text, "lxcloud_metrics_history_bytes_per_instance")
        n = args.count
        c, k, w = (statistics.median(x) for x in (cpu, collect, wall))
        print(f"collection round, {n} instances (median of {len(cpu)} rounds):")
        print(f"  CPU {c * 1000:8.1f} ms  = {c / n * 1e6:6.1f} µs per instance   (wall {w * 1000:.1f} ms)")
        print(f"    node's reads      {k * 1000:8.1f} ms  ({k / n * 1e6:.1f} µs per instance)")
        print(f"    controller's work {(c - k) * 1000:8.1f} ms  ({(c - k) / n * 1e6:.1f} µs per "
              "instance: listing instances, rates, rings, events)")
        ids = [i["id"] for i in insts]
        bridge = next(x["bridge"] for x in cloud.http.get("/api/v1/networks").json()
                      if x["name"] == "default")
        ports = os.listdir(f"/sys/class/net/{bridge}/brif")   # the instances' host ports
        floors = sorted(floor_round(ids, ports) for _ in range(5))
        f = floors[2]
        print(f"  floor: the same files read by hand {f * 1000:8.1f} ms CPU "
              f"({f / n * 1e6:.1f} µs per instance); the node's reads are "
              f"{k / f if f else 0:.1f}x the floor")
        ms, size = [], 0
        for _ in range(args.scrapes):
            t = time.perf_counter()
            r = cloud.http.get("/metrics")
            ms.append((time.perf_counter() - t) * 1000)
            size = len(r.content)
        print(summary(f"GET /metrics ({n} instances)", ms) + f"  {size / 1024:.0f} KiB")
        print(f"history memory per instance: {hist / 1024:.0f} KiB (allocated once, bounded)")
        ms = []
        for _ in range(20):
            t = time.perf_counter()
            cloud.http.get("/api/v1/instances").raise_for_status()
            ms.append((time.perf_counter() - t) * 1000)
        print(summary(f"GET /api/v1/instances with usage ({n})", ms))
    finally:
        cloud.clean_up()


if __name__ == "__main__":
    main()
