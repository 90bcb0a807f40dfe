"""Public addresses through the real CLI on a real `lxcloud up` with a real container: an address
pool on a veth standing in for the host's public interface, an outside namespace beyond it. The
outside reaches the container by its address once the default group lets it in, the container
goes out as its address, a port forward reaches it on another address; refusals are one clear
line; disassociating and removing the forward stop the traffic; everything is released."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Cloud
from tests.e2e.test_cli_storage import refused, sh
from tests.integration.outside import Outside, addresses, outside_world
from tests.waiting import wait_for

HELLO = "#!/bin/sh\necho instance\n"


@pytest.fixture(scope="module")
def world() -> Iterator[Outside]:
    with outside_world() as w:
        yield w


def serve_hello(cloud: Cloud, name: str) -> None:
    """`name` answers "instance" on TCP 7000."""
    sh(cloud, name, f"printf '{HELLO}' > /hello && chmod +x /hello && "
                    "(setsid nc -ll -p 7000 -e /hello </dev/null >/dev/null 2>&1 &)")


def test_addresses_and_port_forwards_through_the_cli(cloud: Cloud, world: Outside) -> None:
    cloud.cli("image", "build", "busybox", timeout=300)
    made = cloud.cli("address", "pool", "create", "public", "--interface", world.interface,
                     "--range", world.range).stdout
    assert f"{world.public(0)}-{world.public(10)} on {world.interface}, 11 addresses" in made
    refused(cloud.cli("address", "pool", "create", "other", "--interface", "nope0x",
                      "--range", world.range, check=False), "nope0x")
    cloud.cli("launch", "busybox", "web", "--memory", "64MiB", "--wait")
    serve_hello(cloud, "web")
    private = cloud.json("show", "web")["ipv4"]  # type: ignore[index]
    wait_for(lambda: world.ask(private, 7000, ns=None) == "instance", 20, "the server inside")
    cloud.cli("secgroup", "rule", "add", "default", "--direction", "ingress", "--protocol", "tcp",
              "--port", "7000")

    front: Any = cloud.json("address", "allocate", "--name", "front")
    assert front["address"] == world.public(0) and not front["associated"]
    said = cloud.cli("address", "associate", "front", "web").stdout
    assert said.strip() == f"associated {front['address']} with web (eth0 {private})"
    assert f"{front['address']}/32" in addresses(world.interface)
    assert world.ask(front["address"], 7000) == "instance"
    out = sh(cloud, "web", f"nc {world.ip} 7001 </dev/null").stdout.strip()
    assert out == f"outside {front['address']}"
    shown: Any = cloud.json("address", "show", "front")
    assert (shown["instance"], shown["private_ip"]) == ("web", private)
    table = cloud.cli("address", "list").stdout
    assert front["address"] in table and "web (eth0" in table
    refused(cloud.cli("address", "release", "front", check=False), "disassociate it first")
    refused(cloud.cli("port-forward", "add", "front", "22", "web", check=False),
            "disassociate it to forward ports")

    shared: Any = cloud.json("address", "allocate")
    fwd: Any = cloud.json("port-forward", "add", shared["address"], "8080", "web",
                          "--target-port", "7000")
    assert (fwd["port"], fwd["target_port"], fwd["private_ip"]) == (8080, 7000, private)
    assert world.ask(shared["address"], 8080) == "instance"
    assert [f["id"] for f in cloud.json("port-forward", "list")] == [fwd["id"]]  # type: ignore[union-attr]
    refused(cloud.cli("port-forward", "add", shared["id"], "8080", "web", check=False),
            "already forwarded")
    cloud.cli("port-forward", "remove", f"{shared['address']}:8080")
    assert world.ask(shared["address"], 8080).startswith("error")
    assert cloud.json("port-forward", "list") == []

    cloud.cli("address", "disassociate", "front")
    assert world.ask(front["address"], 7000).startswith("error")
    assert sh(cloud, "web", f"nc {world.ip} 7001 </dev/null").stdout.strip() == \
        f"outside {world.host_ip}"
    refused(cloud.cli("address", "pool", "delete", "public", check=False), "release them first")
    cloud.cli("address", "release", "front")
    cloud.cli("address", "release", shared["id"])
    assert cloud.json("address", "list") == []
    cloud.cli("delete", "web", "--force")
    cloud.cli("address", "pool", "delete", "public")
    assert addresses(world.interface) == [f"{world.host_ip}/{world.prefix}"]
