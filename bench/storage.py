"""Storage figures on a throwaway all-in-one cloud (`lxcloud up`, driven through its REST API):

  launch   launch time and disk used per instance, N instances per pool and image: both must stay
           flat as the image grows (busybox ~2 MB against the same with 256 MiB more; Debian)
  snapshot snapshot and restore of a running instance with 1 GiB written, against the same work
           done by hand on the same instance (the floor) and LXD 5.0.2 on btrfs measured on this
           machine (0.15-0.22 s / 0.24-0.30 s)
  attach   volume hot-attach and detach latency on a running instance
  write    write throughput inside a quota'd root against the same filesystem without one

    python bench/storage.py [--count 50] [--pools dir,btrfs,shared] [--only launch,snapshot,...]

Pools: "dir" is the cloud's default pool (a loop-backed XFS file, a limit per disk); "btrfs" is
made loop-backed; "shared" needs a directory every host mounts: --shared-source DIR, or a
single-node CephFS started for the run (tests/integration/cephfs.py) when Ceph is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import btrfsutil  # noqa: E402

from bench._cloud import BenchCloud, ensure_image, pct, summary  # noqa: E402

MiB = 1 << 20
LXD_BTRFS = {"snapshot": (0.15, 0.22), "restore": (0.24, 0.30)}


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def sh(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL).stdout


class Rest:
    """The few REST calls the benchmark makes, each waiting for its operation."""

    def __init__(self, cloud: BenchCloud) -> None:
        self.c = cloud
        self.http = cloud.http

    def done(self, r: Any, what: str) -> dict[str, Any]:
        if r.status_code >= 400:
            raise SystemExit(f"{what}: {r.status_code} {r.text}")
        body: dict[str, Any] = r.json()
        op = body.get("operation") or body
        if op.get("status") not in ("success", None):
            if op.get("status") in ("pending", "running"):
                op = self.http.get(f"/api/v1/operations/{op['id']}", params={"wait": 600}).json()
            if op.get("status") != "success":
                raise SystemExit(f"{what} failed: {op}")
        return body

    def launch(self, image: str, name: str, pool: str | None, disk: str) -> dict[str, Any]:
        body = {"image": image, "name": name, "pool": pool,
                "limits": {"memory": "128MiB", "disk": disk}}
        return self.done(self.http.post("/api/v1/instances", params={"wait": 600}, json=body),
                         f"launch {name}")["instance"]  # type: ignore[no-any-return]

    def delete(self, ref: str) -> None:
        self.done(self.http.delete(f"/api/v1/instances/{ref}", params={"force": True,
                                                                      "wait": 300}),
                  f"delete {ref}")

    def exec(self, ref: str, script: str, timeout: float = 600) -> str:
        r = self.http.post(f"/api/v1/instances/{ref}/exec",
                           json={"argv": ["sh", "-c", script], "timeout": timeout},
                           timeout=timeout + 30)
        out = r.json()
        if r.status_code >= 400 or out.get("exit_code") != 0:
            raise SystemExit(f"exec in {ref} ({script!r}) failed: {r.text[:2000]}")
        return str(out.get("stdout", ""))

    def pool(self, name: str) -> dict[str, Any]:
        return self.http.get(f"/api/v1/pools/{name}").json()  # type: ignore[no-any-return]


# --- pools
@contextlib.contextmanager
def shared_source(given: str | None, wanted: bool) -> Iterator[str | None]:
    """The directory a shared pool lives in: the given one, or a directory of a single-node
    CephFS started for the run (tests/integration/cephfs.py), mounted with ceph-fuse."""
    if given or not wanted or shutil.which("ceph-mon") is None:
        yield given
        return
    from tests.integration.cephfs import CephCluster

    base = Path(tempfile.mkdtemp(prefix="lxcloud-bench-ceph-", dir="/var/tmp"))
    base.chmod(0o711)
    try:
        with CephCluster.start(base / "cluster") as ceph:
            mnt = ceph.mount(base / "mnt")
            (mnt / "bench").mkdir()
            yield str(mnt / "bench")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def make_pool(rest: Rest, kind: str, source: str | None) -> str | None:
    if kind == "dir":
        return "default"
    body: dict[str, Any] = {"name": f"bench-{kind}", "driver": kind}
    if kind == "btrfs":
        body["size"] = "40GiB"
    elif source:
        body["source"] = source
    else:
        print(f"  ({kind}: no shared filesystem here — give --shared-source DIR)")
        return None
    r = rest.http.post("/api/v1/pools", json=body)
    if r.status_code >= 400:
        print(f"  ({kind}: the pool cannot be made here: {r.status_code} {r.text[:300]})")
        return None
    return str(body["name"])


# --- the figures
FAT_MIB = 256


def make_fat_image(rest: Rest) -> str:
    """busybox with FAT_MIB of incompressible data added: the same image, grown, published
    from an instance (`image create-from`)."""
    name = "busybox-fat"
    if rest.http.get(f"/api/v1/images/{name}").status_code == 200:
        return name
    iid = rest.launch("busybox", "fat-src", None, f"{FAT_MIB * 2}MiB")["id"]
    try:
        rest.exec(iid, f"dd if=/dev/urandom of=/blob bs=1M count={FAT_MIB} 2>/dev/null")
        rest.done(rest.http.post(f"/api/v1/instances/{iid}/actions/stop",
                                 params={"wait": 300}, json={"force": True}), "stop")
        rest.done(rest.http.post("/api/v1/images/from-instance", params={"wait": 900},
                                 json={"instance": iid, "name": name}), "image create-from")
    finally:
        rest.delete(iid)
    return name


def settled_used(rest: Rest, pool: str, deadline: float = 60) -> int:
    """The pool's used bytes once it stops moving (deletions free blocks in the background)."""
    last = rest.pool(pool)["used"]
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        time.sleep(1)
        now = rest.pool(pool)["used"]
        if now == last:
            return int(now)
        last = now
    return int(last)


