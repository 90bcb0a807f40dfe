"""Benchmark helpers: a throwaway all-in-one cloud, a REST client, memory accounting."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

LXCLOUD = str(Path(sys.executable).parent / "lxcloud")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def summary(name: str, ms: list[float]) -> str:
    return (f"{name:34} n={len(ms):4}  p50={pct(ms, 50):8.1f} ms  p95={pct(ms, 95):8.1f} ms  "
            f"mean={statistics.fmean(ms):8.1f} ms")


class BenchCloud:
    """`lxcloud up` in a temp data dir on a free port; purged on close."""

    def __init__(self, network: str | None = None, config: dict[str, Any] | None = None) -> None:
        """`config`: settings for the data dir's config.json (e.g. a larger quota)."""
        self.base = Path(tempfile.mkdtemp(prefix="lxcloud-bench-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.data_dir = self.base / "data"
        if config:
            self.data_dir.mkdir(mode=0o700)
            (self.data_dir / "config.json").write_text(json.dumps(config))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LXCLOUD_")}
        self.env["LXCLOUD_DATA_DIR"] = str(self.data_dir)
        argv = [LXCLOUD, "up", "--listen", f"127.0.0.1:{self.port}"]
        if network:
            argv += ["--network", network]
        self.proc = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        # `lxcloud up` listens before it prints its banner: once the banner is out, it answers
        log = open(self.base / "up.log", "wb")  # noqa: SIM115
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            log.write(line)
            if b"aws CLI profile" in line:
                break
        else:
            log.close()
            raise SystemExit(f"lxcloud up failed: {(self.base / 'up.log').read_text()[-2000:]}")
        log.flush()
        threading.Thread(target=self._copy, args=(log,), daemon=True).start()
        token = (self.data_dir / "admin.token").read_text().strip()
        self.http = httpx.Client(base_url=self.url, timeout=120,
                                 headers={"Authorization": f"Bearer {token}"},
                                 limits=httpx.Limits(max_connections=200))

    def _copy(self, log: Any) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            log.write(line)
            log.flush()

    def delete_all(self) -> None:
        """Every instance deleted (forced), waiting for each."""
        ops = [self.http.delete(f"/api/v1/instances/{i['id']}", params={"force": True}).json()
               for i in self.http.get("/api/v1/instances").json()]
        for op in ops:
            if "operation" in op:
                self.http.get(f"/api/v1/operations/{op['operation']['id']}", params={"wait": 120})

    def clean_up(self) -> None:
        """Every instance deleted, then the cloud purged; says how long it took."""
        t0 = time.perf_counter()
        try:
            self.delete_all()
        finally:
            self.close()
        print(f"(cleaned up in {time.perf_counter() - t0:.0f} s)")

    def cli(self, *args: str) -> str:
        return subprocess.run([LXCLOUD, *args], env=self.env, check=True, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL).stdout

    def launch(self, image: str, name: str, start: bool = True, **limits: Any) -> dict[str, Any]:
        r = self.http.post("/api/v1/instances", json={"image": image, "name": name, "start": start,
                                                      "limits": limits or None})
        r.raise_for_status()
        out = r.json()
        op = self.http.get(f"/api/v1/operations/{out['operation']['id']}",
                           params={"wait": 120}).json()
        if op["status"] != "success":
            raise SystemExit(f"launch {name} failed: {op}")
        return out["instance"]  # type: ignore[no-any-return]

    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run([LXCLOUD, "purge", "--yes"], env=self.env, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def kernel_kib() -> int:
    """Kernel memory that grows with containers: slab, stacks, page tables."""
    mi = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, v = line.split(":", 1)
        mi[k] = int(v.split()[0])
    return mi["Slab"] + mi["KernelStack"] + mi["PageTables"]


def descendants_of_lxcpath(lxcpath: Path) -> list[int]:
    """Every process of the containers under lxcpath: their monitors and all they contain."""
    pids: set[int] = set()
    roots: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(lxcpath) in cmd and ("lxc monitor" in cmd or "lxc-start" in cmd):
            roots.append(int(proc.name))
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(proc.name))
    stack = list(roots)
    while stack:
        p = stack.pop()
        if p in pids:
            continue
        pids.add(p)
        stack.extend(children.get(p, []))
    return sorted(pids)


DEBIAN_CACHE = Path("/var/cache/lxcloud-test")


def ensure_image(cloud: BenchCloud, kind: str) -> dict[str, Any]:
    """The busybox image (built, seconds) or the Debian one (the tests' cached build, else built)."""
    if kind == "busybox":
        cloud.cli("image", "build", "busybox")
        return cloud.http.get("/api/v1/images/busybox").json()  # type: ignore[no-any-return]
    cached = sorted(DEBIAN_CACHE.glob("debian-bookworm-amd64-base-*.tar*"),
                    key=lambda p: p.stat().st_mtime) if DEBIAN_CACHE.exists() else []
    if cached:
        cloud.cli("image", "import", str(cached[-1]), "--name", "debian")
    else:
        cloud.cli("image", "build", "debian", "--name", "debian")
    return cloud.http.get("/api/v1/images/debian").json()  # type: ignore[no-any-return]


class Profiler:
    """py-spy sampling a process (busy threads only) into collapsed stacks, one file per phase."""

    def __init__(self, pid: int, out_dir: Path) -> None:
        self.pid = pid
        self.dir = out_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.files: dict[str, Path] = {}

    def start(self, phase: str) -> None:
        path = self.dir / f"{phase}.collapsed"
        self.files[phase] = path
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(self.pid),
             "--rate", "500", "--format", "raw", "--output", str(path), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(2)    # py-spy writes its output on SIGINT
            self.proc.wait(30)
            self.proc = None

    def report(self, phase: str, top: int = 20) -> None:
        """Where the samples were: lxcloud's functions by inclusive share, and the functions the
        samples ended in (self share, lxcloud's or a library's)."""
        path = self.files.get(phase)
        if path is None or not path.exists():
            print(f"(no profile for {phase})")
            return
        inclusive: dict[str, int] = {}
        leaf: dict[str, int] = {}
        total = 0
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [_frame(f) for f in stack.split(";")]
            for fn in set(frames):
                if "lxcloud/" in fn:
                    inclusive[fn] = inclusive.get(fn, 0) + n
            leaf[frames[-1]] = leaf.get(frames[-1], 0) + n
        print(f"\nprofile of the controller ({phase}, py-spy, {total} samples of busy threads at "
              f"500 Hz; raw stacks in {path})")
        print("  lxcloud's functions, inclusive:")
        for fn, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {100 * n / max(total, 1):5.1f}%  {fn}")
        print("  where the samples ended (self):")
        for fn, n in sorted(leaf.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {100 * n / max(total, 1):5.1f}%  {fn}")


def _frame(frame: str) -> str:
    """'fn (path/file.py:123)' -> 'fn (path/file.py)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def cloud_pool(cloud: BenchCloud, name: str = "default") -> Any:
    """The cloud's pool `name` as its driver sees it (the same directory, the same filesystem):
    for a floor that makes its roots the way lxcloud does."""
    from lxcloud.drivers.storage.base import PoolSpec
    from lxcloud.drivers.storage.registry import get_storage_driver

    p = cloud.http.get(f"/api/v1/pools/{name}").json()
    pool = get_storage_driver(PoolSpec(name=p["name"], driver=p["driver"], path=Path(p["path"]),
                                       source=p["source"], size=p["size"]))
    pool.ensure()       # already there: found as it is
    return pool

