"""REST /api/v1/security-groups over the services and the fake node: groups, rules, an instance's
groups, the status codes; another project's groups are "not found"; and the CLI's rule flags."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from lxcloud.cli.secgroups import rule_body, rule_text
from tests.unit.api.rest.test_instances import launch
from tests.unit.api.rest.test_tenancy import member

SSH = {"direction": "ingress", "protocol": "tcp", "port_from": 22, "port_to": 22,
       "cidr": "192.0.2.0/24"}


def test_groups_rules_and_instances(api: TestClient, image: Any) -> None:
    r = api.post("/api/v1/security-groups", json={"name": "web", "description": "w"})
    assert r.status_code == 201, r.text
    web = r.json()
    assert [(x["direction"], x["protocol"], x["cidr"]) for x in web["rules"]] == \
        [("egress", "all", "0.0.0.0/0")]
    assert api.post("/api/v1/security-groups", json={"name": "web"}).status_code == 409
    assert api.post("/api/v1/security-groups", json={"name": "sg-x"}).status_code == 400
    assert api.post("/api/v1/security-groups/web/rules", json=SSH).status_code == 201
    dup = api.post("/api/v1/security-groups/web/rules", json={**SSH, "cidr": "192.0.2.7/24"})
    assert dup.status_code == 409, dup.text         # the same rule, spelt otherwise
    bad = api.post("/api/v1/security-groups/web/rules", json={**SSH, "port_to": 70000})
    assert bad.status_code == 400 and "port" in bad.json()["error"]
    grp = api.post("/api/v1/security-groups/web/rules",
                   json={"direction": "ingress", "protocol": "icmp", "source_group": "web"}).json()
    icmp = next(x for x in grp["rules"] if x["protocol"] == "icmp")
    assert (icmp["port_from"], icmp["port_to"], icmp["source_group"], icmp["source_group_name"]) \
        == (-1, -1, web["id"], "web")
    names = [g["name"] for g in api.get("/api/v1/security-groups").json()]
    assert names == ["default", "web"]
    default = api.get("/api/v1/security-groups/default").json()
    assert {(x["direction"], x["source_group"] or x["cidr"]) for x in default["rules"]} == \
        {("egress", "0.0.0.0/0"), ("ingress", default["id"])}
    # an instance: the default group unless named; its groups set at once
    plain = launch(api, name="plain")["instance"]
    assert [g["name"] for g in api.get(f"/api/v1/instances/{plain['id']}/security-groups"
                                       ).json()] == ["default"]
    r = api.post("/api/v1/instances", json={"image": "bb", "name": "w1",
                                            "security_groups": ["web"]})
    assert r.status_code == 202, r.text
    assert [g["name"] for g in api.get("/api/v1/instances/w1/security-groups").json()] == ["web"]
    assert api.post("/api/v1/instances", json={"image": "bb", "name": "w2",
                                               "security_groups": ["nope"]}).status_code == 404
    r = api.put("/api/v1/instances/plain/security-groups", json={"groups": ["web", "default"]})
    assert r.status_code == 200 and [g["name"] for g in r.json()] == ["web", "default"]
    assert api.put("/api/v1/instances/plain/security-groups", json={"groups": []}
                   ).status_code == 400
    in_use = api.delete("/api/v1/security-groups/web")
    assert in_use.status_code == 409 and plain["id"] in in_use.json()["error"]
    assert api.delete("/api/v1/security-groups/default").status_code == 409
    # remove a rule by what it says
    r = api.request("DELETE", "/api/v1/security-groups/web/rules", json=SSH)
    assert r.status_code == 200 and len(r.json()["rules"]) == 2
    assert api.request("DELETE", "/api/v1/security-groups/web/rules", json=SSH).status_code == 404
    # another project's group is not found; its own default is its own
    bob = member(api, "bob", "blue")
    assert bob.get("/api/v1/security-groups/web").status_code == 404
    assert bob.get(f"/api/v1/security-groups/{web['id']}").status_code == 404
    assert bob.get("/api/v1/security-groups/default").json()["id"] != default["id"]
    # an admin setting a member's instance's groups names that project's groups
    bobs = launch(bob, name="bobs")["instance"]
    bob_default = bob.get("/api/v1/security-groups/default").json()["id"]
    r = api.put(f"/api/v1/instances/{bobs['id']}/security-groups", json={"groups": ["default"]})
    assert r.status_code == 200 and [g["id"] for g in r.json()] == [bob_default]
    assert [g["id"] for g in api.get(f"/api/v1/instances/{bobs['id']}/security-groups").json()
            ] == [bob_default]
    assert api.put(f"/api/v1/instances/{bobs['id']}/security-groups",
                   json={"groups": ["web"]}).status_code == 404    # the admin's, not blue's


def test_cli_rule_flags() -> None:
    assert rule_body("ingress", "tcp", 22, None, None, None, None, None, "") == {
        "direction": "ingress", "protocol": "tcp", "port_from": 22, "port_to": 22, "cidr": None,
        "source_group": None, "description": ""}
    ranged = rule_body("ingress", "udp", None, "1000-2000", "10.0.0.0/8", None, None, None, "")
    assert (ranged["port_from"], ranged["port_to"]) == (1000, 2000)
    icmp = rule_body("ingress", "all", None, None, None, "web", 8, None, "")
    assert (icmp["protocol"], icmp["port_from"], icmp["port_to"]) == ("icmp", 8, -1)
    assert rule_text({"direction": "egress", "protocol": "tcp", "port_from": 0,
                      "port_to": 65535, "cidr": "0.0.0.0/0"}) == "egress tcp to 0.0.0.0/0"
    assert rule_text({"direction": "ingress", "protocol": "icmp", "port_from": 8, "port_to": 0,
                      "cidr": None, "source_group_name": "web"}) == \
        "ingress icmp type 8 code 0 from group web"
