"""The metrics history (ring buffers, minute averages, bounds) and the rate maths, the REST
shapes, Prometheus names and the OOM/limit events, over scripted node counters."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lxcloud.node.metrics import InstanceCounters, NicCounters, NodeCounters, NodeMetrics
from lxcloud.services.cloud import Cloud
from lxcloud.services.metrics import COARSE_STEP, Ring, Series, rate
from tests.unit.api.rest.test_instances import launch
from tests.unit.api.rest.test_tenancy import member
from tests.unit.fakes import FakeNode


def test_ring_keeps_the_last_rows_oldest_first() -> None:
    r = Ring(3, 2)
    for k in range(5):
        r.push([k, 10 * k])
    assert [list(x) for x in r.rows()] == [[2, 20], [3, 30], [4, 40]]
    assert r.nbytes() == 3 * 2 * 8


def test_series_downsamples_to_minute_averages_and_never_grows() -> None:
    s = Series(["time", "cpu_percent", "rx_bytes"], interval=10)
    assert s.fine.capacity == 360 and s.coarse.capacity == 24 * 60 - 60
    size = s.nbytes()
    t0 = 1_000_020.0 - 1_000_020.0 % COARSE_STEP      # a minute's start
    for k in range(12):                               # two whole minutes at 10 s
        s.push([t0 + 10 * k, float(k), 100.0 * k])
    s.push([t0 + 120, 0.0, 0.0])                      # starts the third minute: flushes the 2nd
    rows = [list(r) for r in s.coarse.rows()]
    # the percent averaged over the minute, the counter's last value kept
    assert rows == [[t0 + 50, 2.5, 500.0], [t0 + 110, 8.5, 1100.0]]
    for k in range(2 * 8640):                         # two days more
        s.push([t0 + 130 + 10 * k, 1.0, float(k)])
    assert s.fine.count == 360 and s.coarse.count == s.coarse.capacity
    assert s.nbytes() == size
    # since(): the minute averages older than the last hour, then every 10 s row
    last = t0 + 130 + 10 * (2 * 8640 - 1)
    got = s.since(last - 7200)
    fine_start = last - 3590
    assert [r[0] for r in got if r[0] >= fine_start] == [fine_start + 10 * k for k in range(360)]
    older = [r[0] for r in got if r[0] < fine_start]
    assert 55 <= len(older) <= 61
    assert all(b - a == COARSE_STEP for a, b in zip(older, older[1:], strict=False))


def test_rates_are_per_second_and_zero_after_a_reset() -> None:
    assert rate(150.0, 100.0, 10.0) == 5.0
    assert rate(3.0, 100.0, 10.0) == 0.0      # the counter started again (a restart)
    assert rate(5.0, 1.0, 0.0) == 0.0


class Script:
    """Scripted rounds: collect_metrics answers with what the test set, at the times it set."""

    def __init__(self, node: FakeNode) -> None:
        self.t = 1_000_000.0
        self.counters: dict[str, InstanceCounters] = {}
        node.collect_metrics = self.collect  # type: ignore[method-assign]

    def collect(self, targets: Any) -> NodeMetrics:
        host = NodeCounters(time=self.t, cpus=2, cpu_busy_ticks=int(self.t), cpu_total_ticks=
                            int(self.t * 4), load=(0.5, 0.25, 0.125), memory_total_bytes=8 << 30,
                            memory_free_bytes=2 << 30, memory_available_bytes=4 << 30)
        return NodeMetrics(node=host, instances={
            t.instance_id: dataclasses.replace(self.counters[t.instance_id], time=self.t)
            for t in targets if t.instance_id in self.counters})

    def round(self, cloud: Cloud, step: float = 10.0, **changes: Any) -> None:
        self.t += step
        for iid, c in self.counters.items():
            self.counters[iid] = dataclasses.replace(c, **changes)
        cloud.metrics.run_once()


@pytest.fixture
def script(node: FakeNode, cloud: Cloud) -> Script:
    cloud.metrics.stop()            # the rounds are the test's
    return Script(node)


def _counters(**kw: Any) -> InstanceCounters:
    base: dict[str, Any] = dict(time=0, running=True, cpu_seconds=10.0, cpu_limit=1.0,
                                memory_bytes=50 << 20, memory_limit_bytes=128 << 20, pids=3,
                                pids_limit=100, nics={"eth0": NicCounters(1000, 2000, 10, 20)})
    base.update(kw)
    return InstanceCounters(**base)


def test_usage_rates_history_and_project_scoping(api: TestClient, image: Any, cloud: Cloud,
                                                 script: Script) -> None:
    inst = launch(api, name="m1", limits={"memory": "128MiB"})["instance"]
    script.counters[inst["id"]] = _counters()
    script.round(cloud)
    # one reading gives no rates yet: no usage
    assert api.get("/api/v1/instances/m1").json()["usage"] is None
    nic = NicCounters(1000 + 125_000, 2000 + 250_000, 110, 220)
    script.round(cloud, cpu_seconds=15.0, nics={"eth0": nic})
    u = api.get("/api/v1/instances/m1").json()["usage"]
    assert u["cpu_percent"] == 50.0 and u["cpu_seconds"] == 15.0
    assert u["cpu_limit_percent"] == 50.0            # of its 1 CPU
    assert u["memory_bytes"] == 50 << 20 and u["memory_limit_bytes"] == 128 << 20
    assert u["nics"]["eth0"]["rx_bps"] == 100_000 and u["nics"]["eth0"]["tx_bps"] == 200_000
    assert u["nics"]["eth0"]["rx_packets"] == 110
    listed = {i["name"]: i for i in api.get("/api/v1/instances").json()}
    assert listed["m1"]["usage"]["cpu_percent"] == 50.0
    script.round(cloud, cpu_seconds=25.0)
    m = api.get("/api/v1/instances/m1/metrics").json()
    assert m["instance"] == inst["id"] and m["name"] == "m1" and m["interval"] == 10
    assert [s["cpu_percent"] for s in m["samples"]] == [50.0, 100.0]
    assert m["current"]["cpu_percent"] == 100.0
    later = api.get("/api/v1/instances/m1/metrics", params={"since": script.t}).json()
    assert [s["time"] for s in later["samples"]] == [script.t]
    # another project's instance is not found; its own user sees it
    bob = member(api, "bob", "blue")
    assert bob.get(f"/api/v1/instances/{inst['id']}/metrics").status_code == 404
    node = api.get("/api/v1/nodes/local/metrics").json()
    assert node["node"] == "local" and node["current"]["cpus"] == 2
    assert node["current"]["cpu_percent"] == 50.0      # busy 1/4 of the ticks of 2 CPUs
    assert node["current"]["load"] == [0.5, 0.25, 0.125]
    assert node["current"]["instances"] == {"running": 1}
    assert len(node["samples"]) == 2
    assert api.get("/api/v1/nodes/nope/metrics").status_code == 404


def test_prometheus_names_labels_and_values(api: TestClient, image: Any, cloud: Cloud,
                                            script: Script) -> None:
    inst = launch(api, name="p1")["instance"]
    script.counters[inst["id"]] = _counters()
    script.round(cloud)
    script.round(cloud, cpu_seconds=12.5, oom_kills=2)
    from prometheus_client.parser import text_string_to_metric_families

    got = {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
           for fam in text_string_to_metric_families(api.get("/metrics").text)
           for smp in fam.samples}
    lab = (("instance", "p1"), ("instance_id", inst["id"]), ("node", "local"),
           ("project", "default"))
    nic = tuple(sorted((*lab, ("nic", "eth0"))))
    for name, labels, value in (("lxcloud_instance_cpu_seconds_total", lab, 12.5),
                                ("lxcloud_instance_memory_bytes", lab, 50 << 20),
                                ("lxcloud_instance_memory_limit_bytes", lab, 128 << 20),
                                ("lxcloud_instance_oom_kills_total", lab, 2),
                                ("lxcloud_instance_pids", lab, 3),
                                ("lxcloud_instance_network_receive_bytes_total", nic, 1000),
                                ("lxcloud_node_load1", (("node", "local"),), 0.5),
                                ("lxcloud_node_memory_total_bytes", (("node", "local"),), 8 << 30),
                                ("lxcloud_instances", (("state", "running"),), 1)):
        assert got.get((name, labels)) == value, (name, labels, got.get((name, labels)))


def test_the_exposition_is_well_formed_and_escapes_label_values(api: TestClient, image: Any,
                                                                cloud: Cloud,
                                                                script: Script) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from lxcloud.api.rest.system import _label, _value

    for k in range(3):
        inst = launch(api, name=f"w{k}")["instance"]
        script.counters[inst["id"]] = _counters()
    script.round(cloud)
    script.round(cloud)
    text = api.get("/metrics").text
    fams = list(text_string_to_metric_families(text))
    names = [f.name for f in fams]
    assert len(names) == len(set(names))              # one HELP and TYPE per family
    assert text.count("# TYPE lxcloud_instance_cpu_seconds_total counter\n") == 1
    cpu = next(f for f in fams if f.name == "lxcloud_instance_cpu_seconds")
    assert cpu.type == "counter" and sorted(s.labels["instance"] for s in cpu.samples) == [
        "w0", "w1", "w2"]
    # label names sorted, as prometheus_client writes them (users' scripts grep these lines)
    for line in text.splitlines():
        if line.startswith("lxcloud_instance_"):
            keys = re.findall(r'([a-z_]+)="', line.split("{", 1)[1].rsplit("}", 1)[0])
            assert keys == sorted(keys), line
    assert re.search(r'^lxcloud_instance_network_receive_bytes_total\{instance="w0",'
                     r'instance_id="i-[0-9a-f]+",nic="eth0",node="local",project="default"\} ',
                     text, re.M), text
    # a label value with a quote, a backslash and a newline reads back as it was
    line = f'x{{a="{_label(chr(34) + "q" + chr(92) + chr(10))}"}} {_value(True)}\n'
    (smp,) = next(iter(text_string_to_metric_families(line))).samples
    assert smp.labels == {"a": '"q\\\n'} and smp.value == 1
    assert [_value(v) for v in (3, 2.5, float("inf"), float("nan"))] == ["3", "2.5", "+Inf", "NaN"]


def test_oom_and_limits_are_published_once_per_crossing(api: TestClient, image: Any,
                                                        cloud: Cloud, script: Script) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    publish: Callable[..., None] = lambda kind, **kw: seen.append((kind, kw["data"]))  # noqa: E731
    cloud.metrics.publish = publish
    inst = launch(api, name="o1")["instance"]
    script.counters[inst["id"]] = _counters()
    script.round(cloud)
    script.round(cloud, oom_kills=1, memory_max_hits=5)
    script.round(cloud, memory_max_hits=9)             # still at its limit: not again
    script.round(cloud)                                # no new hits: the crossing is over
    script.round(cloud, oom_kills=3, memory_max_hits=10)
    assert seen == [("instance.oom", {"oom_kills": 1, "new": 1}),
                    ("instance.limit", {"resource": "memory", "limit": 128 << 20,
                                        "used": 50 << 20}),
                    ("instance.oom", {"oom_kills": 3, "new": 2}),
                    ("instance.limit", {"resource": "memory", "limit": 128 << 20,
                                        "used": 50 << 20})]


def test_a_deleted_instance_loses_its_history(api: TestClient, image: Any, cloud: Cloud,
                                              script: Script) -> None:
    inst = launch(api, name="d1")["instance"]
    script.counters[inst["id"]] = _counters()
    script.round(cloud)
    script.round(cloud)
    assert inst["id"] in cloud.metrics.tracks
    r = api.delete(f"/api/v1/instances/{inst['id']}", params={"force": "true", "wait": 10})
    assert r.status_code == 202, r.text
    assert inst["id"] not in cloud.metrics.tracks
    assert api.get(f"/api/v1/instances/{inst['id']}/metrics").json()["samples"] == []
