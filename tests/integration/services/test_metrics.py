"""Metrics of real containers: a CPU hog is ~100% of one CPU, a memory hog's usage nears its limit
and its OOM kill is counted and becomes an event, and NIC counters match a known transfer."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from lxcloud.core.caller import SYSTEM
from lxcloud.services.cloud import Cloud
from lxcloud.services.events import EventFilter
from lxcloud.services.instances import LaunchRequest
from tests.integration.services.stack import Stack, ok, running_stack, wait
from tests.waiting import wait_for

pytestmark = pytest.mark.root
MiB = 1 << 20


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("lxcloud-metrics-", metrics_interval=1) as st:
        yield st


@pytest.fixture(scope="module")
def cloud(stack: Stack) -> Cloud:
    return stack.cloud


def launch(cloud: Cloud, name: str, **kw: Any) -> str:
    [(inst, op)] = cloud.instances.launch(LaunchRequest(image="busybox", name=name, **kw))
    assert op is not None
    wait(cloud, op.id)
    return inst.id


def usage(cloud: Cloud, iid: str) -> dict[str, Any] | None:
    return cloud.metrics.usage(iid)


def test_a_cpu_hog_is_one_busy_cpu(cloud: Cloud) -> None:
    iid = launch(cloud, "hog", memory="64MiB")
    ok(cloud, "hog", "(setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &)")
    # a sample taken entirely while it spins (rates need two readings after it started)
    got = wait_for(lambda: (u := usage(cloud, iid)) and u["cpu_percent"] >= 70 and u, 60,
                   "the hog's CPU to show")
    assert got["cpu_percent"] <= 130, got
    assert got["cpu_limit_percent"] > 0 and got["pids"] >= 2
    m = cloud.metrics.instance_metrics(cloud.instances.get(iid))
    assert m["samples"] and m["samples"][-1]["cpu_seconds"] >= m["samples"][0]["cpu_seconds"]
    ok(cloud, "hog", "pkill -f 'while [:]'")  # [:]: not its own command line
    wait_for(lambda: (u := usage(cloud, iid)) and u["cpu_percent"] < 30, 60, "the hog to stop")


def test_a_memory_hog_nears_its_limit_and_its_oom_kill_is_an_event(cloud: Cloud) -> None:
    iid = launch(cloud, "mem", memory="64MiB", swap="0")
    limit = 64 * MiB
    # 40 MiB held in a tmpfs (charged to the container's memory) while it sleeps
    ok(cloud, "mem", "mkdir -p /run/hog && mount -t tmpfs -o size=60m tmpfs /run/hog && "
                     "dd if=/dev/zero of=/run/hog/fill bs=1M count=40 2>/dev/null")
    u = wait_for(lambda: (x := usage(cloud, iid)) and x["memory_bytes"] >= 40 * MiB and x, 30,
                 "usage to show the 40 MiB")
    assert u["memory_limit_bytes"] == limit and u["memory_bytes"] <= limit
    assert u["memory_bytes"] >= 0.6 * limit
    # then a process that wants more than is left is killed
    before = u["oom_kills"]
    ok(cloud, "mem", "tail /dev/zero >/dev/null 2>&1 || true")
    wait_for(lambda: (x := usage(cloud, iid)) and x["oom_kills"] > before, 30,
             "the OOM kill to be counted")
    ev = wait_for(lambda: cloud.events.list(EventFilter(SYSTEM, instance=iid,
                                                        type="instance.oom")), 30,
                  "the instance.oom event")
    assert ev[-1].data["new"] >= 1 and ev[-1].instance_id == iid
    ok(cloud, "mem", "umount /run/hog")


def test_network_counters_match_a_known_transfer(cloud: Cloud) -> None:
    iid = launch(cloud, "net", memory="64MiB")
    ip = cloud.instances.get(iid).ipv4
    ok(cloud, "net", "(setsid nc -l -p 5001 </dev/null >/dev/null 2>&1 &)")
    first = wait_for(lambda: usage(cloud, iid), 30, "a first sample")
    rx0 = first["nics"]["eth0"]["rx_bytes"]
    size = 8 * MiB

    def send() -> bool:
        try:
            with socket.create_connection((ip, 5001), timeout=5) as s:
                s.sendall(b"\0" * size)
            return True
        except OSError:           # nc not listening yet
            return False
    wait_for(send, 30, "nc to take the transfer")
    got = wait_for(lambda: (u := usage(cloud, iid)) and
                   u["nics"]["eth0"]["rx_bytes"] - rx0 >= size and u, 30,
                   "the transfer to be counted")
    grew = got["nics"]["eth0"]["rx_bytes"] - rx0
    assert size <= grew <= size * 1.1, grew
    assert got["nics"]["eth0"]["rx_packets"] > 0
