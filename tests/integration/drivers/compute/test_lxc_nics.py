"""NIC hot-plug in real LXC containers: a NIC attached to a running container appears at once (up
and unconfigured without an address, configured with one), its definition keeps it across a
restart, and detaching it leaves no host port behind."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace

import pytest

from lxcloud.core.errors import InvalidInput
from lxcloud.core.instance import InstanceSpec, Nic
from lxcloud.core.proc import run
from lxcloud.drivers.compute.lxc import LxcDriver
from tests.integration.conftest import Box, BridgeNet, Launcher, make_bridge, wait_for

pytestmark = pytest.mark.root


@pytest.fixture
def bridge2() -> Iterator[BridgeNet]:
    with make_bridge() as b:
        yield b


def sh(box: Box, script: str) -> tuple[int, str]:
    r = box.driver.exec(box.name, ["sh", "-c", script], timeout=30)
    return r.exit_code, (r.stdout + r.stderr).decode(errors="replace")


def host_link(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def nic_on(bridge: BridgeNet, name: str, *, address: bool) -> Nic:
    ip, _, prefix = bridge.address().partition("/") if address else (None, "", "24")
    return Nic(network="net-two", mac="02:01:" + secrets.token_bytes(4).hex(":"), ipv4=ip,
               prefix=int(prefix), gateway=bridge.gateway, link=bridge.name, name=name)


def plug(box: Box, nic: Nic) -> InstanceSpec:
    """`nic` attached as the services do: the definition rewritten, then the running container."""
    spec = replace(box.spec, nics=(*box.spec.nics, nic))
    box.driver.create(spec, box.rootfs)
    box.driver.attach_nic(spec, nic)
    box.spec = spec
    return spec


def unplug(box: Box, nic: Nic) -> None:
    spec = replace(box.spec, nics=tuple(n for n in box.spec.nics if n.name != nic.name))
    box.driver.detach_nic(box.spec, nic)
    box.driver.create(spec, box.rootfs)
    box.spec = spec


def restart(box: Box) -> None:
    box.driver.stop(box.name, timeout=10)
    box.driver.start(box.name)


def addresses(box: Box, ifname: str) -> tuple[bool, list[str], str]:
    """(up, IPv4 addresses, MAC) of `ifname` inside the container."""
    code, out = sh(box, f"ip -o link show {ifname}; ip -o -4 addr show dev {ifname}")
    assert code == 0, out
    lines = out.splitlines()
    up = "state UP" in lines[0] or ",UP" in lines[0]
    mac = lines[0].split("link/ether ")[1].split()[0]
    return up, [ln.split()[3] for ln in lines[1:] if " inet " in ln], mac


def test_hot_attached_nic_without_address_is_up_and_unconfigured_and_survives_restart(
        launch: Launcher, bridge2: BridgeNet) -> None:
    box = launch()
    nic = nic_on(bridge2, "eth1", address=False)
    plug(box, nic)
    port = box.driver.port_name(box.name, 1)
    assert host_link(port)
    assert f"master {bridge2.name}" in run(["ip", "link", "show", port]).stdout.decode()
    assert addresses(box, "eth1") == (True, [], nic.mac)
    routes = sh(box, "ip route show default")[1]
    assert "eth0" in routes and "eth1" not in routes        # eth0 keeps the default route
    restart(box)
    assert addresses(box, "eth1") == (True, [], nic.mac)
    assert host_link(port)


def test_a_reboot_after_a_hot_plug_keeps_the_nic(launch: Launcher, bridge2: BridgeNet) -> None:
    # liblxc reboots with the config it started with: the driver must not let it lose the NIC
    box = launch()
    nic = nic_on(bridge2, "eth1", address=True)
    plug(box, nic)
    box.driver.reboot(box.name)
    assert addresses(box, "eth1") == (True, [nic.interface], nic.mac)
    box.driver.reboot(box.name)            # unchanged since its start: liblxc's own reboot
    assert addresses(box, "eth1") == (True, [nic.interface], nic.mac)


def test_hot_attached_nic_with_address_is_configured_reaches_its_network_and_survives_restart(
        launch: Launcher, bridge: BridgeNet, bridge2: BridgeNet) -> None:
    box = launch()
    nic = nic_on(bridge2, "eth1", address=True)
    plug(box, nic)
    assert addresses(box, "eth1") == (True, [nic.interface], nic.mac)
    wait_for(lambda: sh(box, f"ping -c 1 -W 1 {bridge2.gateway}")[0] == 0, 10,
             "the new NIC's network answering")
    assert sh(box, f"ping -c 1 -W 1 {bridge.gateway}")[0] == 0      # eth0 still works
    assert sh(box, "ip route show default")[1].count("default") == 1
    restart(box)
    assert addresses(box, "eth1") == (True, [nic.interface], nic.mac)
    wait_for(lambda: sh(box, f"ping -c 1 -W 1 {bridge2.gateway}")[0] == 0, 10,
             "the NIC's network answering after a restart")
    assert "via " + bridge.gateway in sh(box, "ip route show default")[1]


def test_detach_removes_the_interface_and_its_host_port_and_stays_detached(
        launch: Launcher, bridge2: BridgeNet) -> None:
    box = launch()
    nic = nic_on(bridge2, "eth1", address=True)
    plug(box, nic)
    port = box.driver.port_name(box.name, 1)
    unplug(box, nic)
    assert not host_link(port)
    assert sh(box, "ip link show eth1")[0] != 0
    box.driver.detach_nic(replace(box.spec, nics=(*box.spec.nics, nic)), nic)   # again: no-op
    restart(box)
    assert sh(box, "ip link show eth1")[0] != 0
    assert not host_link(port)


def test_a_nic_keeps_its_port_when_one_before_it_is_detached(launch: Launcher,
                                                               bridge2: BridgeNet) -> None:
    box = launch()
    eth1, eth2 = nic_on(bridge2, "eth1", address=False), nic_on(bridge2, "eth2", address=True)
    plug(box, eth1)
    plug(box, eth2)
    unplug(box, eth1)
    port2 = box.driver.port_name(box.name, 2)
    assert host_link(port2) and not host_link(box.driver.port_name(box.name, 1))
    restart(box)
    assert host_link(port2) and not host_link(box.driver.port_name(box.name, 1))
    assert addresses(box, "eth2") == (True, [eth2.interface], eth2.mac)


def test_attach_to_a_missing_bridge_or_a_taken_name_leaves_nothing(launch: Launcher,
                                                                   bridge2: BridgeNet) -> None:
    box = launch()
    d: LxcDriver = box.driver
    ghost = replace(nic_on(bridge2, "eth1", address=True), link="lxtbrnothere")
    spec = replace(box.spec, nics=(*box.spec.nics, ghost))
    with pytest.raises(InvalidInput, match="lxtbrnothere"):
        d.attach_nic(spec, ghost)
    assert not host_link(d.port_name(box.name, 1))
    assert sh(box, "ip link show eth1")[0] != 0
    # a NIC named like one the container has (eth0) under another slot's port
    clash = replace(nic_on(bridge2, "eth0", address=False))
    other = replace(box.spec, nics=(clash,))
    d.attach_nic(other, clash)            # eth0 is there already: nothing to do
    assert sh(box, "ip -o link show | grep -c eth0")[1].strip() == "1"
    with pytest.raises(InvalidInput):
        d.attach_nic(box.spec, replace(clash, name="eth9"))   # not in the spec
    # nothing made for it: no host port of its slot, no eth9 inside (the host's other links are
    # not compared: other clouds and tests change them meanwhile)
    assert not host_link(d.port_name(box.name, 9))
    assert sh(box, "ip link show eth9")[0] != 0


def reboot_from_inside(box: Box) -> None:
    old = box.driver.init_pid(box.name)
    box.driver.exec(box.name, ["reboot"], timeout=10)
    wait_for(lambda: box.driver.init_pid(box.name) not in (None, old), 30,
             "the container coming back from its own reboot")
    wait_for(lambda: sh(box, "true")[0] == 0, 30, "the rebooted container answering")


def test_a_reboot_from_inside_keeps_a_hot_plugged_nic_and_not_a_detached_one(
        launch: Launcher, bridge2: BridgeNet) -> None:
    # liblxc's monitor reboots with the config of the start: the start-host hook resyncs
    box = launch()
    eth1 = nic_on(bridge2, "eth1", address=True)
    eth2 = nic_on(bridge2, "eth2", address=False)
    plug(box, eth1)
    reboot_from_inside(box)
    assert addresses(box, "eth1") == (True, [eth1.interface], eth1.mac)
    assert sh(box, "ip route show default")[1].count("default") == 1
    plug(box, eth2)
    unplug(box, eth1)
    restart(box)                      # a start from the definition: nothing to resync
    plug(box, eth1)
    unplug(box, eth2)                 # eth2 was in the config of this start: must not come back
    reboot_from_inside(box)
    assert addresses(box, "eth1") == (True, [eth1.interface], eth1.mac)
    assert sh(box, "ip link show eth2")[0] != 0
    assert not host_link(box.driver.port_name(box.name, 2))
