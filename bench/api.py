#!/usr/bin/env python3
"""API latency: GET /api/v1/instances with N instances recorded (default 1,000), p50/p95.
Instances are created stopped (definition + copy-on-write root, no processes) to make N cheap.

    .venv/bin/python bench/api.py --count 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _cloud import BenchCloud, summary  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    cloud = BenchCloud()
    try:
        cloud.cli("image", "build", "busybox")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: cloud.launch("busybox", f"a{i}", start=False), range(args.count)))
        print(f"created {args.count} instances in {time.perf_counter() - t0:.1f} s")
        got = cloud.http.get("/api/v1/instances").json()
        assert len(got) == args.count, len(got)
        ms = []
        for _ in range(args.requests):
            t = time.perf_counter()
            r = cloud.http.get("/api/v1/instances")
            ms.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
        print(summary(f"GET /api/v1/instances ({args.count})", ms))
        ms1 = []
        for i in range(args.requests):
            t = time.perf_counter()
            cloud.http.get(f"/api/v1/instances/a{i % args.count}").raise_for_status()
            ms1.append((time.perf_counter() - t) * 1000)
        print(summary("GET /api/v1/instances/{name}", ms1))
    finally:
        cloud.close()


if __name__ == "__main__":
    main()
