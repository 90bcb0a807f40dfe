#!/usr/bin/env python3
"""Many launches: N busybox launches one after another, then N at once, through the REST API
(launch → the operation done: running with its address). Prints the total, p50/p95 per launch,
and checks that no two instances got one address.

    .venv/bin/python bench/burst.py --count 100
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _cloud import BenchCloud, ensure_image, summary  # noqa: E402


def launch(cloud: BenchCloud, name: str) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    r = cloud.http.post("/api/v1/instances", json={"image": "busybox", "name": name,
                                                  "limits": {"memory": "64MiB"}})
    r.raise_for_status()
    out = r.json()
    op = cloud.http.get(f"/api/v1/operations/{out['operation']['id']}",
                        params={"wait": 600}).json()
    ms = (time.perf_counter() - t0) * 1000
    if op["status"] != "success":
        raise SystemExit(f"launch {name} failed: {op}")
    return ms, out["instance"]


def check_addresses(cloud: BenchCloud, n: int) -> str:
    insts = cloud.http.get("/api/v1/instances").json()
    ips = [i["ipv4"] for i in insts]
    running = sum(i["state"] == "running" for i in insts)
    dup = len(ips) - len(set(ips))
    if dup or running != n:
        raise SystemExit(f"{dup} duplicate address(es), {running}/{n} running")
    return f"{running} running, {len(set(ips))} distinct addresses, no duplicates"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100)
    args = ap.parse_args()
    n = args.count
    cloud = BenchCloud()
    tag = f"{random.randrange(16**4):04x}"
    try:
        ensure_image(cloud, "busybox")
        launch(cloud, f"warm{tag}")     # the base is unpacked once, before anything is timed
        cloud.delete_all()

        t0 = time.perf_counter()
        seq = [launch(cloud, f"s{tag}-{i}")[0] for i in range(n)]
        seq_total = time.perf_counter() - t0
        seq_check = check_addresses(cloud, n)
        cloud.delete_all()

        t0 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            at_once = [ms for ms, _ in pool.map(lambda i: launch(cloud, f"c{tag}-{i}"), range(n))]
        burst_total = time.perf_counter() - t0
        burst_check = check_addresses(cloud, n)
        cloud.delete_all()

        print(f"\n== {n} busybox launches (POST /api/v1/instances -> operation done)")
        print(f"one after another: total {seq_total:.2f} s ({n / seq_total:.1f}/s); {seq_check}")
        print(summary("  per launch", seq))
        print(f"all at once:       total {burst_total:.2f} s ({n / burst_total:.1f}/s); "
              f"{burst_check}")
        print(summary("  per launch", at_once))
    finally:
        cloud.close()


if __name__ == "__main__":
    main()
