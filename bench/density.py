#!/usr/bin/env python3
"""Density: N idle busybox instances through the API against N containers of lxcloud's own
config started by hand (the same-work floor).
Host memory per instance = PSS of every process involved (container processes, their monitors,
the control plane) from /proc/*/smaps_rollup + growth of kernel memory (slab, stacks, page tables).

    .venv/bin/python bench/density.py --count 100
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _cloud import (  # noqa: E402
    BenchCloud,
    cloud_pool,
    descendants_of_lxcpath,
    kernel_kib,
    pss_kib,
)
from _floor import SameWorkFloor  # noqa: E402

from lxcloud.core.instance_types import get_type, resolve_limits  # noqa: E402


def settle() -> None:
    subprocess.run(["sync"])
    Path("/proc/sys/vm/drop_caches").write_text("3\n")
    time.sleep(2)  # a benchmark, not a test: let freshly started inits go idle


def plain(base_rootfs: Path, n: int, pool: Any, image_id: str) -> tuple[float, float]:
    """The same-work floor: lxcloud's own config for each, its root made by lxcloud's pool with
    the same disk limit, started by hand (bench/_floor.py)."""
    floor = SameWorkFloor(base_rootfs, halt_signal="SIGUSR1", first_exec=["true"], prefix=16,
                          limits=resolve_limits(get_type("t3.micro"), memory=64 << 20),
                          pool=pool, image_id=image_id)
    k0 = kernel_kib()
    t0 = time.perf_counter()
    try:
        for i in range(n):
            floor.launch(i, attach=False)
        elapsed = time.perf_counter() - t0
        settle()
        pss = pss_kib(descendants_of_lxcpath(floor.lxcpath))
        kern = kernel_kib() - k0
        return (pss + kern) / n / 1024, elapsed
    finally:
        floor.close()


def helper_pids(cloud: BenchCloud) -> list[int]:
    """lxcfs (shared by the containers) and the cloud's dnsmasq: their growth is ours too."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            exe = cmd[0].rsplit(b"/", 1)[-1] if cmd else b""
            if exe == b"lxcfs" or (exe == b"dnsmasq" and str(cloud.data_dir).encode() in b" ".join(cmd)):
                out.append(int(proc.name))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=8, help="concurrent API launches")
    args = ap.parse_args()
    n = args.count
    # the warm-up instance and N more fit the project's quota
    cloud = BenchCloud(config={"max_instances_per_project": n + 10})
    try:
        cloud.cli("image", "build", "busybox")
        img = cloud.http.get("/api/v1/images/busybox").json()
        cloud.launch("busybox", "warm", memory="64MiB")
        settle()
        helpers = helper_pids(cloud)
        control0 = pss_kib([cloud.pid()]) + pss_kib(helpers)
        k0 = kernel_kib()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda i: cloud.launch("busybox", f"d{i}", memory="64MiB"), range(n)))
        elapsed = time.perf_counter() - t0
        settle()
        lxcpath = cloud.data_dir / "containers"
        procs = descendants_of_lxcpath(lxcpath)
        growth = pss_kib([cloud.pid()]) + pss_kib(helper_pids(cloud)) - control0
        ours = pss_kib(procs) + growth + (kernel_kib() - k0)
        # the warm container is counted in the process PSS: take it out proportionally
        ours_per = ours / (n + 1) / 1024
        control_total = pss_kib([cloud.pid()]) / 1024
        base = cloud.data_dir / "pools" / "default" / "bases" / img["id"]
        # the floor runs alone: lxcloud's instances are gone first (the kernel memory they freed
        # is reused by the floor's, which can only make the floor look cheaper)
        cloud.delete_all()
        settle()
        plain_per, plain_elapsed = plain(base, n, cloud_pool(cloud), img["id"])
        print(f"\n== density, N={n} idle busybox instances")
        print(f"lxcloud: {ours_per:6.2f} MiB/instance (control plane total {control_total:.0f} MiB, "
              f"its growth counted); launched all in {elapsed:.1f} s ({n / elapsed:.1f}/s)")
        print(f"plain  : {plain_per:6.2f} MiB/instance; launched all in {plain_elapsed:.1f} s "
              f"({n / plain_elapsed:.1f}/s)")
        print(f"ratio  : {ours_per / plain_per:.2f} (goal <= 1.2)")
    finally:
        cloud.close()


if __name__ == "__main__":
    main()
