"""Benchmark helpers: a throwaway all-in-one cloud, a REST client, memory accounting."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
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

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="lxcloud-bench-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.data_dir = self.base / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LXCLOUD_")}
        self.env["LXCLOUD_DATA_DIR"] = str(self.data_dir)
        self.log = open(self.base / "up.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([LXCLOUD, "up", "--listen", f"127.0.0.1:{self.port}"],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"lxcloud up failed: {(self.base / 'up.log').read_text()[-2000:]}")
            time.sleep(0.1)
        token = (self.data_dir / "admin.token").read_text().strip()
        self.http = httpx.Client(base_url=self.url, timeout=120,
                                 headers={"Authorization": f"Bearer {token}"},
                                 limits=httpx.Limits(max_connections=200))

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


class PlainLxc:
    """The plain-LXC floor: a base container over `rootfs` (already shifted to the same id range),
    on a bridge of its own, cloned with `lxc-copy -s` (overlay snapshot) and started with a static
    address."""

    def __init__(self, rootfs: Path, halt: str = "SIGUSR1", prefix: int = 24) -> None:
        import random

        self.tmp = Path(tempfile.mkdtemp(prefix="lxc-floor-", dir="/tmp"))
        self.tmp.chmod(0o755)   # the containers' mapped root must traverse it
        self.bridge = f"lxfl{random.randrange(16**6):06x}"
        # a /16 floor (density) lives in 10.248/16, away from the tests' 10.250.x.0/24 subnets
        self.net = "10.248.199" if prefix == 16 else f"10.250.{random.randrange(200, 250)}"
        self.prefix = prefix
        self.names: list[str] = []
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{self.net}.1/{prefix}", "dev", self.bridge], check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)
        self.lxcpath = self.tmp / "lxc"
        (self.lxcpath / "base").mkdir(parents=True)
        (self.lxcpath / "base" / "config").write_text(f"""
lxc.include = /usr/share/lxc/config/common.conf
lxc.include = /usr/share/lxc/config/userns.conf
lxc.idmap = u 0 1000000 65536
lxc.idmap = g 0 1000000 65536
lxc.rootfs.path = dir:{rootfs}
lxc.uts.name = base
lxc.signal.halt = {halt}
lxc.net.0.type = veth
lxc.net.0.link = {self.bridge}
lxc.net.0.flags = up
lxc.net.0.ipv4.gateway = {self.net}.1
""")

    def address(self, i: int) -> str:
        if self.prefix == 24:
            return f"{self.net}.{i + 2}/24"
        return f"{self.net.rsplit('.', 1)[0]}.{200 + i // 250}.{i % 250 + 2}/{self.prefix}"

    def launch(self, i: int, attach: bool = True) -> None:
        name = f"c{i}"
        self.names.append(name)
        P = str(self.lxcpath)
        subprocess.run(["lxc-copy", "-P", P, "-n", "base", "-N", name, "-s", "-B", "overlay"],
                       check=True, capture_output=True)
        subprocess.run(["lxc-start", "-P", P, "-n", name, "-d", "-s",
                        f"lxc.net.0.ipv4.address={self.address(i)}"], check=True, capture_output=True)
        if attach:
            subprocess.run(["lxc-attach", "-P", P, "-n", name, "--", "true"], check=True,
                           capture_output=True)

    def close(self) -> None:
        for name in self.names:
            subprocess.run(["lxc-stop", "-k", "-P", str(self.lxcpath), "-n", name], capture_output=True)
            subprocess.run(["lxc-destroy", "-P", str(self.lxcpath), "-n", name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
