"""Per-NIC bandwidth limits with tc on real veths and real containers: set, changed and removed
(nothing left: no qdisc, no ifb), back at every start through the definition's hooks, and a real
transfer between two containers measured against the limit and against no limit."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from lxcloud.core.errors import DriverError
from lxcloud.core.host import HostState
from lxcloud.core.proc import run
from lxcloud.drivers.network.ratelimit import RateLimiter, Rates, ifb_name
from tests.integration.conftest import Box, Launcher, wait_for

pytestmark = pytest.mark.root

LIMIT = 8_000_000           # 8Mbit: 1 MB/s
SIZE_KIB = 2048             # 2 MiB: about 2 s at the limit


def links() -> set[str]:
    out = run(["ip", "-o", "link"]).stdout.decode()
    return {ln.split(": ")[1].split("@")[0] for ln in out.splitlines() if ": " in ln}


def qdisc_kinds(dev: str) -> set[str]:
    out = run(["tc", "qdisc", "show", "dev", dev]).stdout.decode()
    return {ln.split()[1] for ln in out.splitlines() if ln.strip()}


@pytest.fixture
def veth() -> Iterator[str]:
    """A veth pair standing in for a host port (prefix "lxr"+random), removed after."""
    port = "lxr" + secrets.token_hex(4)
    run(["ip", "link", "add", port, "type", "veth", "peer", "name", port + "p"])
    try:
        yield port
    finally:
        run(["ip", "link", "del", port], check=False)
        run(["ip", "link", "del", ifb_name(port)], check=False)


def test_limits_on_a_port_are_set_changed_and_removed_leaving_nothing(veth: str) -> None:
    rl = RateLimiter()
    rl.apply(veth, Rates(ingress=10_000_000, egress=5_000_000))
    assert rl.read(veth) == Rates(10_000_000, 5_000_000)
    assert {"tbf", "ingress"} <= qdisc_kinds(veth) and ifb_name(veth) in links()
    rl.apply(veth, Rates(ingress=20_000_000, egress=5_000_000))     # again, changed: in place
    assert rl.read(veth) == Rates(20_000_000, 5_000_000)
    rl.apply(veth, Rates(ingress=0, egress=7_000_000))               # one direction lifted
    assert rl.read(veth) == Rates(0, 7_000_000) and "tbf" not in qdisc_kinds(veth)
    rl.apply(veth, Rates(ingress=3_000_000))
    assert rl.read(veth) == Rates(3_000_000, 0)
    assert "ingress" not in qdisc_kinds(veth) and ifb_name(veth) not in links()
    rl.apply(veth, Rates(1_000_000, 1_000_000))
    rl.remove(veth)
    assert rl.read(veth) == Rates()
    assert not qdisc_kinds(veth) & {"tbf", "ingress"} and ifb_name(veth) not in links()
    rl.remove(veth)                                                  # again: no-op


def test_a_missing_port_is_a_driver_error() -> None:
    with pytest.raises(DriverError, match="no such interface"):
        RateLimiter().apply("lxrnothere0", Rates(1_000_000, 0))
    assert ifb_name("lxrnothere0") not in links()


def test_sweep_removes_only_the_ifbs_of_gone_ports_of_its_prefix(veth: str) -> None:
    rl = RateLimiter()
    other = "lxr" + secrets.token_hex(4)
    run(["ip", "link", "add", other, "type", "veth", "peer", "name", other + "p"])
    try:
        rl.apply(veth, Rates(egress=1_000_000))
        rl.apply(other, Rates(egress=1_000_000))
        run(["ip", "link", "del", other])            # a port gone without its stop hook
        assert ifb_name(other) in links()
        assert rl.sweep("zz") == []                  # another cloud's prefix: not ours
        assert rl.sweep("lxr") == [ifb_name(other)]
        assert ifb_name(other) not in links() and ifb_name(veth) in links()
    finally:
        run(["ip", "link", "del", other], check=False)
        run(["ip", "link", "del", ifb_name(other)], check=False)


def limited(launch: Launcher, *, ingress: int = 0, egress: int = 0, start: bool = True) -> Box:
    """A busybox container whose NIC has these limits in its definition."""
    box = launch(start=False)
    box.spec = replace(box.spec, nics=(replace(box.spec.nics[0], ingress=ingress,
                                               egress=egress),))
    box.driver.create(box.spec, box.rootfs)
    if start:
        box.driver.start(box.name)
    return box


def port(box: Box) -> str:
    return box.driver.port_name(box.name, 0)


def test_limits_in_the_definition_are_set_at_start_again_after_a_reboot_and_gone_at_stop(
        launch: Launcher) -> None:
    box = limited(launch, ingress=LIMIT, egress=2 * LIMIT)
    rl = box.driver.rates()
    assert rl.read(port(box)) == Rates(LIMIT, 2 * LIMIT)
    box.driver.reboot(box.name)
    assert rl.read(port(box)) == Rates(LIMIT, 2 * LIMIT)
    box.driver.stop(box.name, timeout=10)
    assert box.driver.state(box.name) is HostState.STOPPED
    assert port(box) not in links() and ifb_name(port(box)) not in links()
    box.driver.start(box.name)
    assert rl.read(port(box)) == Rates(LIMIT, 2 * LIMIT)
    box.driver.destroy(box.name)
    assert ifb_name(port(box)) not in links()


def sh(box: Box, script: str, timeout: float = 60) -> tuple[int, str]:
    r = box.driver.exec(box.name, ["sh", "-c", script], timeout=timeout)
    return r.exit_code, (r.stdout + r.stderr).decode(errors="replace")


def download_rate(server: Box, client: Box, kib: int) -> float:
    """bits/s of one HTTP download of `kib` KiB from `server` to `client` (timed on the host
    around the whole wget: a transfer of seconds makes lxc-attach's few ms negligible)."""
    ip = server.spec.nics[0].ipv4
    start = time.monotonic()
    code, out = sh(client, f"wget -q -O /dev/null http://{ip}/f{kib}")
    took = time.monotonic() - start
    assert code == 0, out
    return kib * 1024 * 8 / took


def test_a_bandwidth_limit_measured_with_a_real_transfer_between_two_containers(
        launch: Launcher) -> None:
    server, client = launch(), launch()
    for kib in (1, SIZE_KIB, 10 * SIZE_KIB):
        assert sh(server, f"mkdir -p /srv && dd if=/dev/zero of=/srv/f{kib} bs=1k count={kib}"
                  " 2>/dev/null")[0] == 0
    assert sh(server, "(httpd -f -p 80 -h /srv </dev/null >/dev/null 2>&1 &)")[0] == 0
    ip = server.spec.nics[0].ipv4
    wait_for(lambda: sh(client, f"wget -q -O /dev/null http://{ip}/f1")[0] == 0, 15,
             "the server's httpd answering")

    free = download_rate(server, client, 10 * SIZE_KIB)
    # what the server sends: its egress, shaped on its port's ifb (set live)
    server.spec = replace(server.spec, nics=(replace(server.spec.nics[0], egress=LIMIT),))
    server.driver.set_rates(server.spec, server.spec.nics[0])
    out_rate = download_rate(server, client, SIZE_KIB)
    # what the client receives: its ingress, shaped at its port's root
    server.spec = replace(server.spec, nics=(replace(server.spec.nics[0], egress=0),))
    server.driver.set_rates(server.spec, server.spec.nics[0])
    client.spec = replace(client.spec, nics=(replace(client.spec.nics[0], ingress=LIMIT),))
    client.driver.set_rates(client.spec, client.spec.nics[0])
    in_rate = download_rate(server, client, SIZE_KIB)
    print(f"\nunlimited {free / 1e6:.0f} Mbit/s; egress limit {LIMIT / 1e6:.0f} Mbit: "
          f"{out_rate / 1e6:.2f} Mbit/s; ingress limit: {in_rate / 1e6:.2f} Mbit/s")
    for rate in (out_rate, in_rate):
        assert LIMIT / 3 < rate < LIMIT * 1.5
    assert free > 5 * LIMIT
