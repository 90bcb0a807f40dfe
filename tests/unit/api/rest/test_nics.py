"""NICs over REST on the fake node: hot attach (with the next free address, a fixed one, or none)
and detach, on running and stopped instances, checked before any row; bandwidth limits at launch,
from the type and changed later; macvlan NICs that cannot be limited are refused."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from lxcloud.core.errors import DriverError
from lxcloud.core.instance import Nic
from lxcloud.core.instance_types import InstanceType
from lxcloud.drivers.network.fake import FakeNetwork
from lxcloud.drivers.network.macvlan import MacvlanDriver
from lxcloud.services.cloud import Cloud
from tests.unit.api.rest.test_instances import launch
from tests.unit.api.rest.test_networks import create, error
from tests.unit.api.rest.test_tenancy import member
from tests.unit.fakes import FakeNode


def done(api: TestClient, r: Any) -> dict[str, Any]:
    """The answer of a NIC call, once its operation ended (asserted a success)."""
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    op = api.get(f"/api/v1/operations/{body['operation']['id']}", params={"wait": 10}).json()
    assert op["status"] == "success", op
    body["instance"] = api.get(f"/api/v1/instances/{body['instance']['id']}").json()
    return body


def attach(api: TestClient, inst: str, network: str, **kw: Any) -> Any:
    return api.post(f"/api/v1/instances/{inst}/nics", json={"network": network, **kw},
                    params={"wait": 10})


@pytest.fixture
def web(api: TestClient, image: Any) -> dict[str, Any]:
    create(api, "back", "10.252.20.0/24", dns_domain="back.lan")
    return launch(api, name="web")["instance"]  # type: ignore[no-any-return]


def test_attach_to_a_running_instance_comes_with_an_address_dns_and_its_definition(
        api: TestClient, node: FakeNode, web: dict[str, Any]) -> None:
    out = done(api, attach(api, "web", "back"))
    nic = out["nic"]
    assert (nic["name"], nic["network"], nic["ipv4"]) == ("eth1", "back", "10.252.20.2")
    assert nic["id"].startswith("eni-") and nic["mac"]
    assert [n["name"] for n in out["instance"]["nics"]] == ["eth0", "eth1"]
    assert set(node.compute.plugged(web["id"])) == {"eth0", "eth1"}
    assert [n.name for n in node.compute._get(web["id"]).spec.nics] == ["eth0", "eth1"]
    assert any(h.get("web") == "10.252.20.2" for h in node.fake_dns.hosts.values())
    # the new NIC has the instance's groups (those of eth0)
    assert nic["security_groups"] == out["instance"]["nics"][0]["security_groups"]
    listed = api.get(f"/api/v1/instances/{web['id']}/nics").json()
    assert [n["name"] for n in listed] == ["eth0", "eth1"]


def test_attach_without_an_address_and_with_a_fixed_one(api: TestClient, node: FakeNode,
                                                       web: dict[str, Any]) -> None:
    create(api, "third", "10.252.21.0/24")
    bare = done(api, attach(api, "web", "back", no_ip=True))["nic"]
    assert bare["ipv4"] is None and bare["mac"]
    fixed = done(api, attach(api, "web", "third", ip="10.252.21.77"))["nic"]
    assert (fixed["name"], fixed["ipv4"]) == ("eth2", "10.252.21.77")
    assert node.compute.plugged(web["id"])["eth1"].ipv4 is None


@pytest.mark.parametrize("body, status, words", [
    ({"network": "nowhere"}, 404, "not found"),
    ({"network": "back", "ip": "10.9.9.9"}, 400, "outside network"),
    ({"network": "back", "ip": "10.252.20.1"}, 400, "reserved"),
    ({"network": "back", "ip": "10.252.20.5", "no_ip": True}, 400, "no --ip"),
    ({"network": "default"}, 400, "one NIC per network"),
])
def test_bad_attaches_are_refused_before_anything_changes(
        api: TestClient, node: FakeNode, web: dict[str, Any], body: dict[str, Any],
        status: int, words: str) -> None:
    assert words in error(api.post("/api/v1/instances/web/nics", json=body), status)
    assert set(node.compute.plugged(web["id"])) == {"eth0"}
    assert len(api.get("/api/v1/instances/web").json()["nics"]) == 1


def test_a_taken_address_is_a_conflict(api: TestClient, web: dict[str, Any]) -> None:
    launch(api, name="other", nics=[{"network": "back", "ip": "10.252.20.9"}])
    assert "already in use" in error(attach(api, "web", "back", ip="10.252.20.9"), 409)
    assert len(api.get("/api/v1/instances/web").json()["nics"]) == 1


def test_a_host_failure_gives_the_address_back(api: TestClient, node: FakeNode,
                                               web: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> None:
        raise DriverError("veth boom")

    monkeypatch.setattr(node.compute, "attach_nic", boom)
    r = attach(api, "web", "back")
    op = api.get(f"/api/v1/operations/{r.json()['operation']['id']}",
                 params={"wait": 10}).json()
    assert op["status"] == "failure" and "veth boom" in op["error"]
    assert len(api.get("/api/v1/instances/web").json()["nics"]) == 1
    assert [n.name for n in node.compute._get(web["id"]).spec.nics] == ["eth0"]   # undone
    monkeypatch.undo()
    assert done(api, attach(api, "web", "back"))["nic"]["ipv4"] == "10.252.20.2"   # free again


def test_detach_frees_the_address_and_eth0_stays(api: TestClient, node: FakeNode,
                                                 web: dict[str, Any]) -> None:
    done(api, attach(api, "web", "back"))
    assert "primary interface" in error(api.delete("/api/v1/instances/web/nics/eth0"), 400)
    assert error(api.delete("/api/v1/instances/web/nics/eth7"), 404)
    out = done(api, api.delete("/api/v1/instances/web/nics/eth1", params={"wait": 10}))
    assert [n["name"] for n in out["instance"]["nics"]] == ["eth0"]
    assert set(node.compute.plugged(web["id"])) == {"eth0"}
    assert not any(h.get("web") for h in node.fake_dns.hosts.values()
                   if "10.252.20" in str(h))
    # the address is free again, and the name eth1 too
    again = done(api, attach(api, "web", "back"))["nic"]
    assert (again["name"], again["ipv4"]) == ("eth1", "10.252.20.2")


def test_a_stopped_instance_gets_its_nic_at_the_next_start(api: TestClient, node: FakeNode,
                                                           web: dict[str, Any]) -> None:
    r = api.post("/api/v1/instances/web/actions/stop", params={"wait": 10})
    assert r.status_code == 202, r.text
    done(api, attach(api, "web", "back"))
    assert [n.name for n in node.compute._get(web["id"]).spec.nics] == ["eth0", "eth1"]
    assert api.post("/api/v1/instances/web/actions/start", params={"wait": 10}).status_code == 202
    assert set(node.compute.plugged(web["id"])) == {"eth0", "eth1"}


def test_another_projects_instance_is_not_found(api: TestClient, web: dict[str, Any]) -> None:
    bob = member(api, "bob", "blue")
    assert error(bob.post("/api/v1/instances/web/nics", json={"network": "default"}), 404)
    assert error(bob.delete("/api/v1/instances/web/nics/eth1"), 404)


def test_too_many_nics_are_refused(api: TestClient, cloud: Cloud, web: dict[str, Any],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    caps = cloud.instances.caps
    compute = {k: replace(v, max_nics=1) for k, v in caps.compute.items()}
    monkeypatch.setattr(cloud.instances, "_caps", replace(caps, compute=compute))
    assert "at most 1" in error(attach(api, "web", "back"), 422)


# --- bandwidth limits
def test_launch_limits_every_nic_and_they_change_later(api: TestClient, node: FakeNode,
                                                       image: Any) -> None:
    create(api, "back", "10.252.22.0/24")
    inst = launch(api, name="lim", ingress="10Mbit", egress="512Kbit",
                  nics=[{"network": "default"}, {"network": "back"}])["instance"]
    assert [(n["ingress"], n["egress"]) for n in inst["nics"]] == [(10**7, 512_000)] * 2
    assert [(n.ingress, n.egress) for n in node.requests[inst["id"]].nics] == [(10**7, 512_000)] * 2
    out = done(api, api.patch("/api/v1/instances/lim/nics/eth1", json={"egress": "1Gbit"},
                              params={"wait": 10}))
    assert (out["nic"]["ingress"], out["nic"]["egress"]) == (10**7, 10**9)
    assert node.compute.plugged(inst["id"])["eth1"].egress == 10**9
    assert ("set_rates", inst["id"]) in node.compute.calls
    # an attached NIC gets the instance's limits
    create(api, "third", "10.252.23.0/24")
    nic = done(api, attach(api, "lim", "third"))["nic"]
    assert (nic["ingress"], nic["egress"]) == (10**7, 512_000)


@pytest.mark.parametrize("body, words", [
    ({"ingress": "fast"}, "not a rate"), ({"egress": "-1Mbit"}, "not a rate"),
    ({"egress": "4bit"}, "smallest"), ({"ingress": "900Gbit"}, "100Gbit"),
])
def test_bad_rates_are_refused(api: TestClient, image: Any, body: dict[str, Any],
                               words: str) -> None:
    assert words in error(api.post("/api/v1/instances", json={"image": "bb", **body}), 400)
    assert api.get("/api/v1/instances").json() == []


def test_the_type_gives_the_limits_unless_asked(api: TestClient, image: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from lxcloud.core import instance_types

    slow = InstanceType("t3.slow", 1, 256 << 20, 512, 2 << 30, ingress=20_000_000,
                        egress=5_000_000)
    monkeypatch.setitem(instance_types._BY_NAME, "t3.slow", slow)
    inst = launch(api, name="typed", instance_type="t3.slow")["instance"]
    assert (inst["nics"][0]["ingress"], inst["nics"][0]["egress"]) == (20_000_000, 5_000_000)
    own = launch(api, name="own", instance_type="t3.slow", egress="0")["instance"]
    assert (own["nics"][0]["ingress"], own["nics"][0]["egress"]) == (20_000_000, 0)


def test_a_macvlan_nic_cannot_be_limited(api: TestClient, cloud: Cloud, node: FakeNode,
                                         image: Any) -> None:
    node.networks["macvlan"] = FakeNetwork(MacvlanDriver.caps)
    cloud.instances.forget_caps()
    create(api, "lan", "10.252.24.0/24", driver="macvlan", parent="eth0")
    r = api.post("/api/v1/instances", json={"image": "bb", "name": "direct", "egress": "1Mbit",
                                            "nics": [{"network": "lan"}]})
    assert "no host port to limit" in error(r, 422)
    inst = launch(api, name="direct", nics=[{"network": "lan"}])["instance"]
    assert inst["nics"][0]["driver"] == "macvlan"
    assert "no host port" in error(api.patch("/api/v1/instances/direct/nics/eth0",
                                             json={"egress": "1Mbit"}), 422)
    # a NIC on it attached to a limited instance comes without limits
    lim = launch(api, name="lim", egress="1Mbit")["instance"]
    nic = done(api, attach(api, lim["id"], "lan"))["nic"]
    assert (nic["driver"], nic["egress"]) == ("macvlan", 0)


def test_nic_helpers() -> None:
    from lxcloud.services.nics import _free_index

    nics = [Nic(network="n", mac="", ipv4=None, name=f"eth{i}") for i in (0, 2)]
    assert _free_index(nics) == 1
    assert _free_index([*nics, Nic(network="n", mac="", ipv4=None, name="eth1")]) == 3
