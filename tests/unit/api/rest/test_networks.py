"""Networks over REST: a project's own, checked before anything is made, refused while in use,
invisible to other projects; launches with several NICs and fixed addresses."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from lxcloud.services.cloud import Cloud
from tests.unit.api.rest.test_instances import launch
from tests.unit.api.rest.test_tenancy import member
from tests.unit.fakes import FakeNode


def create(api: TestClient, name: str, subnet: str, **kw: Any) -> dict[str, Any]:
    r = api.post("/api/v1/networks", json={"name": name, "subnet": subnet, **kw})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def error(r: Any, status: int) -> str:
    assert r.status_code == status, r.text
    return str(r.json()["error"])


def test_create_show_update_delete(api: TestClient, node: FakeNode) -> None:
    n = create(api, "backend", "10.252.1.0/24", mode="routed", dns_domain="back.internal",
               dhcp_range="10.252.1.100-10.252.1.150")
    assert (n["subnet"], n["gateway"], n["mode"], n["dns_domain"], n["dhcp_range"]) == (
        "10.252.1.0/24", "10.252.1.1", "routed", "back.internal", "10.252.1.100-10.252.1.150")
    assert n["bridge"].startswith("lxcbr") and len(n["bridge"]) <= 15
    assert node.network.networks[n["bridge"]].mode == "routed"
    names = [x["name"] for x in api.get("/api/v1/networks").json()]
    assert names == ["default", "backend"]
    shown = api.get("/api/v1/networks/backend").json()
    assert shown["id"] == n["id"] and shown["instances"] == []
    assert api.get(f"/api/v1/networks/{n['id']}").json()["name"] == "backend"
    r = api.patch("/api/v1/networks/backend", json={"mode": "isolated", "host_ports": ["tcp/22"]})
    assert r.status_code == 200, r.text
    assert node.network.networks[n["bridge"]].mode == "isolated"
    assert node.network.networks[n["bridge"]].host_ports == ("tcp/22",)
    assert api.delete("/api/v1/networks/backend").status_code == 204
    assert n["bridge"] not in node.network.networks
    assert api.get("/api/v1/networks/backend").status_code == 404


@pytest.mark.parametrize("body, status, words", [
    ({"subnet": "10.252.2.0/33"}, 400, "invalid network"),
    ({"subnet": "10.252.2.5/24"}, 400, "invalid network"),
    ({"subnet": "10.252.2.0/24", "mode": "bridged"}, 400, "unknown network mode"),
    ({"subnet": "10.252.2.0/24", "gateway": "10.252.3.1"}, 400, "not a host address"),
    ({"subnet": "10.252.2.0/24", "dhcp_range": "10.252.2.9-10.252.3.2"}, 400, "not inside"),
    ({"subnet": "10.252.2.0/24", "dhcp_range": "10.252.2.9"}, 400, "FIRST-LAST"),
    ({"subnet": "10.252.2.0/24", "dns_domain": "bad_domain!"}, 400, "invalid DNS domain"),
    ({"subnet": "10.252.2.0/24", "host_ports": ["ssh"]}, 400, "tcp/PORT"),
    ({"subnet": "10.252.2.0/24", "driver": "vxlan"}, 400, "unknown network driver"),
    ({"subnet": "10.252.2.0/24", "driver": "macvlan"}, 400, "--parent"),
    ({"subnet": "10.251.7.0/24"}, 409, "overlaps network 'default'"),
    ({"subnet": "192.168.77.0/24"}, 409, "collides with the host's route"),
])
def test_bad_networks_are_refused_and_nothing_is_made(
        api: TestClient, node: FakeNode, body: dict[str, Any], status: int, words: str) -> None:
    node.host_routes.append(("eth0", "192.168.77.0/24"))
    before = dict(node.network.networks)
    assert words in error(api.post("/api/v1/networks", json={"name": "bad", **body}), status)
    assert node.network.networks == before
    assert [x["name"] for x in api.get("/api/v1/networks").json()] == ["default"]


def test_a_name_twice_and_a_host_failure_leave_nothing(api: TestClient, node: FakeNode) -> None:
    create(api, "web", "10.252.4.0/24")
    assert "already exists" in error(api.post("/api/v1/networks",
                                              json={"name": "web", "subnet": "10.252.5.0/24"}), 409)
    node.network.fail = "bridge boom"
    r = api.post("/api/v1/networks", json={"name": "broken", "subnet": "10.252.6.0/24"})
    assert r.status_code >= 500 and "bridge boom" in r.text
    node.network.fail = None
    assert api.get("/api/v1/networks/broken").status_code == 404
    assert create(api, "broken", "10.252.6.0/24")["name"] == "broken"   # the subnet is free again


def test_macvlan_needs_a_parent_the_host_has(api: TestClient, node: FakeNode) -> None:
    node.network_drivers_add("macvlan")
    r = api.post("/api/v1/networks", json={"name": "lan", "subnet": "10.252.7.0/24",
                                           "driver": "macvlan", "parent": "nope0"})
    assert "unknown parent interface 'nope0'" in error(r, 400)
    r = api.post("/api/v1/networks", json={"name": "lan", "subnet": "10.252.7.0/24",
                                           "driver": "macvlan", "parent": "eth0",
                                           "macvlan_mode": "passthru"})
    assert "unknown macvlan mode" in error(r, 400)
    n = create(api, "lan", "10.252.7.0/24", driver="macvlan", parent="eth0",
               macvlan_mode="private")
    assert (n["driver"], n["parent"], n["macvlan_mode"], n["bridge"]) == (
        "macvlan", "eth0", "private", "")


def test_launch_on_several_networks_with_fixed_addresses(api: TestClient, image: Any,
                                                         node: FakeNode) -> None:
    create(api, "front", "10.252.8.0/24")
    create(api, "back", "10.252.9.0/24", dns_domain="back.lan")
    out = launch(api, name="multi", nics=[{"network": "front", "ip": "10.252.8.50"},
                                          {"network": "back"}])
    inst = out["instance"]
    assert [(n["name"], n["network"], n["ipv4"]) for n in inst["nics"]] == [
        ("eth0", "front", "10.252.8.50"), ("eth1", "back", "10.252.9.2")]
    assert inst["ipv4"] == "10.252.8.50" and inst["mac"] == inst["nics"][0]["mac"]
    assert all(n["id"].startswith("eni-") for n in inst["nics"])
    spec = node.requests[inst["id"]]
    assert [n.link for n in spec.nics] == [api.get(f"/api/v1/networks/{x}").json()["bridge"]
                                           for x in ("front", "back")]
    assert spec.nics[1].search == ("back.lan",)
    # a taken, an outside and a reserved address; a network twice; an unknown network
    for nics, words in (([{"network": "front", "ip": "10.252.8.50"}], "already in use"),
                        ([{"network": "front", "ip": "10.252.9.7"}], "outside network"),
                        ([{"network": "front", "ip": "10.252.8.1"}], "reserved"),
                        ([{"network": "front"}, {"network": "front"}], "asked for twice"),
                        ([{"network": "nowhere"}], "not found")):
        r = api.post("/api/v1/instances", json={"image": "bb", "nics": nics})
        assert r.status_code in (400, 404, 409) and words in r.text, r.text
    assert len(api.get("/api/v1/instances").json()) == 1
    # in use: refused, naming the instance
    assert "in use by multi" in error(api.delete("/api/v1/networks/back"), 409)
    assert api.get("/api/v1/networks/back").json()["instances"] == ["multi"]
    assert api.delete(f"/api/v1/instances/{inst['id']}?force=true").status_code == 202


def test_an_exhausted_range_is_a_clear_error(api: TestClient, image: Any) -> None:
    create(api, "tiny", "10.252.10.0/24", dhcp_range="10.252.10.10-10.252.10.11")
    for ip in ("10.252.10.10", "10.252.10.11"):
        assert launch(api, nics=[{"network": "tiny"}])["instance"]["ipv4"] == ip
    r = api.post("/api/v1/instances", json={"image": "bb", "network": "tiny"})
    assert r.status_code == 507 and "no free address left" in r.text


def test_another_projects_network_is_not_found(api: TestClient, image: Any, cloud: Cloud) -> None:
    bob = member(api, "bob", "blue")
    eve = member(api, "eve", "red")
    create(bob, "private", "10.252.11.0/24")
    for ref in ("private", bob.get("/api/v1/networks/private").json()["id"]):
        assert eve.get(f"/api/v1/networks/{ref}").status_code == 404
        assert eve.delete(f"/api/v1/networks/{ref}").status_code == 404
        r = eve.post("/api/v1/instances", json={"image": "bb", "network": ref})
        assert r.status_code == 404
    assert "private" not in [n["name"] for n in eve.get("/api/v1/networks").json()]
    # eve may have her own "private" (names are per project), but not on bob's subnet
    r = eve.post("/api/v1/networks", json={"name": "private", "subnet": "10.252.11.0/25"})
    assert r.status_code == 409 and "another project" in r.text and "10.252.11" not in \
        r.json()["error"].split("overlaps")[1]
    create(eve, "private", "10.252.12.0/24")
    # the default network is the cloud's: everyone uses it, nobody but an admin changes it
    assert eve.patch("/api/v1/networks/default", json={"mode": "routed"}).status_code == 403
    assert "share" in error(eve.post("/api/v1/networks", json={
        "name": "all", "subnet": "10.252.13.0/24", "shared": True}), 403)
    shared = create(api, "common", "10.252.13.0/24", shared=True)
    assert shared["shared"] and "common" in [n["name"] for n in eve.get("/api/v1/networks").json()]