def bench_launch(rest: Rest, pool: str, images: list[str], n: int) -> None:
    for image in images:
        size = rest.http.get(f"/api/v1/images/{image}").json().get("size") or 0
        # the first launch makes the image's base in the pool: not part of the figures
        first = rest.launch(image, f"warm-{pool}-{image}", pool, "1GiB")
        rest.exec(first["id"], "sync")
        used0 = settled_used(rest, pool)
        times: list[float] = []
        ids = []
        for i in range(n):
            t0 = time.perf_counter()
            ids.append(rest.launch(image, f"b{i}-{pool}-{image}", pool, "1GiB")["id"])
            times.append(ms(t0))
        rest.exec(ids[-1], "sync")
        per = (settled_used(rest, pool) - used0) / n
        half = n // 2 or 1
        print(summary(f"{pool:7} {image:8} launch", times))
        print(f"{'':16} first half p50 {pct(times[:half], 50):7.1f} ms, second half "
              f"{pct(times[half:] or times, 50):7.1f} ms;  disk per instance "
              f"{per / MiB:7.2f} MiB  (image {size / MiB:.0f} MiB)")
        for ref in [first["id"], *ids]:
            rest.delete(ref)


class DirFloor:
    """The dir pool's snapshot and restore by hand, the same work: the container's cgroup
    frozen, the root's ext4 frozen, its file cloned (reflink), both thawed; restore: the
    container stopped, the root unmounted, the snapshot's file cloned into place, mounted,
    started."""

    def __init__(self, cloud: BenchCloud, pool: dict[str, Any], inst: str) -> None:
        self.lxcpath = str(cloud.data_dir / "containers")
        self.area = Path(pool["path"]) / "instances" / inst
        self.inst = inst
        self.snap = Path(pool["path"]) / "floor-snap.img"

    def lxc(self, tool: str, *args: str) -> None:
        sh([tool, "-P", self.lxcpath, "-n", self.inst, *args])

    def snapshot(self) -> float:
        self.snap.unlink(missing_ok=True)
        t0 = time.perf_counter()
        self.lxc("lxc-freeze")
        sh(["fsfreeze", "-f", str(self.area)])
        sh(["cp", "--reflink=always", str(self.area) + ".img", str(self.snap)])
        sh(["fsfreeze", "-u", str(self.area)])
        self.lxc("lxc-unfreeze")
        return ms(t0)

    def restore(self) -> float:
        img = Path(str(self.area) + ".img")
        t0 = time.perf_counter()
        self.lxc("lxc-stop", "-k")
        sh(["umount", str(self.area)])
        sh(["cp", "--reflink=always", str(self.snap), str(img) + ".tmp"])
        Path(str(img) + ".tmp").rename(img)
        sh(["mount", "-o", "loop,noinit_itable,discard", str(img), str(self.area)])
        self.lxc("lxc-start", "-d")
        self.lxc("lxc-wait", "-s", "RUNNING", "-t", "30")
        return ms(t0)

    def close(self) -> None:
        self.snap.unlink(missing_ok=True)


