"""Public addresses through the services on real containers: an address pool on a veth standing in
for the host's public interface, a namespace beyond it as the outside world. The outside reaches
a busybox container by its public address (ping and TCP) once its security group lets it in, the
container goes out as its public address, a port forward reaches it on another address,
disassociating stops it, and a controller restart brings the host back to the records.
Everything is removed afterwards."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from lxcloud.core.caller import Caller
from lxcloud.core.errors import Conflict
from lxcloud.services.cloud import Cloud
from lxcloud.services.instances import LaunchRequest, NicRequest
from lxcloud.services.networks import NetworkRequest
from lxcloud.services.security_groups import RuleSpec
from tests.integration.outside import Outside, addresses, outside_world
from tests.integration.services.stack import Stack, ok, running_stack, sh, wait
from tests.subnets import free_subnet
from tests.waiting import wait_for

pytestmark = pytest.mark.root

# busybox nc serves each connection with this script (a fixed answer naming the container)
HELLO = "#!/bin/sh\necho instance\n"


@pytest.fixture(scope="module")
def world() -> Iterator[Outside]:
    with outside_world() as w:
        yield w


@pytest.fixture(scope="module")
def stack(world: Outside) -> Iterator[Stack]:
    with running_stack("lxcloud-pub-") as st:
        yield st
    # its removal leaves no public address on the interface, and no table (nor chain) behind
    assert addresses(world.interface) == [f"{world.host_ip}/{world.prefix}"]
    assert subprocess.run(["nft", "list", "table", "inet", st.settings.nft_table],
                          capture_output=True).returncode != 0, "the cloud's table outlived it"


def launch_server(cloud: Cloud, name: str) -> str:
    """A busybox instance answering "instance" on TCP 7000; its private address."""
    [(inst, op)] = cloud.instances.launch(LaunchRequest(image="busybox", name=name,
                                                        memory="64MiB"))
    assert op is not None
    wait(cloud, op.id)
    ok(cloud, name, f"printf '{HELLO}' > /hello && chmod +x /hello && "
                    "(setsid nc -ll -p 7000 -e /hello </dev/null >/dev/null 2>&1 &)")
    ip = cloud.instances.get(name).nics[0].ipv4
    assert ip is not None
    return ip


def owner_of(cloud: Cloud, name: str) -> Caller:
    pid = cloud.instances.get(name).project_id or ""
    return Caller(user_id="system", user="system", project_id=pid, project="")


def allow(cloud: Cloud, name: str, *rules: RuleSpec) -> None:
    """The rules in the default group of `name`'s project (kept when already there)."""
    for r in rules:
        try:
            cloud.security_groups.add_rules("default", [r], owner_of(cloud, name))
        except Conflict:
            pass


