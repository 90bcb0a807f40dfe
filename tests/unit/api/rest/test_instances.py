"""The REST API over the services and a fake node: contract, errors, auth, lifecycle, IPAM."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient

from lxcloud.core.host import HostState
from lxcloud.services.cloud import Cloud
from tests.unit.fakes import FakeNode


def launch(api: TestClient, **body: Any) -> dict[str, Any]:
    body.setdefault("image", "bb")
    r = api.post("/api/v1/instances", json=body)
    assert r.status_code == 202, r.text
    out = r.json()
    op = api.get(f"/api/v1/operations/{out['operation']['id']}", params={"wait": 10}).json()
    out["operation"] = op
    return out


def test_healthz_is_public_and_everything_else_needs_a_token(api: TestClient) -> None:
    anon = TestClient(api.app)
    assert anon.get("/healthz").status_code == 200
    for path in ("/api/v1/instances", "/api/v1/images", "/api/v1/nodes", "/metrics",
                 "/api/v1/instance-types", "/api/v1/operations/op-0"):
        r = anon.get(path)
        assert r.status_code == 401, path
        assert r.json()["code"] == "unauthorized"
    bad = anon.get("/api/v1/instances", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


def test_launch_runs_and_shows_every_contract_field(api: TestClient, image: Any,
                                                     node: FakeNode) -> None:
    out = launch(api, name="web1", instance_type="t3.nano", limits={"memory": "128MiB"})
    assert out["operation"]["status"] == "success", out["operation"]
    inst = api.get("/api/v1/instances/web1").json()
    for key in ("id", "name", "state", "image", "instance_type", "ipv4", "node", "created"):
        assert key in inst
    assert inst["state"] == "running"
    assert inst["image"] == "bb"
    assert inst["limits"]["memory"] == 128 * 1024**2
    assert inst["limits"]["cpus"] == 0.5
    assert inst["ipv4"].startswith("10.251.7.")
    assert api.get(f"/api/v1/instances/{inst['id']}").json()["name"] == "web1"
    spec = node.requests[inst["id"]]
    assert spec.name == "web1" and spec.nics[0].interface == inst["ipv4"] + "/28"
    assert node.hosts == {"web1": inst["ipv4"]}


def test_lifecycle_and_invalid_transitions_are_409_naming_the_state(api: TestClient,
                                                                     image: Any) -> None:
    iid = launch(api, name="lc")["instance"]["id"]

    def act(action: str, **body: Any) -> Any:
        return api.post(f"/api/v1/instances/{iid}/actions/{action}", json=body or None)

    r = act("start")
    assert r.status_code == 409 and "running" in r.json()["error"]
    assert r.json()["details"]["state"] == "running"
    for action, state in (("suspend", "frozen"), ("resume", "running"), ("reboot", "running"),
                          ("stop", "stopped"), ("start", "running")):
        r = act(action)
        assert r.status_code == 202, r.text
        op = api.get(f"/api/v1/operations/{r.json()['operation']['id']}?wait=5").json()
        assert op["status"] == "success", op
        assert api.get(f"/api/v1/instances/{iid}").json()["state"] == state, action
    assert act("fly").status_code == 400
    r = api.delete(f"/api/v1/instances/{iid}")
    assert r.status_code == 409 and "running" in r.json()["error"]
    r = api.delete(f"/api/v1/instances/{iid}", params={"force": True})
    assert r.status_code == 202
    api.get(f"/api/v1/operations/{r.json()['operation']['id']}?wait=5")
    assert api.get(f"/api/v1/instances/{iid}").json()["state"] == "terminated"
    assert api.get("/api/v1/instances/lc").status_code == 404
    assert all(i["id"] != iid for i in api.get("/api/v1/instances").json())
    assert any(i["id"] == iid for i in api.get("/api/v1/instances?all=true").json())


def test_bad_input_is_refused_before_anything_is_made(api: TestClient, image: Any,
                                                       cloud: Cloud) -> None:
    cases = [
        ({"image": "nope"}, 404), ({"image": "bb", "instance_type": "x9.huge"}, 404),
        ({"image": "bb", "name": "bad name!"}, 400), ({"image": "bb", "limits": {"memory": "lots"}}, 400),
        ({"image": "bb", "limits": {"memory": "1MiB"}}, 400), ({"image": "bb", "bogus": 1}, 400),
        ({}, 400), ({"image": "bb", "limits": {"cpus": -1}}, 400),
    ]
    for body, status in cases:
        r = api.post("/api/v1/instances", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"] and "Traceback" not in r.text
    assert api.post("/api/v1/instances", content=b"{not json",
                    headers={"Content-Type": "application/json"}).status_code == 400
    assert api.get("/api/v1/instances?all=true").json() == []
    assert api.get("/api/v1/instances/i-00000000000000000").status_code == 404


def test_duplicate_name_conflicts(api: TestClient, image: Any) -> None:
    launch(api, name="dup")
    r = api.post("/api/v1/instances", json={"image": "bb", "name": "dup"})
    assert r.status_code == 409


def test_failed_launch_marks_error_and_frees_the_address(api: TestClient, image: Any,
                                                          node: FakeNode) -> None:
    node.fail_launch = "disk on fire"
    out = launch(api, name="boom")
    assert out["operation"]["status"] == "failure"
    assert "disk on fire" in out["operation"]["error"]
    inst = api.get("/api/v1/instances/boom").json()
    assert inst["state"] == "error" and "disk on fire" in inst["state_reason"]
    assert inst["ipv4"] is None
    node.fail_launch = None
    ok = launch(api, name="after")
    first = api.get("/api/v1/instances/after").json()["ipv4"]
    assert first.endswith(".2"), first  # the failed launch's address came back
    assert ok["operation"]["status"] == "success"


def test_concurrent_launches_never_share_an_address_and_exhaustion_is_clear(
        api: TestClient, image: Any, node: FakeNode) -> None:
    # a /28 has 13 usable addresses besides the gateway
    gate = threading.Event()
    node.gate = gate
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda n: api.post("/api/v1/instances",
                                                   json={"image": "bb", "name": f"c{n}"}), range(16)))
    gate.set()
    ok = [r for r in results if r.status_code == 202]
    refused = [r for r in results if r.status_code != 202]
    assert len(ok) == 13
    assert len(refused) == 3
    assert all(r.status_code == 507 and r.json()["code"] == "exhausted" for r in refused), \
        [r.text for r in refused]
    ips = [r.json()["instance"]["ipv4"] for r in ok]
    assert len(set(ips)) == len(ips)
    names = {i["name"] for i in api.get("/api/v1/instances").json()}
    assert len(names) == 13


def test_exec_console_types_nodes_metrics(api: TestClient, image: Any) -> None:
    launch(api, name="ex")
    r = api.post("/api/v1/instances/ex/exec", json={"argv": ["echo", "hi"]})
    assert r.json() == {"exit_code": 0, "stdout": "hi\n", "stderr": "", "timed_out": False}
    r = api.post("/api/v1/instances/ex/exec", json={"argv": ["cat"], "stdin": "data"})
    assert r.json()["stdout"] == "data"
    assert api.post("/api/v1/instances/ex/exec", json={"argv": ["false"]}).json()["exit_code"] == 1
    assert api.post("/api/v1/instances/ex/exec", json={"argv": []}).status_code == 400
    assert api.get("/api/v1/instances/ex/console").text == "fake: booted ex\n"
    types = api.get("/api/v1/instance-types").json()
    assert {"t3.nano", "t3.micro"} <= {t["name"] for t in types}
    assert sum(1 for t in types if t["default"]) == 1
    nodes = api.get("/api/v1/nodes").json()
    assert nodes[0]["name"] == "local" and nodes[0]["instances"] == 1
    m = api.get("/metrics")
    assert m.status_code == 200 and 'lxcloud_instances{state="running"} 1.0' in m.text
    assert 'lxcloud_http_requests_total{api="rest",method="POST",status="202"}' in m.text
    assert "lxcloud_http_request_seconds_bucket" in m.text


def test_images_import_list_show_and_delete_refused_while_used(api: TestClient, image: Any,
                                                               tmp_path: Any) -> None:
    assert image["name"] == "bb" and len(image["sha256"]) == 64 and image["format"] == "tar"
    assert api.get("/api/v1/images/bb").json()["id"] == image["id"]
    assert api.get(f"/api/v1/images/{image['id']}").json()["name"] == "bb"
    assert [i["name"] for i in api.get("/api/v1/images").json()] == ["bb"]
    dup = api.post("/api/v1/images", params={"name": "bb"}, content=b"x")
    assert dup.status_code == 409
    junk = api.post("/api/v1/images", params={"name": "junk"}, content=b"not a tarball at all")
    assert junk.status_code == 400
    assert [i["name"] for i in api.get("/api/v1/images").json()] == ["bb"]
    iid = launch(api, name="user")["instance"]["id"]
    r = api.delete("/api/v1/images/bb")
    assert r.status_code == 409 and "used by 1" in r.json()["error"]
    op = api.delete(f"/api/v1/instances/{iid}?force=true").json()["operation"]
    api.get(f"/api/v1/operations/{op['id']}?wait=5")
    assert api.delete("/api/v1/images/bb").status_code == 204
    assert api.get("/api/v1/images").json() == []


def test_reconcile_marks_vanished_and_stopped_and_reports_unknown(api: TestClient, image: Any,
                                                                 cloud: Cloud, node: FakeNode) -> None:
    a = launch(api, name="a")["instance"]["id"]
    b = launch(api, name="b")["instance"]["id"]
    node.vanish(a)
    node.set_state(b, HostState.STOPPED)
    node.add_unknown("i-0123456789abcdef0", like=b)
    healed = node.healed
    cloud.reconcile()
    assert node.healed == healed + 1          # each pass also restores the host's services (lxcfs)
    assert api.get("/api/v1/instances/a").json()["state"] == "error"
    assert "vanished" in api.get("/api/v1/instances/a").json()["state_reason"]
    assert api.get("/api/v1/instances/b").json()["state"] == "stopped"
    assert api.get("/api/v1/nodes").json()[0]["unknown_containers"] == ["i-0123456789abcdef0"]
