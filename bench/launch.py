#!/usr/bin/env python3
"""Launch latency, launch → first command runs, against two floors in the same run on the same
base rootfs, interleaved launch by launch so that the machine's drift hits all three alike:

  lxcloud      POST /api/v1/instances?wait (answered once the launch has ended), POST .../exec
  same-work    the config lxcloud renders, by hand: mkdir upper+work, write it, lxc-start -d,
               lxc-attach (bench/_floor.py SameWorkFloor) — the floor the ratio is taken against
  bare         a stock privileged container: lxc-copy -s, lxc-start -d, lxc-attach (for scale)

The first command is `true` for busybox and `systemctl is-system-running --wait` for Debian
(systemd has booted). Prints p50/p95 of each and where lxcloud's time goes, step by step (the
launch operation's own timings plus what the client saw); --profile samples the controller with
py-spy while lxcloud launches and prints where its CPU time went.

    .venv/bin/python bench/launch.py --count 50 [--image busybox|debian|both] [--profile DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _cloud import BenchCloud, Profiler, cloud_pool, ensure_image, pct, summary  # noqa: E402
from _floor import BareFloor, SameWorkFloor, Steps  # noqa: E402

from lxcloud.core.instance_types import Limits, get_type, resolve_limits  # noqa: E402

# Debian: systemd has booted. `is-system-running --wait` fails at once while systemd's bus is not
# up yet, so it is asked again (every 10 ms, inside the container: the same for all three) until it
# answers; "degraded" counts (a unit a container cannot run), as the tests take it.
BOOTED = ("until systemctl is-system-running --wait 2>/dev/null | grep -qE '^(running|degraded)$';"
          " do sleep 0.01; done")
FIRST_EXEC = {"busybox": ["true"], "debian": ["sh", "-c", BOOTED]}
MEMORY = {"busybox": "128MiB", "debian": "256MiB"}
# the lxcloud steps in the order they happen (the operation's timings, then the client's)
STEPS = ["api.checks", "database.launch", "operation.handoff", "network.dns", "storage.base",
         "storage.root", "compute.define", "network.rules", "compute.start",
         "client: HTTP and hand-backs", "client: first exec"]


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) the process has used so far, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def lxcloud_launch(cloud: BenchCloud, image: str, name: str, kind: str) -> Steps:
    steps = Steps()
    cpu0 = cpu_ms(cloud.pid())
    t0 = time.perf_counter()
    # ?wait: the answer comes once the launch has ended (the instance runs, with its address)
    r = cloud.http.post("/api/v1/instances", params={"wait": 120},
                        json={"image": image, "name": name, "limits": {"memory": MEMORY[kind]}})
    r.raise_for_status()
    out = r.json()
    t2 = time.perf_counter()
    op = out["operation"]
    if op["status"] != "success":
        raise SystemExit(f"launch {name} failed: {op}")
    e = cloud.http.post(f"/api/v1/instances/{out['instance']['id']}/exec",
                        json={"argv": FIRST_EXEC[kind], "timeout": 300})
    t3 = time.perf_counter()
    if e.json().get("exit_code") != 0:
        raise SystemExit(f"first exec in {name} failed: {e.text}")
    server = dict(op["result"].get("timings", {}))
    steps.ms.update(server)
    # what the client waited beyond the launch's own steps: HTTP both ways, the request's way to
    # the service, the final row (state and operation in one transaction), the wake-up
    steps.ms["client: HTTP and hand-backs"] = max(0.0, (t2 - t0) * 1000 - sum(server.values()))
    steps.ms["client: first exec"] = (t3 - t2) * 1000
    steps.ms["_total"] = (t3 - t0) * 1000
    steps.ms["_cpu"] = cpu_ms(cloud.pid()) - cpu0
    return steps


def table(kind: str, runs: dict[str, list[Steps]]) -> None:
    lx, same, bare = runs["lxcloud"], runs["same-work"], runs["bare"]
    total = {k: [s.ms.get("_total", s.total) for s in v] for k, v in runs.items()}
    print(f"\n-- {kind}: launch -> first command, N={len(lx)} each")
    for k in ("lxcloud", "same-work", "bare"):
        print(summary(k, total[k]))
    r50 = pct(total["lxcloud"], 50) / pct(total["same-work"], 50)
    r95 = pct(total["lxcloud"], 95) / pct(total["same-work"], 95)
    goal = 1.5 if kind == "busybox" else 1.2
    print(f"ratio lxcloud / same-work floor: p50 {r50:.2f}, p95 {r95:.2f} (goal p50 <= {goal})")
    print(f"ratio same-work / bare: p50 {pct(total['same-work'], 50) / pct(total['bare'], 50):.2f}")
    cpu = [s.ms["_cpu"] for s in lx]
    print(f"the controller's CPU time per launch (user+system, all its threads): "
          f"mean {sum(cpu) / len(cpu):.1f} ms")
    print("\nwhere lxcloud's time goes (p50 of each step, ms; steps not taken are left out):")
    for name in STEPS:
        vals = [s.ms[name] for s in lx if name in s.ms]
        if vals:
            print(f"  {name:32} {pct(vals, 50):8.2f}")
    print("the same-work floor's steps (p50, ms):")
    for name in same[0].ms:
        print(f"  {name:32} {pct([s.ms[name] for s in same], 50):8.2f}")
    print("the bare floor's steps (p50, ms):")
    for name in bare[0].ms:
        print(f"  {name:32} {pct([s.ms[name] for s in bare], 50):8.2f}")


def bench(cloud: BenchCloud, kind: str, n: int, profiler: Profiler | None) -> None:
    img = ensure_image(cloud, kind)
    # the first launch unpacks the base once; it is not part of the steady-state figures
    lxcloud_launch(cloud, img["name"], f"warm-{kind[:3]}", kind)
    base = cloud.data_dir / "pools" / "default" / "bases" / img["id"]
    halt = "SIGUSR1" if kind == "busybox" else "SIGRTMIN+3"
    t = get_type("t3.micro")
    lim: Limits = resolve_limits(t, memory=int(MEMORY[kind].removesuffix("MiB")) << 20)
    same = SameWorkFloor(base, halt_signal=halt, limits=lim, first_exec=FIRST_EXEC[kind],
                         pool=cloud_pool(cloud), image_id=img["id"])
    bare = BareFloor(base, halt_signal=halt, first_exec=FIRST_EXEC[kind])
    runs: dict[str, list[Steps]] = {"lxcloud": [], "same-work": [], "bare": []}
    tag = f"{random.randrange(16**4):04x}"
    if profiler:   # py-spy samples busy threads only: the floors' turns leave no samples
        profiler.start(kind)
    try:
        for i in range(n):
            order = ["lxcloud", "same-work", "bare"]
            random.shuffle(order)        # no one always runs first (or right after another)
            for who in order:
                if who == "lxcloud":
                    runs[who].append(lxcloud_launch(cloud, img["name"], f"b{tag}-{kind[:3]}-{i}",
                                                    kind))
                elif who == "same-work":
                    runs[who].append(same.launch(i))
                else:
                    runs[who].append(bare.launch(i))
    finally:
        if profiler:
            profiler.stop()
        same.close()
        bare.close()
        cloud.delete_all()
    print(f"\n== {kind} ({img['size'] / 2**20:.1f} MiB template)")
    table(kind, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--image", choices=("busybox", "debian", "both"), default="busybox")
    ap.add_argument("--profile", type=Path, default=None,
                    help="directory for py-spy's samples of the controller during lxcloud launches")
    args = ap.parse_args()
    kinds = ["busybox", "debian"] if args.image == "both" else [args.image]
    cloud = BenchCloud()
    profiler = Profiler(cloud.pid(), args.profile) if args.profile else None
    try:
        for kind in kinds:
            bench(cloud, kind, args.count, profiler)
            if profiler:
                profiler.report(kind)
    finally:
        cloud.close()


if __name__ == "__main__":
    main()