class BtrfsFloor(DirFloor):
    """The btrfs pool's by hand, with the same library calls (python3-btrfsutil): the
    container frozen, a read-only snapshot of its root subvolume, thawed; restore: stopped, a
    writable snapshot of the snapshot swapped in for the root (the old one deleted), started.
    (lxcloud also puts the new subvolume in the disk's qgroup: the floor skips that, so it is,
    if anything, faster than the same work.)"""

    def __init__(self, cloud: BenchCloud, pool: dict[str, Any], inst: str) -> None:
        super().__init__(cloud, pool, inst)
        self.tmp = Path(pool["path"]) / "tmp"
        self.snap = Path(pool["path"]) / "tmp" / "floor-snap"

    def snapshot(self) -> float:
        self.close()
        t0 = time.perf_counter()
        self.lxc("lxc-freeze")
        btrfsutil.create_snapshot(str(self.area), str(self.snap), read_only=True)
        self.lxc("lxc-unfreeze")
        return ms(t0)

    def restore(self) -> float:
        new, old = self.tmp / "floor-new", self.tmp / "floor-old"
        t0 = time.perf_counter()
        self.lxc("lxc-stop", "-k")
        btrfsutil.create_snapshot(str(self.snap), str(new))
        self.area.rename(old)
        new.rename(self.area)
        btrfsutil.delete_subvolume(str(old))
        self.lxc("lxc-start", "-d")
        self.lxc("lxc-wait", "-s", "RUNNING", "-t", "30")
        return ms(t0)

    def close(self) -> None:
        if self.snap.exists():
            btrfsutil.delete_subvolume(str(self.snap))


FLOORS: dict[str, Callable[[BenchCloud, dict[str, Any], str], Any]] = {
    "dir": DirFloor, "btrfs": BtrfsFloor}


def bench_snapshot(cloud: BenchCloud, rest: Rest, pool: str, rounds: int) -> None:
    # a shared pool's restore copies the root's whole file back (ceph-fuse cannot skip holes),
    # and the test Ceph is small: a 2 GiB disk there
    disk = "2GiB" if rest.pool(pool)["driver"] == "shared" else "4GiB"
    inst = rest.launch("busybox", f"snap-{pool}", pool, disk)
    iid = inst["id"]
    try:
        rest.exec(iid, "dd if=/dev/zero of=/gib bs=1M count=1024 conv=fsync 2>/dev/null")
        snap_ms, restore_ms = [], []
        for i in range(rounds):
            t0 = time.perf_counter()
            body = rest.done(rest.http.post(f"/api/v1/instances/{iid}/snapshots",
                                            params={"wait": 600}, json={"name": f"s{i}"}),
                             "snapshot")
            snap_ms.append(ms(t0))
            sid = body["snapshot"]["id"]
            t0 = time.perf_counter()
            rest.done(rest.http.post(f"/api/v1/snapshots/{sid}/restore", params={"wait": 600}),
                      "restore")
            restore_ms.append(ms(t0))
        print(summary(f"{pool:7} snapshot (1 GiB written)", snap_ms))
        print(summary(f"{pool:7} restore", restore_ms))
        lo, hi = LXD_BTRFS["snapshot"]
        rlo, rhi = LXD_BTRFS["restore"]
        print(f"{'':8} LXD 5.0.2 on btrfs here: snapshot {lo * 1000:.0f}-{hi * 1000:.0f} ms, "
              f"restore {rlo * 1000:.0f}-{rhi * 1000:.0f} ms")
        driver = rest.pool(pool)["driver"]
        floor_cls = FLOORS.get(driver)
        if floor_cls is None:
            print(f"{'':8} (no by-hand floor for the {driver} pool yet)")
            return
        floor = floor_cls(cloud, rest.pool(pool), iid)
        try:
            fs = [floor.snapshot() for _ in range(rounds)]
            fr = [floor.restore() for _ in range(rounds)]
        finally:
            floor.close()
        print(summary(f"{pool:7} floor: snapshot by hand", fs))
        print(summary(f"{pool:7} floor: restore by hand", fr))
        print(f"{'':8} ratio lxcloud / floor p50: snapshot {pct(snap_ms, 50) / pct(fs, 50):.2f}, "
              f"restore {pct(restore_ms, 50) / pct(fr, 50):.2f}")
    finally:
        rest.delete(iid)


