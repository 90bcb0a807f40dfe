"""The node's metrics readers over fake cgroup v1 and v2 trees and a fake /sys/class/net (the
real files are read by tests/integration/services/test_metrics.py)."""

from __future__ import annotations

from pathlib import Path

from lxcloud.drivers.compute.base import CgroupDirs
from lxcloud.node.metrics import host_nics, read_cgroup, read_host, read_port


def _files(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)


def test_a_v2_cgroup_is_read_with_its_limits(tmp_path: Path) -> None:
    d = tmp_path / "lxc.payload.i-1"
    _files(d, {"cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nnr_throttled 7\n",
               "cpu.max": "50000 100000\n", "memory.current": "1048576\n",
               "memory.max": "67108864\n", "memory.swap.current": "4096\n",
               "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
               "pids.current": "5\n", "pids.max": "max\n", "pids.events": "max 2\n"})
    c = read_cgroup(CgroupDirs(2, unified=d), 10.0)
    assert c.running and c.time == 10.0
    assert c.cpu_seconds == 2.5 and c.cpu_limit == 0.5 and c.cpu_throttled == 7
    assert (c.memory_bytes, c.memory_limit_bytes, c.swap_bytes) == (1048576, 67108864, 4096)
    assert (c.oom_kills, c.memory_max_hits) == (1, 3)
    assert (c.pids, c.pids_limit, c.pids_max_hits) == (5, None, 2)


def test_a_v1_cgroup_is_read_and_unlimited_means_none(tmp_path: Path) -> None:
    leaf = "lxc.payload.i-1"
    _files(tmp_path / "memory" / leaf, {
        "memory.usage_in_bytes": "3000\n", "memory.memsw.usage_in_bytes": "3500\n",
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
        "memory.failcnt": "9\n"})
    _files(tmp_path / "cpu" / leaf, {"cpu.cfs_quota_us": "200000\n",
                                     "cpu.cfs_period_us": "100000\n",
                                     "cpu.stat": "nr_periods 10\nnr_throttled 1\n"})
    _files(tmp_path / "cpuacct" / leaf, {"cpuacct.usage": "1500000000\n"})
    _files(tmp_path / "pids" / leaf, {"pids.current": "3\n", "pids.max": "100\n",
                                      "pids.events": "max 0\n"})
    dirs = CgroupDirs(1, controllers={c: tmp_path / c / leaf
                                      for c in ("cpu", "cpuacct", "memory", "pids")})
    c = read_cgroup(dirs, 1.0)
    assert c.running and c.cpu_seconds == 1.5 and c.cpu_limit == 2.0 and c.cpu_throttled == 1
    assert (c.memory_bytes, c.memory_limit_bytes, c.swap_bytes) == (3000, None, 500)
    assert (c.oom_kills, c.memory_max_hits) == (4, 9)
    assert (c.pids, c.pids_limit) == (3, 100)


def test_no_cgroup_is_not_running(tmp_path: Path) -> None:
    for dirs in (CgroupDirs(2, unified=tmp_path / "gone"),
                 CgroupDirs(1, controllers={"memory": tmp_path / "gone"}), CgroupDirs(1)):
        c = read_cgroup(dirs, 2.0)
        assert not c.running and c.cpu_seconds == 0 and c.memory_bytes == 0


def test_a_port_is_seen_from_the_instance_side_and_host_nics_skip_virtual_ones(
        tmp_path: Path) -> None:
    for name, device in (("vport0", False), ("ens3", True)):
        _files(tmp_path / name / "statistics", {"rx_bytes": "100\n", "tx_bytes": "200\n",
                                                "rx_packets": "1\n", "tx_packets": "2\n",
                                                "rx_dropped": "0\n", "tx_dropped": "3\n"})
        if device:
            (tmp_path / name / "device").mkdir()
    n = read_port("vport0", root=tmp_path)
    assert n is not None and (n.rx_bytes, n.tx_bytes, n.rx_packets, n.tx_dropped) == (200, 100, 2, 0)
    assert read_port("missing", root=tmp_path) is None
    nics = host_nics(root=tmp_path)
    assert list(nics) == ["ens3"] and nics["ens3"].rx_bytes == 100


def test_the_host_figures(tmp_path: Path) -> None:
    _files(tmp_path, {"loadavg": "0.50 0.25 0.10 1/100 42\n",
                      "meminfo": "MemTotal: 1000 kB\nMemFree: 400 kB\nMemAvailable: 600 kB\n",
                      "stat": "cpu  10 0 10 70 10 0 0 0 0 0\ncpu0 5 0 5 35 5 0 0 0 0 0\n"
                              "cpu1 5 0 5 35 5 0 0 0 0 0\nintr 1\n"})
    h = read_host(3.0, proc=tmp_path)
    assert h.load == (0.5, 0.25, 0.1) and h.cpus == 2
    assert (h.cpu_total_ticks, h.cpu_busy_ticks) == (100, 20)
    assert (h.memory_total_bytes, h.memory_free_bytes, h.memory_available_bytes) == (
        1024000, 409600, 614400)
