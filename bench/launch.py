#!/usr/bin/env python3
"""Launch latency: lxcloud's API (launch -> running with an address [-> first exec]) against the
plain-LXC floor (lxc-copy -s overlay snapshot + lxc-start with a static address on a bridge +
lxc-attach -- true), for the same template. Prints p50/p95 and the ratio.

    .venv/bin/python bench/launch.py --count 50 [--image busybox|debian|both]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _cloud import BenchCloud, PlainLxc, pct, summary  # noqa: E402

DEBIAN_CACHE = Path("/var/cache/lxcloud-test")


def ensure_image(cloud: BenchCloud, kind: str) -> dict:
    if kind == "busybox":
        cloud.cli("image", "build", "busybox")
        return cloud.http.get("/api/v1/images/busybox").json()
    cached = sorted(DEBIAN_CACHE.glob("debian-bookworm-amd64-base-*.tar*"),
                    key=lambda p: p.stat().st_mtime) if DEBIAN_CACHE.exists() else []
    if cached:
        cloud.cli("image", "import", str(cached[-1]), "--name", "debian")
    else:
        cloud.cli("image", "build", "debian", "--name", "debian")
    return cloud.http.get("/api/v1/images/debian").json()


def bench_api(cloud: BenchCloud, image: str, n: int) -> tuple[list[float], list[float]]:
    to_running, to_exec = [], []
    tag = random.randrange(16**4)
    for i in range(n):
        t0 = time.perf_counter()
        inst = cloud.launch(image, f"b{tag:04x}-{image[:3]}-{i}", memory="128MiB")
        t1 = time.perf_counter()
        r = cloud.http.post(f"/api/v1/instances/{inst['id']}/exec", json={"argv": ["true"]})
        t2 = time.perf_counter()
        assert r.json()["exit_code"] == 0, r.text
        to_running.append((t1 - t0) * 1000)
        to_exec.append((t2 - t0) * 1000)
    for inst in cloud.http.get("/api/v1/instances").json():
        op = cloud.http.delete(f"/api/v1/instances/{inst['id']}", params={"force": True}).json()
        cloud.http.get(f"/api/v1/operations/{op['operation']['id']}", params={"wait": 60})
    return to_running, to_exec


def bench_plain(base_rootfs: Path, halt: str, n: int) -> list[float]:
    floor = PlainLxc(base_rootfs, halt)
    times = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            floor.launch(i)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        floor.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--image", choices=("busybox", "debian", "both"), default="busybox")
    args = ap.parse_args()
    kinds = ["busybox", "debian"] if args.image == "both" else [args.image]
    cloud = BenchCloud()
    try:
        for kind in kinds:
            img = ensure_image(cloud, kind)
            # the first launch unpacks the base once; it is not part of the steady-state figure
            cloud.launch(img["name"], f"warm-{kind[:3]}", memory="128MiB")
            run, ex = bench_api(cloud, img["name"], args.count)
            base = cloud.data_dir / "pools" / "default" / "bases" / img["id"]
            plain = bench_plain(base, "SIGUSR1" if kind == "busybox" else "SIGRTMIN+3", args.count)
            print(f"\n== {kind} ({img['size'] / 2**20:.1f} MiB template), N={args.count}")
            print(summary("lxcloud API launch -> running+IP", run))
            print(summary("lxcloud API launch -> first exec", ex))
            print(summary("plain LXC copy+start+attach", plain))
            print(f"ratio (p50, API to first exec / plain): {pct(ex, 50) / pct(plain, 50):.2f}")
            print(f"ratio (p95, API to first exec / plain): {pct(ex, 95) / pct(plain, 95):.2f}")
    finally:
        cloud.close()


if __name__ == "__main__":
    main()
