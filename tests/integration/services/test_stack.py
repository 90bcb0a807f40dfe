"""The whole stack in-process (services + the real local node): real LXC, overlayfs, bridge,
nftables and dnsmasq. Debian (systemd) and busybox images, DNS between instances, limits seen inside,
the firewall table and clean removal."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.core.errors import InvalidState
from lxcloud.core.instance import Kind
from lxcloud.services.cloud import Cloud
from lxcloud.services.images import BuildRequest
from lxcloud.services.instances import LaunchRequest
from tests.integration.services.stack import running_stack, sh, wait
from tests.waiting import wait_for

DEBIAN_CACHE = Path("/var/cache/lxcloud-test")


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with running_stack("lxcloud-stack-") as st:
        yield st.cloud


def launch(cloud: Cloud, image: str, name: str, **kw: object) -> str:
    [(inst, op)] = cloud.instances.launch(LaunchRequest(image=image, name=name, **kw))  # type: ignore[arg-type]
    assert op is not None
    wait(cloud, op.id, 180)
    assert cloud.instances.get(name).state == "running"
    return inst.id


def test_host_is_prepared_for_many_containers(cloud: Cloud) -> None:
    from lxcloud.node.host import SYSCTL_FLOORS

    # without this, the kernel's 128 inotify instances stop the ~16th systemd container at boot
    # and the kernel's 4,096 ptys stop the ~615th container (5 ptys each)
    for key in ("fs/inotify/max_user_instances", "fs/inotify/max_user_watches", "kernel/pty/max"):
        assert int((Path("/proc/sys") / key).read_text()) >= SYSCTL_FLOORS[key]
    facts = cloud.nodes.list()[0]["facts"]
    assert facts["lxcfs_running"] and facts["ip_forward"]


def test_network_table_bridge_and_dns(cloud: Cloud) -> None:
    net = cloud.networks.get()
    table = json.loads(subprocess.run(["nft", "-j", "list", "table", "inet",
                                       cloud.settings.nft_table], check=True,
                                      capture_output=True, text=True).stdout)
    assert "masquerade" in json.dumps(table)
    launch(cloud, "busybox", "alpha", memory="64MiB")
    launch(cloud, "busybox", "beta", memory="64MiB")
    a, b = cloud.instances.get("alpha"), cloud.instances.get("beta")
    assert a.ipv4 != b.ipv4
    # each instance's port may send from its own address only (the port guard's set)
    from lxcloud.drivers.network.portguard import PortGuard

    veth = cloud.node.computes[Kind.CONTAINER].port_name  # type: ignore[attr-defined]
    allowed = set(PortGuard().elements(cloud.settings.nft_table))
    assert {(veth(a.id), a.ipv4), (veth(b.id), b.ipv4)} <= allowed
    # instances resolve each other by name through the network's dnsmasq, and reach each other
    code, out = sh(cloud, "alpha", f"nslookup beta {net.gateway}")
    assert code == 0 and b.ipv4 in out, out
    code, out = sh(cloud, "alpha", f"ping -c1 -W2 {b.ipv4}")
    assert code == 0, out
    # cgroup limits are seen inside (lxcfs)
    r = cloud.instances.exec("alpha", ["free", "-m"])
    mem = [line.split() for line in r.stdout.decode().splitlines() if line.startswith("Mem:")]
    assert mem and int(mem[0][1]) == 64, r.stdout
    # and its uptime is its own, not the host's (interactive shells get the same through /etc/profile)
    up_inside = float(cloud.instances.exec("alpha", ["cat", "/proc/uptime"]).stdout.split()[0])
    assert up_inside < float(Path("/proc/uptime").read_text().split()[0])
    code, out = sh(cloud, "alpha", ". /etc/profile; free -m; uptime")
    assert code == 0 and " 64 " in out.splitlines()[1] and "up 0 days" in out, out
    for n in ("alpha", "beta"):
        wait(cloud, cloud.instances.delete(n, force=True).id)
    left = {p for p, _ in PortGuard().elements(cloud.settings.nft_table)}
    assert veth(a.id) not in left and veth(b.id) not in left
    code = subprocess.run(["busybox", "ping", "-c1", "-W1", str(a.ipv4)], capture_output=True).returncode
    assert code != 0


@pytest.mark.skipif(not shutil.which("debootstrap"), reason="debootstrap missing")
def test_debian_systemd_boots_and_stops_cleanly(cloud: Cloud) -> None:
    cached = sorted(DEBIAN_CACHE.glob("debian-bookworm-amd64-base-*.tar*"),
                    key=lambda p: p.stat().st_mtime)
    if cached:
        cloud.images.import_file(cached[-1], "debian")
    else:
        wait(cloud, cloud.images.build(BuildRequest(builder="debian", name="debian")).id, 1200)
    launch(cloud, "debian", "deb1", memory="256MiB")

    # systemd blocks until boot has finished once its manager answers at all ("Failed to
    # connect to bus" in the first instants): wait on that, with a deadline
    def booted() -> str:
        _, out = sh(cloud, "deb1", "systemctl is-system-running --wait", timeout=90)
        last = out.strip().splitlines()[-1] if out.strip() else ""
        return last if last in ("running", "degraded") else ""

    assert wait_for(booted, 90, "systemd in deb1 to finish booting") in ("running", "degraded")
    code, out = sh(cloud, "deb1", "systemctl --failed --no-legend --plain | awk '{print $1}'")
    assert out.strip() == "", f"failed units: {out}"
    code, out = sh(cloud, "deb1", "cat /proc/1/comm; hostname; ip -4 -o addr show eth0")
    assert out.splitlines()[0] == "systemd" and out.splitlines()[1] == "deb1"
    assert cloud.instances.get("deb1").ipv4 in out
    # a clean stop through systemd's halt signal: systemd's own last words are on the console
    # (a kill after the timeout would cut it off before them)
    wait(cloud, cloud.instances.action("deb1", "stop", timeout=60).id, 90)
    assert cloud.instances.get("deb1").state == "stopped"
    assert b"Halting system." in cloud.instances.console_log("deb1")
    with pytest.raises(InvalidState):
        cloud.instances.exec("deb1", ["true"])
    wait(cloud, cloud.instances.delete("deb1").id)
