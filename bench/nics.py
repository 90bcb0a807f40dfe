#!/usr/bin/env python3
"""NIC figures on a real all-in-one cloud (`lxcloud up`, driven through its REST API):

  hot-plug     a NIC attached to and detached from a running busybox instance: the time from the
               request to its operation's end (the definition rewritten, the veth made and moved
               in, the address set, the port guard and security groups told)
  launch       a busybox launch with and without bandwidth limits (a limited NIC's start runs its
               tc/ip hook scripts)
  limits       an HTTP download between two instances (busybox httpd and wget, sized to last
               about two seconds) under egress limits of the sender, against the limit and
               against no limit

Timings are medians of --rounds, with the spread beside them (this machine is shared).

    .venv/bin/python bench/nics.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._cloud import BenchCloud, ensure_image, summary  # noqa: E402


def wait(cloud: BenchCloud, res: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = cloud.http.get(f"/api/v1/operations/{res['operation']['id']}",
                                        params={"wait": 120}).json()
    if op["status"] != "success":
        raise SystemExit(f"{op['kind']} failed: {op['error']}")
    return op


def launch(cloud: BenchCloud, name: str, **body: Any) -> float:
    t = time.perf_counter()
    r = cloud.http.post("/api/v1/instances", json={"image": "busybox", "name": name,
                                                   "limits": {"memory": "64MiB"}, **body})
    r.raise_for_status()
    wait(cloud, r.json())
    return (time.perf_counter() - t) * 1000


def sh(cloud: BenchCloud, name: str, script: str, timeout: float = 120) -> str:
    r = cloud.http.post(f"/api/v1/instances/{name}/exec",
                        json={"argv": ["sh", "-c", script], "timeout": timeout})
    r.raise_for_status()
    out = r.json()
    if out["exit_code"] != 0:
        raise SystemExit(f"{script!r} in {name} failed: {out}")
    return str(out["stdout"])


def hotplug(cloud: BenchCloud, rounds: int) -> None:
    cloud.cli("network", "create", "side", "--subnet", "10.29.0.0/24")
    launch(cloud, "hp")
    attach, detach = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        r = cloud.http.post("/api/v1/instances/hp/nics", json={"network": "side"})
        r.raise_for_status()
        wait(cloud, r.json())
        attach.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        r = cloud.http.delete("/api/v1/instances/hp/nics/eth1")
        r.raise_for_status()
        wait(cloud, r.json())
        detach.append((time.perf_counter() - t) * 1000)
    print(summary("hot attach (running, with address)", attach))
    print(summary("hot detach", detach))


def launches(cloud: BenchCloud, rounds: int) -> None:
    plain, limited = [], []
    for i in range(rounds):      # interleaved: the machine's drift hits both alike
        plain.append(launch(cloud, f"plain{i}"))
        limited.append(launch(cloud, f"lim{i}", ingress="100Mbit", egress="100Mbit"))
    print(summary("launch, no limits", plain))
    print(summary("launch, ingress+egress limits", limited))


def limits(cloud: BenchCloud) -> None:
    launch(cloud, "srv")
    launch(cloud, "cli")
    ip = cloud.http.get("/api/v1/instances/srv").json()["ipv4"]
    sh(cloud, "srv", "mkdir -p /srv && (httpd -f -p 80 -h /srv </dev/null >/dev/null 2>&1 &)")

    def rate(kib: int) -> float:
        sh(cloud, "srv", f"dd if=/dev/zero of=/srv/f bs=1k count={kib} 2>/dev/null")
        t = time.perf_counter()
        sh(cloud, "cli", f"wget -q -O /dev/null http://{ip}/f")
        return kib * 1024 * 8 / (time.perf_counter() - t)

    free = statistics.median(rate(200 * 1024) for _ in range(3))
    print(f"{'no limit':34} {free / 1e6:8.0f} Mbit/s")
    for limit in (1_000_000, 10_000_000, 100_000_000):
        r = cloud.http.patch("/api/v1/instances/srv/nics/eth0", json={"egress": limit})
        r.raise_for_status()
        wait(cloud, r.json())
        got = rate(max(64, limit * 2 // 8 // 1024))
        print(f"{'egress limit ' + str(limit // 10**6) + 'Mbit':34} {got / 1e6:8.2f} Mbit/s  "
              f"({got / limit:.2f} of the limit, {free / got:.0f}x below no limit)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    cloud = BenchCloud()
    try:
        ensure_image(cloud, "busybox")
        hotplug(cloud, args.rounds)
        launches(cloud, max(3, args.rounds // 2))
        cloud.delete_all()
        limits(cloud)
    finally:
        cloud.delete_all()
        cloud.close()


if __name__ == "__main__":
    main()
