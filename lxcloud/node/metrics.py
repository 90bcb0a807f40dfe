"""The node's metrics collector: per instance and per host counters read from cgroups, /proc
and /sys, as typed samples.

Cheap by construction: each figure is one small file opened and read directly (no subprocess,
no liblxc call); the cgroup directories come from the compute driver (`cgroup_dirs`), the
host-side interfaces from its `port_name`. Counters are raw (cumulative): the controller turns
consecutive samples into rates (services/metrics.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lxcloud.core.instance import Kind
from lxcloud.drivers.compute.base import CgroupDirs
from lxcloud.drivers.storage.base import PoolUsage

# v1 reports "no limit" as the largest page-aligned value of a signed 64-bit counter
_V1_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class MetricsTarget:
    """What the controller asks to be measured of one instance: its NICs (name inside -> index
    of the host port), the pool of its root disk and its volumes as (pool, volume id); `disk`:
    measure the disks this round (a walk on pools without quotas, so not every round)."""

    instance_id: str
    kind: Kind = Kind.CONTAINER
    nics: Mapping[str, int] = field(default_factory=dict)
    root_pool: str | None = None
    volumes: tuple[tuple[str, str], ...] = ()
    disk: bool = False


@dataclass(frozen=True)
class NicCounters:
    """One NIC as the instance sees it (the host port's rx is the instance's tx)."""

    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0


@dataclass(frozen=True)
class InstanceCounters:
    """One instance's cumulative counters and current levels at `time` (unix seconds).
    `running` False: no cgroup (stopped or missing), the figures are zero. `disk_bytes` None:
    not measured this round. `*_max_hits`: how often a limit was hit (v2 `max` events; v1
    memory.failcnt)."""

    time: float
    running: bool = False
    cpu_seconds: float = 0.0
    cpu_limit: float | None = None        # CPUs (the CFS quota / period), None: unlimited
    cpu_throttled: int = 0                # periods throttled by the quota
    memory_bytes: int = 0
    memory_limit_bytes: int | None = None
    swap_bytes: int = 0
    oom_kills: int = 0
    memory_max_hits: int = 0
    pids: int = 0
    pids_limit: int | None = None
    pids_max_hits: int = 0
    disk_bytes: int | None = None
    volumes: Mapping[str, int] = field(default_factory=dict)   # volume id -> bytes used
    nics: Mapping[str, NicCounters] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeCounters:
    """The host at `time`: CPU ticks (busy and total, of /proc/stat), load, memory, its pools
    and its own interfaces (those that are no instance's port)."""

    time: float
    cpus: int
    cpu_busy_ticks: int
    cpu_total_ticks: int
    load: tuple[float, float, float]
    memory_total_bytes: int
    memory_free_bytes: int
    memory_available_bytes: int
    pools: Mapping[str, PoolUsage] = field(default_factory=dict)
    nics: Mapping[str, NicCounters] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeMetrics:
    node: NodeCounters
    instances: Mapping[str, InstanceCounters]


# --- small readers: one open + read each (os.open on a str path: a Path join and a file object
# cost more than the read itself), None when the file is not there
def read_text(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode()
    except OSError:
        return None
    finally:
        os.close(fd)


def _int(s: str | None) -> int | None:
    if s is None:
        return None
    s = s.strip()
    if s == "max":
        return None
    try:
        return int(s)
    except ValueError:
        return None


def read_int(path: str) -> int | None:
    return _int(read_text(path))


def _keyed(s: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    if s:
        for line in s.splitlines():
            k, _, v = line.partition(" ")
            try:
                out[k] = int(v)
            except ValueError:
                pass
    return out


def read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file ("key value" per line: cpu.stat, memory.events, pids.events)."""
    return _keyed(read_text(path))


def _limit(v: int | None) -> int | None:
    return None if v is None or v >= _V1_UNLIMITED else v


def read_cgroup(dirs: CgroupDirs, now: float) -> InstanceCounters:
    """An instance's CPU, memory and pids figures from its cgroup files (not running: no cgroup,
    told by its first file missing rather than by a stat of its directory)."""
    if dirs.version == 2:
        if dirs.unified is None:
            return InstanceCounters(time=now)
        d = str(dirs.unified)
        stat = read_text(f"{d}/cpu.stat")
        if stat is None:
            return InstanceCounters(time=now)
        cpu = _keyed(stat)
        quota = None
        parts = (read_text(f"{d}/cpu.max") or "max").split()
        if parts[0] != "max" and len(parts) > 1 and int(parts[1]):
            quota = int(parts[0]) / int(parts[1])
        mem_events = read_keyed(f"{d}/memory.events")
        pids_events = read_keyed(f"{d}/pids.events")
        return InstanceCounters(
            time=now, running=True, cpu_seconds=cpu.get("usage_usec", 0) / 1e6,
            cpu_limit=quota, cpu_throttled=cpu.get("nr_throttled", 0),
            memory_bytes=read_int(f"{d}/memory.current") or 0,
            memory_limit_bytes=read_int(f"{d}/memory.max"),
            swap_bytes=read_int(f"{d}/memory.swap.current") or 0,
            oom_kills=mem_events.get("oom_kill", 0), memory_max_hits=mem_events.get("max", 0),
            pids=read_int(f"{d}/pids.current") or 0, pids_limit=read_int(f"{d}/pids.max"),
            pids_max_hits=pids_events.get("max", 0))
    mem_d, cpu_d, acct_d, pids_d = (dirs.dir(c) for c in ("memory", "cpu", "cpuacct", "pids"))
    if mem_d is None:
        return InstanceCounters(time=now)
    mem = str(mem_d)
    usage = read_int(f"{mem}/memory.usage_in_bytes")
    if usage is None:
        return InstanceCounters(time=now)
    memsw = read_int(f"{mem}/memory.memsw.usage_in_bytes")
    quota = None
    throttled = 0
    if cpu_d is not None:
        q = read_int(f"{cpu_d}/cpu.cfs_quota_us")
        period = read_int(f"{cpu_d}/cpu.cfs_period_us")
        if q is not None and q > 0 and period:
            quota = q / period
        throttled = read_keyed(f"{cpu_d}/cpu.stat").get("nr_throttled", 0)
    cpu_ns = read_int(f"{acct_d}/cpuacct.usage") if acct_d is not None else None
    pids = str(pids_d) if pids_d is not None else None
    pids_events = read_keyed(f"{pids}/pids.events") if pids is not None else {}
    return InstanceCounters(
        time=now, running=True, cpu_seconds=(cpu_ns or 0) / 1e9, cpu_limit=quota,
        cpu_throttled=throttled, memory_bytes=usage,
        memory_limit_bytes=_limit(read_int(f"{mem}/memory.limit_in_bytes")),
        swap_bytes=max(0, memsw - usage) if memsw is not None else 0,
        oom_kills=read_keyed(f"{mem}/memory.oom_control").get("oom_kill", 0),
        memory_max_hits=read_int(f"{mem}/memory.failcnt") or 0,
        pids=(read_int(f"{pids}/pids.current") or 0) if pids is not None else 0,
        pids_limit=read_int(f"{pids}/pids.max") if pids is not None else None,
        pids_max_hits=pids_events.get("max", 0))


_NIC_FILES = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_dropped", "tx_dropped")
SYS_NET = Path("/sys/class/net")


def read_port(port: str, *, swap: bool = True, root: Path = SYS_NET) -> NicCounters | None:
    """A host interface's counters (None when it does not exist); `swap`: as the instance on the
    other end of this veth sees them (rx and tx exchanged)."""
    st = f"{root}/{port}/statistics/"
    rb = read_int(st + "rx_bytes")
    if rb is None:
        return None
    tb, rp, tp, rd, td = (read_int(st + f) or 0 for f in _NIC_FILES[1:])
    if swap:
        return NicCounters(rx_bytes=tb, tx_bytes=rb, rx_packets=tp, tx_packets=rp,
                           rx_dropped=td, tx_dropped=rd)
    return NicCounters(rb, tb, rp, tp, rd, td)


def read_host(now: float, proc: Path = Path("/proc")) -> NodeCounters:
    """Load, memory and CPU ticks of the host."""
    load_s = (read_text(f"{proc}/loadavg") or "0 0 0").split()
    load = (float(load_s[0]), float(load_s[1]), float(load_s[2]))
    mem: dict[str, int] = {}
    for line in (read_text(f"{proc}/meminfo") or "").splitlines():
        k, _, v = line.partition(":")
        parts = v.split()
        if parts:
            mem[k] = int(parts[0]) * 1024
    busy = total = 0
    cpus = 0
    for line in (read_text(f"{proc}/stat") or "").splitlines():
        if line.startswith("cpu "):
            ticks = [int(x) for x in line.split()[1:]]
            total = sum(ticks[:8])           # guest time is already counted in user
            busy = total - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)   # idle, iowait
        elif line.startswith("cpu"):
            cpus += 1
    return NodeCounters(time=now, cpus=cpus or (os.cpu_count() or 1), cpu_busy_ticks=busy,
                        cpu_total_ticks=total, load=load,
                        memory_total_bytes=mem.get("MemTotal", 0),
                        memory_free_bytes=mem.get("MemFree", 0),
                        memory_available_bytes=mem.get("MemAvailable", 0))


def host_nics(root: Path = SYS_NET) -> dict[str, NicCounters]:
    """The host's own devices (those backed by hardware or a hypervisor's NIC: not loopback,
    bridges or veths, of which there may be thousands), as the host sees them."""
    out: dict[str, NicCounters] = {}
    try:
        names = os.listdir(root)
    except OSError:
        return out
    for n in names:
        if not os.path.exists(f"{root}/{n}/device"):
            continue
        c = read_port(n, swap=False, root=root)
        if c is not None:
            out[n] = c
    return out


def now() -> float:
    return time.time()
