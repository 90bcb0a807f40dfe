"""Public addresses, pools and port forwards through REST over the services and a fake node:
the rules (quota, AWS's associate/release semantics, tenancy) and what reaches the host."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from lxcloud.drivers.network.publicnat import Association
from lxcloud.services.cloud import Cloud
from tests.unit.api.rest.test_instances import launch
from tests.unit.api.rest.test_tenancy import member
from tests.unit.fakes import FakeNode

POOL = {"name": "public", "interface": "eth0", "range": "192.0.2.10-192.0.2.13"}


def make_pool(api: TestClient, **kw: Any) -> dict[str, Any]:
    r = api.post("/api/v1/address-pools", json={**POOL, **kw})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def allocate(api: TestClient, **body: Any) -> dict[str, Any]:
    r = api.post("/api/v1/addresses", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_pools_are_checked_and_admin_only(api: TestClient, node: FakeNode) -> None:
    node.host_routes.append(("eth0", "192.0.2.0/24"))
    p = make_pool(api, gateway="192.0.2.13")
    assert (p["cidr"], p["size"], p["allocated"]) == ("192.0.2.0/24", 3, 0)
    assert api.get("/api/v1/address-pools/public").json()["id"] == p["id"]
    bad = [({"interface": "nope0"}, 400), ({"range": "192.0.2.20-192.0.2.10"}, 400),
           ({"range": "banana"}, 400), ({"name": "other", "range": "192.0.2.12-192.0.2.30"}, 409),
           ({"name": "dup"}, 409), ({"name": "in-net", "range": "10.251.7.3-10.251.7.4"}, 400),
           ({"name": "gw", "range": "198.51.100.1-198.51.100.2", "gateway": "192.0.2.1"}, 400),
           ({"name": "host", "range": "192.0.2.1-192.0.2.5"}, 400),
           ({"name": "over", "range": "10.251.6.250-10.251.8.1"}, 400)]
    for change, status in bad:
        body = {**POOL, **change}
        if change.get("name") == "dup":
            body["name"] = "public"
        r = api.post("/api/v1/address-pools", json=body)
        assert r.status_code == status, (change, r.text)
    bob = member(api, "bob", "blue")
    assert bob.post("/api/v1/address-pools", json={**POOL, "name": "b"}).status_code == 403
    assert bob.delete("/api/v1/address-pools/public").status_code == 403
    allocate(api)
    assert api.delete("/api/v1/address-pools/public").json()["code"] == "in_use"
    assert len(api.get("/api/v1/address-pools").json()) == 1


def test_allocate_associate_disassociate_release(api: TestClient, image: Any,
                                                 node: FakeNode) -> None:
    make_pool(api)
    inst = launch(api, name="web")["instance"]
    a = allocate(api, name="front")
    assert (a["address"], a["associated"], a["name"]) == ("192.0.2.10", False, "front")
    assert node.public_nat.associations == {}      # allocated only: nothing on the host

    r = api.post("/api/v1/addresses/front/associate", json={"instance": "web"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["instance_id"] == inst["id"] and got["nic"] == "eth0"
    assert got["private_ip"] == inst["ipv4"] and got["association_id"].startswith("eipassoc-")
    assert node.public_nat.associations == {
        "192.0.2.10": Association("192.0.2.10", inst["ipv4"], "eth0")}
    # found by id, address, association id and name alike
    for ref in (a["id"], "192.0.2.10", got["association_id"], "front"):
        assert api.get(f"/api/v1/addresses/{ref}").json()["id"] == a["id"]
    # associated: not released (AWS: disassociate first), nor forwarded
    r = api.delete("/api/v1/addresses/front")
    assert r.status_code == 409 and r.json()["code"] == "in_use"
    r = api.post("/api/v1/port-forwards", json={"address": "front", "port": 22,
                                                "instance": "web"})
    assert r.status_code == 409

    # a second address for the same NIC replaces the first (one public address per address)
    b = allocate(api)
    r = api.post(f"/api/v1/addresses/{b['id']}/associate", json={"instance": inst["id"]})
    assert r.status_code == 200
    assert api.get("/api/v1/addresses/front").json()["associated"] is False
    assert set(node.public_nat.associations) == {b["address"]}
    # taken elsewhere: refused unless reassociation is allowed
    other = launch(api, name="db")["instance"]
    r = api.post(f"/api/v1/addresses/{b['id']}/associate", json={"instance": "db"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    r = api.post(f"/api/v1/addresses/{b['id']}/associate",
                 json={"instance": "db", "allow_reassociation": True})
    assert r.status_code == 200 and r.json()["private_ip"] == other["ipv4"]
    assert node.public_nat.associations[b["address"]].private_ip == other["ipv4"]
    r = api.post(f"/api/v1/addresses/{b['id']}/associate",
                 json={"instance": "web", "private_ip": "10.9.9.9"})
    assert r.status_code == 400

    assert api.post(f"/api/v1/addresses/{b['id']}/disassociate").json()["associated"] is False
    assert api.post(f"/api/v1/addresses/{b['id']}/disassociate").status_code == 200   # no-op
    assert node.public_nat.associations == {}
    assert api.delete(f"/api/v1/addresses/{b['id']}").status_code == 204
    assert api.get(f"/api/v1/addresses/{b['id']}").status_code == 404
    assert [x["address"] for x in api.get("/api/v1/addresses").json()] == ["192.0.2.10"]


def test_quota_and_exhaustion(api: TestClient, cloud: Cloud) -> None:
    make_pool(api)                                    # 4 addresses
    cloud.settings.max_addresses_per_project = 2
    allocate(api)
    allocate(api, address="192.0.2.13")
    r = api.post("/api/v1/addresses", json={})
    assert r.status_code == 429 and r.json()["code"] == "quota_exceeded"
    bob = member(api, "bob", "blue")
    assert allocate(bob)["address"] == "192.0.2.11"
    assert bob.post("/api/v1/addresses", json={"address": "192.0.2.13"}).status_code == 409
    carol = member(api, "carol", "green")
    assert allocate(carol)["address"] == "192.0.2.12"
    r = carol.post("/api/v1/addresses", json={})
    assert r.status_code == 507 and r.json()["code"] == "exhausted"
    # tenancy: another project's address is not found, even by its IP
    assert bob.get("/api/v1/addresses/192.0.2.10").status_code == 404
    assert [a["address"] for a in bob.get("/api/v1/addresses").json()] == ["192.0.2.11"]
    assert len(api.get("/api/v1/addresses", params={"all_projects": True}).json()) == 4


def test_port_forwards_and_terminate(api: TestClient, image: Any, node: FakeNode,
                                     cloud: Cloud) -> None:
    make_pool(api)
    inst = launch(api, name="web")["instance"]
    a = allocate(api)
    r = api.post("/api/v1/port-forwards", json={"address": a["address"], "port": 8080,
                                                "instance": "web", "target_port": 80})
    assert r.status_code == 201, r.text
    f = r.json()
    assert (f["protocol"], f["private_ip"], f["target_port"]) == ("tcp", inst["ipv4"], 80)
    assert set(node.public_nat.forwards) == {(a["address"], "tcp", 8080)}
    r = api.post("/api/v1/port-forwards", json={"address": a["id"], "port": 8080,
                                                "instance": "web"})
    assert r.status_code == 409
    for bad in ({"protocol": "icmp"}, {"port": 0}, {"target_port": 70000}):
        body = {"address": a["id"], "port": 9000, "instance": "web", **bad}
        assert api.post("/api/v1/port-forwards", json=body).status_code == 400
    udp = api.post("/api/v1/port-forwards", json={"address": a["id"], "port": 8080,
                                                  "protocol": "udp", "instance": "web"}).json()
    # an address with forwards is neither associated nor released
    assert api.post(f"/api/v1/addresses/{a['id']}/associate",
                    json={"instance": "web"}).status_code == 409
    assert api.delete(f"/api/v1/addresses/{a['id']}").status_code == 409
    assert len(api.get("/api/v1/port-forwards", params={"instance": "web"}).json()) == 2
    assert api.delete(f"/api/v1/port-forwards/{udp['id']}").status_code == 204
    assert set(node.public_nat.forwards) == {(a["address"], "tcp", 8080)}

    # terminating the instance removes its forwards and disassociates its addresses
    b = allocate(api)
    api.post(f"/api/v1/addresses/{b['id']}/associate", json={"instance": "web"})
    r = api.delete("/api/v1/instances/web", params={"force": True})
    cloud.ops.wait(r.json()["operation"]["id"], 10)
    assert api.get("/api/v1/port-forwards").json() == []
    assert api.get(f"/api/v1/addresses/{b['id']}").json()["associated"] is False
    assert node.public_nat.associations == {} and node.public_nat.forwards == {}


def test_startup_brings_the_host_back_to_the_records(api: TestClient, image: Any,
                                                    node: FakeNode, cloud: Cloud) -> None:
    make_pool(api)
    launch(api, name="web")
    a = allocate(api)
    api.post(f"/api/v1/addresses/{a['id']}/associate", json={"instance": "web"})
    c = allocate(api)
    api.post("/api/v1/port-forwards", json={"address": c["id"], "port": 22, "instance": "web"})
    want = (dict(node.public_nat.associations), dict(node.public_nat.forwards))
    node.public_nat.teardown("t")
    node.public_nat.associations["192.0.2.99"] = Association("192.0.2.99", "10.0.0.9", "eth0")
    cloud.addresses.sync()
    assert (node.public_nat.associations, node.public_nat.forwards) == want


def test_metadata_tells_public_ipv4_once_associated(api: TestClient, image: Any,
                                                     cloud: Cloud) -> None:
    from lxcloud.api.metadata.app import meta_data_tree
    from lxcloud.api.metadata.lookup import make_lookup

    make_pool(api)
    inst = launch(api, name="web")["instance"]
    lookup = make_lookup(cloud)
    view = lookup(inst["ipv4"])
    assert view is not None and view.public_ipv4 is None
    assert "public-ipv4" not in meta_data_tree(view).entries
    a = allocate(api)
    api.post(f"/api/v1/addresses/{a['id']}/associate", json={"instance": "web"})
    view = lookup(inst["ipv4"])
    assert view is not None and view.public_ipv4 == a["address"]
    tree = meta_data_tree(view)
    assert tree.entries["public-ipv4"] == a["address"].encode()
    assert "public-ipv4" in tree.listing().decode().splitlines()


def test_detaching_a_nic_disassociates_its_address(api: TestClient, image: Any,
                                                   node: FakeNode) -> None:
    from tests.unit.api.rest.test_networks import create
    from tests.unit.api.rest.test_nics import attach, done

    make_pool(api)
    create(api, "back", "10.252.21.0/24")
    launch(api, name="web")
    nic = done(api, attach(api, "web", "back"))["nic"]
    a, b = allocate(api), allocate(api)
    api.post(f"/api/v1/addresses/{a['id']}/associate", json={"instance": "web"})
    r = api.post(f"/api/v1/addresses/{b['id']}/associate",
                 json={"instance": "web", "private_ip": nic["ipv4"]})
    assert r.json()["nic"] == "eth1"
    assert set(node.public_nat.associations) == {a["address"], b["address"]}
    done(api, api.delete("/api/v1/instances/web/nics/eth1", params={"wait": 10}))
    assert api.get(f"/api/v1/addresses/{b['id']}").json()["associated"] is False
    assert api.get(f"/api/v1/addresses/{a['id']}").json()["associated"] is True
    assert set(node.public_nat.associations) == {a["address"]}


def test_admins_forward_the_hosts_own_address(api: TestClient, image: Any,
                                              node: FakeNode) -> None:
    make_pool(api)
    launch(api, name="web")
    r = api.post("/api/v1/port-forwards", json={"address": "192.0.2.1", "port": 2222,
                                                "instance": "web", "target_port": 22})
    assert r.status_code == 201, r.text
    f = r.json()
    assert (f["address"], f["address_id"]) == ("192.0.2.1", None)
    assert node.public_nat.forwards[("192.0.2.1", "tcp", 2222)].interface == ""
    assert [x["id"] for x in api.get("/api/v1/port-forwards",
                                     params={"address": "192.0.2.1"}).json()] == [f["id"]]
    # not a host address, or one of a pool's (unallocated) range: not found
    for addr in ("203.0.113.77", "192.0.2.11"):
        r = api.post("/api/v1/port-forwards", json={"address": addr, "port": 2222,
                                                    "instance": "web"})
        assert r.status_code == 404, (addr, r.text)
    bob = member(api, "bob", "blue")
    launch(bob, name="bobs")
    r = bob.post("/api/v1/port-forwards", json={"address": "192.0.2.1", "port": 2223,
                                                "instance": "bobs"})
    assert r.status_code == 403
    assert api.delete(f"/api/v1/port-forwards/{f['id']}").status_code == 204
    assert node.public_nat.forwards == {}


def test_another_projects_addresses_and_instances_are_not_found(api: TestClient,
                                                               image: Any) -> None:
    make_pool(api)
    launch(api, name="web")
    mine = allocate(api)
    bob = member(api, "bob", "blue")
    launch(bob, name="bobs")
    his = allocate(bob)
    for call in (lambda: bob.post(f"/api/v1/addresses/{mine['id']}/associate",
                                  json={"instance": "bobs"}),
                 lambda: bob.post(f"/api/v1/addresses/{his['id']}/associate",
                                  json={"instance": "web"}),
                 lambda: bob.post(f"/api/v1/addresses/{mine['address']}/disassociate"),
                 lambda: bob.delete(f"/api/v1/addresses/{mine['id']}"),
                 lambda: bob.post("/api/v1/port-forwards", json={"address": his["id"],
                                                                 "port": 80, "instance": "web"})):
        r = call()
        assert r.status_code == 404, r.text
    assert api.get(f"/api/v1/addresses/{mine['id']}").json()["associated"] is False
    assert bob.post(f"/api/v1/addresses/{his['id']}/associate",
                    json={"instance": "bobs"}).status_code == 200


def test_a_macvlan_nic_has_no_public_address(api: TestClient, image: Any,
                                             node: FakeNode) -> None:
    from tests.unit.api.rest.test_networks import create

    make_pool(api)
    node.network_drivers_add("macvlan")
    create(api, "lan", "10.252.8.0/24", driver="macvlan", parent="eth0", macvlan_mode="bridge")
    launch(api, name="direct", network="lan")
    a = allocate(api)
    r = api.post(f"/api/v1/addresses/{a['id']}/associate", json={"instance": "direct"})
    assert r.status_code == 422 and "does not pass the host's NAT" in r.json()["error"], r.text
    assert node.public_nat.associations == {}