def bench_attach(rest: Rest, pool: str, rounds: int) -> None:
    iid = rest.launch("busybox", f"att-{pool}", pool, "1GiB")["id"]
    vols = []
    try:
        for i in range(rounds):
            body = rest.done(rest.http.post("/api/v1/volumes", params={"wait": 300},
                                            json={"name": f"bv{i}-{pool}", "size": "1GiB",
                                                  "pool": pool}), "volume create")
            vols.append(body["volume"]["id"])
        att, det = [], []
        for vid in vols:
            t0 = time.perf_counter()
            rest.done(rest.http.post(f"/api/v1/volumes/{vid}/attach", params={"wait": 300},
                                            json={"instance": iid}), "attach")
            att.append(ms(t0))
            rest.exec(iid, f"test -d /media/{vid} && touch /media/{vid}/x")
        for vid in vols:
            t0 = time.perf_counter()
            rest.done(rest.http.post(f"/api/v1/volumes/{vid}/detach", params={"wait": 300},
                                     json={}), "detach")
            det.append(ms(t0))
        print(summary(f"{pool:7} volume hot attach", att))
        print(summary(f"{pool:7} volume detach", det))
    finally:
        rest.delete(iid)
        for vid in vols:
            rest.done(rest.http.delete(f"/api/v1/volumes/{vid}", params={"wait": 300}),
                      "volume delete")


def bench_write(rest: Rest, pool: str, mib: int) -> None:
    iid = rest.launch("busybox", f"wr-{pool}", pool, f"{mib * 2}MiB")["id"]
    try:
        p = rest.pool(pool)
        scratch = Path(p["path"]) / f"bench-write-{iid}"
        inside: list[float] = []
        outside: list[float] = []
        dd = f"dd if=/dev/zero bs=1M count={mib} conv=fsync"

        def run_inside() -> None:
            t0 = time.perf_counter()
            rest.exec(iid, f"{dd} of=/w 2>/dev/null; rm /w")
            inside.append(mib / (time.perf_counter() - t0))

        # the same busybox dd on the pool's own filesystem, no disk limit in the way, in a
        # memory cgroup of the instance's size (dirty-page writeback starts as early as inside)
        memcg = Path("/sys/fs/cgroup/memory") / f"lxcloud-bench-{iid}"
        memcg.mkdir()
        (memcg / "memory.limit_in_bytes").write_text(str(128 * MiB))

        def run_outside() -> None:
            t0 = time.perf_counter()
            sh(["busybox", "sh", "-c", f"echo $$ > {memcg}/cgroup.procs; {dd} of={scratch} "
                f"2>/dev/null; rm {scratch}"])
            outside.append(mib / (time.perf_counter() - t0))

        for i in range(6):          # interleaved, each side first in turn
            for f in ((run_inside, run_outside) if i % 2 else (run_outside, run_inside)):
                f()
        memcg.rmdir()
        a, b = statistics.median(inside), statistics.median(outside)
        print(f"{pool:7} write {mib} MiB + fsync: inside a quota'd root {a:7.0f} MiB/s, the "
              f"pool's filesystem without a quota {b:7.0f} MiB/s  (ratio {a / b:.2f})")
    finally:
        rest.delete(iid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=50, help="instances per pool and image")
    ap.add_argument("--pools", default="dir,btrfs,shared")
    ap.add_argument("--images", default="busybox,busybox-fat,debian",
                    help=f"busybox-fat: busybox with {FAT_MIB} MiB more, made for the run")
    ap.add_argument("--only", default="launch,snapshot,attach,write")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--write-mib", type=int, default=512)
    ap.add_argument("--shared-source", default=None)
    args = ap.parse_args()
    only = set(args.only.split(","))
    cloud = BenchCloud()
    try:
        rest = Rest(cloud)
        images = args.images.split(",")
        for image in dict.fromkeys(["busybox" if i == "busybox-fat" else i for i in images]):
            ensure_image(cloud, image)
        if "busybox-fat" in images:
            make_fat_image(rest)
        with shared_source(args.shared_source, "shared" in args.pools.split(",")) as src:
            for kind in args.pools.split(","):
                print(f"\n== pool {kind}")
                pool = make_pool(rest, kind, src)
                if pool is None:
                    continue
                p = rest.pool(pool)
                print(f"  quota {p['quota']} {p['quota_note'] or ''}  capacity "
                      f"{(p['capacity'] or 0) / (1 << 30):.1f} GiB")
                try:
                    if "launch" in only:
                        bench_launch(rest, pool, images, args.count)
                    if "snapshot" in only:
                        bench_snapshot(cloud, rest, pool, args.rounds)
                    if "attach" in only:
                        bench_attach(rest, pool, args.rounds)
                    if "write" in only:
                        bench_write(rest, pool, args.write_mib)
                finally:
                    cloud.delete_all()
                    if pool != "default":
                        rest.http.delete(f"/api/v1/pools/{pool}")
    finally:
        cloud.close()


if __name__ == "__main__":
    main()