def test_public_address_port_forward_and_restart(stack: Stack, world: Outside) -> None:
    c = stack.cloud
    pool = c.addresses.create_pool("public", world.interface, world.range)
    assert pool.cidr == f"{world.public(0).rsplit('.', 1)[0]}.0/24"   # the interface's network
    private = launch_server(c, "web")
    # the host reaches it (nothing outside does: the outside has no route to the subnet)
    wait_for(lambda: world.ask(private, 7000, ns=None) == "instance", 20, "the server inside")
    before = ok(c, "web", f"nc {world.ip} 7001 </dev/null").strip()
    assert before == f"outside {world.host_ip}"        # masqueraded behind the host

    addr = c.addresses.allocate()
    assert addr.address == world.public(0)
    assert world.ask(addr.address, 7000).startswith("error")
    c.addresses.associate(addr.id, "web")
    assert f"{addr.address}/32" in addresses(world.interface)
    # as on EC2, the instance's security groups still decide: the default one lets in only
    # its own members
    assert not world.ping(addr.address)
    assert world.ask(addr.address, 7000).startswith("error")
    allow(c, "web", RuleSpec("ingress", "tcp", 7000, 7000, cidr="0.0.0.0/0"),
          RuleSpec("ingress", "icmp", -1, -1, cidr="0.0.0.0/0"))
    assert world.ping(addr.address)
    assert world.ask(addr.address, 7000) == "instance"
    # going out, the container is its public address
    assert ok(c, "web", f"nc {world.ip} 7001 </dev/null").strip() == f"outside {addr.address}"

    # a port forward on a second address to the same container's port
    fwd_addr = c.addresses.allocate()
    fwd = c.addresses.add_forward(fwd_addr.id, "tcp", 8080, "web", target_port=7000)
    assert (fwd.address, fwd.private_ip) == (fwd_addr.address, private)
    assert world.ask(fwd_addr.address, 8080) == "instance"
    assert world.ask(fwd_addr.address, 7000).startswith("error")   # only the forwarded port

    # the controller restarts over a host that lost its public state: brought back from the records
    pools, _, _ = c.addresses.desired()
    c.node.teardown_public(pools)
    assert world.ask(addr.address, 7000).startswith("error")
    c = stack.restart_controller()
    assert world.ask(addr.address, 7000) == "instance"
    assert world.ask(fwd_addr.address, 8080) == "instance"

    # disassociated: the outside reaches it no more, and it goes out behind the host again
    c.addresses.disassociate(addr.id)
    assert f"{addr.address}/32" not in addresses(world.interface)
    assert world.ask(addr.address, 7000).startswith("error")
    assert not world.ping(addr.address)
    assert ok(c, "web", f"nc {world.ip} 7001 </dev/null").strip() == f"outside {world.host_ip}"
    c.addresses.remove_forward(fwd.id)
    assert world.ask(fwd_addr.address, 8080).startswith("error")
    assert addresses(world.interface) == [f"{world.host_ip}/{world.prefix}"]

    # terminating an associated instance takes its address off the host, and keeps it allocated
    c.addresses.associate(addr.id, "web")
    assert world.ask(addr.address, 7000) == "instance"
    wait(c, c.instances.delete("web", force=True).id)
    assert not c.addresses.get(addr.id).associated
    assert f"{addr.address}/32" not in addresses(world.interface)
    for a in (addr, fwd_addr):
        c.addresses.release(a.id)
    c.addresses.delete_pool("public")


def test_instances_reach_a_public_address_from_inside(stack: Stack, world: Outside) -> None:
    """Another network's instance and a neighbour on the same network reach a container through
    its public address, as the outside does; and the host's own address forwards a port."""
    c = stack.cloud
    c.addresses.create_pool("inside", world.interface, world.range)
    launch_server(c, "srv")
    owner = owner_of(c, "srv")
    allow(c, "srv", RuleSpec("ingress", "tcp", 7000, 7000, cidr="0.0.0.0/0"))
    side = c.networks.create(owner, NetworkRequest("side", free_subnet()))
    for name, net in (("near", None), ("far", side.name)):
        nics = (NicRequest(network=net),) if net else ()
        [(_, op)] = c.instances.launch(LaunchRequest(image="busybox", name=name, memory="64MiB",
                                                     nics=nics))
        assert op is not None
        wait(c, op.id)
    addr = c.addresses.allocate()
    c.addresses.associate(addr.id, "srv")
    assert world.ask(addr.address, 7000) == "instance"
    for name in ("far", "near"):
        code, out = sh(c, name, f"nc -w 3 {addr.address} 7000 </dev/null")
        assert out.strip() == "instance", (name, code, out)
    # the host's own address:port forwarded to the instance (an admin's)
    assert world.ask(world.host_ip, 2222).startswith("error")
    fwd = c.addresses.add_forward(world.host_ip, "tcp", 2222, "srv", target_port=7000)
    assert world.ask(world.host_ip, 2222) == "instance"
    c.addresses.remove_forward(fwd.id)
    assert world.ask(world.host_ip, 2222).startswith("error")
    assert f"{world.host_ip}/{world.prefix}" in addresses(world.interface)
    for name in ("srv", "near", "far"):
        wait(c, c.instances.delete(name, force=True).id)
    c.addresses.release(addr.id)
    c.addresses.delete_pool("inside")
    c.networks.delete(owner, "side")
