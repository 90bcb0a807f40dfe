"""Events: ids, storage, filters, pruning, subscriptions, and the lifecycle events a launch makes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from lxcloud.core.caller import Caller
from lxcloud.core.errors import Forbidden, InvalidInput
from lxcloud.db.engine import Database
from lxcloud.services.cloud import Cloud
from lxcloud.services.events import EventFilter, Events
from tests.unit.api.rest.test_instances import launch
from tests.unit.api.rest.test_tenancy import member
from tests.unit.conftest import serve
from tests.unit.fakes import FakeNode
from tests.waiting import wait_for

RED = Caller(user_id="u-1", user="ann", project_id="p-red", project="red")


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[Events]:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.create_all()
    b = Events(db, node="n1", keep=50)
    yield b
    b.close()
    db.close()


def test_ids_grow_and_survive_a_restart(bus: Events, tmp_path: Path) -> None:
    a = bus.publish("instance.oom", project_id="p-red", instance_id="i-1", data={"new": 1})
    b = bus.publish("instance.limit", project_id="p-blue", data={"resource": "pids"})
    assert a is not None and b is not None and b.id == a.id + 1
    assert [e.id for e in bus.list(EventFilter())] == [a.id, b.id]
    bus.close()
    again = Events(bus.db, node="n1")
    c = again.publish("instance.oom", project_id="p-red")
    assert c is not None and c.id == b.id + 1
    assert again.list(EventFilter(), since=b.id)[0].to_dict()["type"] == "instance.oom"
    again.close()


def test_filters_scope_and_bad_input(bus: Events) -> None:
    bus.publish("instance.oom", project_id="p-red", instance_id="i-1")
    bus.publish("instance.state", project_id="p-red", instance_id="i-2")
    bus.publish("operation.started", project_id="p-blue", operation_id="op-1")
    assert [e.instance_id for e in bus.list(EventFilter(caller=RED))] == ["i-1", "i-2"]
    assert [e.type for e in bus.list(EventFilter(type="operation."))] == ["operation.started"]
    assert [e.instance_id for e in bus.list(EventFilter(instance="i-2"))] == ["i-2"]
    assert bus.list(EventFilter(caller=RED, project="p-blue")) == []
    only = bus.list(EventFilter(), limit=1, newest=True)
    assert [e.type for e in only] == ["operation.started"]
    with pytest.raises(InvalidInput):
        EventFilter(type="nonsense")
    with pytest.raises(InvalidInput):
        bus.list(EventFilter(), limit=0)
    with pytest.raises(Forbidden):
        bus.filter(RED, project="blue")
    assert bus.filter(RED, project="red").caller is RED


def test_only_the_newest_are_kept(bus: Events) -> None:
    for i in range(120):
        bus.publish("instance.limit", project_id=None, data={"i": i})
    assert bus.prune() == 70
    left = bus.list(EventFilter(), limit=1000)
    assert len(left) == 50 and left[-1].data == {"i": 119}


def test_a_subscriber_gets_what_matches_and_knows_when_it_lost_some(bus: Events) -> None:
    sub = bus.subscribe(EventFilter(caller=RED))
    bus.publish("instance.oom", project_id="p-blue")
    bus.publish("instance.oom", project_id="p-red", message="mine")
    got = sub.get(1)
    assert got is not None and got.message == "mine" and sub.get(0.01) is None
    for _ in range(1001):
        bus.publish("instance.oom", project_id="p-red")
    assert sub.lost
    sub.close()
    bus.publish("instance.oom", project_id="p-red")
    assert sub.q.qsize() == 1000


def test_a_failing_store_never_reaches_the_publisher(bus: Events) -> None:
    bus.db.engine.dispose()
    bus.db.close()
    assert bus.publish("instance.oom", project_id=None) is not None
    bus.flush()   # logged, not raised


def test_a_launch_stop_and_delete_make_their_events(cloud: Cloud, api: TestClient,
                                                     image: Any) -> None:
    out = launch(api, name="ev1")
    iid = out["instance"]["id"]
    r = api.post(f"/api/v1/instances/{iid}/actions/stop")
    api.get(f"/api/v1/operations/{r.json()['operation']['id']}", params={"wait": 10})
    r = api.delete(f"/api/v1/instances/{iid}", params={"force": "true"})
    assert r.status_code == 202, r.text
    api.get(f"/api/v1/operations/{r.json()['operation']['id']}", params={"wait": 10})

    def types() -> list[str]:
        return [e["type"] for e in api.get("/api/v1/events", params={"instance": iid}).json()]
    wait_for(lambda: "instance.deleted" in types(), 10, "the deleted event")
    got = api.get("/api/v1/events", params={"instance": iid}).json()
    seen = [(e["type"], e["data"].get("to") or e["data"].get("status")) for e in got]
    assert seen[0] == ("instance.created", None)
    assert ("operation.started", "pending") in seen or ("operation.started", "running") in seen
    assert ("instance.state", "running") in seen and ("instance.state", "stopped") in seen
    assert ("operation.finished", "success") in seen
    assert seen.index(("instance.state", "running")) < seen.index(("instance.state", "stopped"))
    assert all(e["instance_name"] in ("ev1", None) and e["project"] for e in got)
    assert [e["id"] for e in got] == sorted(e["id"] for e in got)
    # an operation's events name its instance, by name
    ops = [e for e in got if e["type"].startswith("operation.")]
    assert ops and all(e["instance_name"] == "ev1" for e in ops)
    assert {e["message"] for e in ops} >= {"launch ev1 started", "stop ev1 succeeded"}


def test_an_operation_of_an_instance_not_seen_yet_is_named_from_the_database(
        cloud: Cloud, api: TestClient, image: Any) -> None:
    iid = launch(api, name="ev2")["instance"]["id"]
    cloud.events._names.clear()          # as after a controller restart
    r = api.post(f"/api/v1/instances/{iid}/actions/stop")
    api.get(f"/api/v1/operations/{r.json()['operation']['id']}", params={"wait": 10})
    got = api.get("/api/v1/events", params={"instance": iid, "type": "operation."}).json()
    assert [e["message"] for e in got][-2:] == ["stop ev2 started", "stop ev2 succeeded"]


def test_a_reconciler_correction_is_an_event(cloud: Cloud, api: TestClient, image: Any,
                                             node: FakeNode) -> None:
    iid = launch(api, name="ev2")["instance"]["id"]
    node.compute.destroy(iid)        # gone behind the cloud's back
    cloud.reconcile()
    got = api.get("/api/v1/events", params={"instance": iid, "type": "reconciler."}).json()
    assert got and got[-1]["data"]["reason"]


def test_another_projects_events_never_show(api: TestClient, image: Any) -> None:
    launch(api, name="adm")
    bob = member(api, "bob", "blue")
    launch(bob, name="bobs")
    mine = bob.get("/api/v1/events").json()
    assert mine and {e["instance_name"] for e in mine if e["instance_name"]} == {"bobs"}
    assert bob.get("/api/v1/events", params={"instance": "adm"}).status_code == 404
    assert bob.get("/api/v1/events", params={"project": "default"}).status_code == 403
    assert {e["instance_name"] for e in api.get("/api/v1/events").json()} >= {"adm", "bobs"}
    assert TestClient(api.app).get("/api/v1/events").status_code == 401
    assert TestClient(api.app).get("/api/v1/events?token=nope").status_code == 401
    assert bob.get("/api/v1/events", params={"type": "bogus"}).status_code == 400


def _frames(lines: Iterator[str], n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            out.append(json.loads("\n".join(data)))
            data = []
            if len(out) == n:
                break
    return out


def test_the_stream_follows_and_resumes_from_last_event_id(cloud: Cloud) -> None:
    first = cloud.events.publish("instance.oom", project_id=None, message="one")
    assert first is not None
    with serve(cloud) as url, httpx.Client(base_url=url, timeout=10) as http:
        params = {"token": cloud.admin_token, "type": "instance.oom"}
        with http.stream("GET", "/api/v1/events", params={**params, "follow": "true"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            assert next(lines).startswith("retry:")
            cloud.events.publish("instance.oom", project_id=None, message="two")
            got = _frames(lines, 1)
        assert [e["message"] for e in got] == ["two"]
        # a reconnect with Last-Event-ID gets what came after it, then what comes next
        with http.stream("GET", "/api/v1/events", params=params,
                         headers={"Accept": "text/event-stream",
                                  "Last-Event-ID": str(first.id)}) as r:
            lines = r.iter_lines()
            again = _frames(lines, 1)
            cloud.events.publish("instance.oom", project_id=None, message="three")
            again += _frames(lines, 1)
        assert [e["message"] for e in again] == ["two", "three"]
        bad = http.get("/api/v1/events", params={"token": cloud.admin_token, "follow": "true"},
                       headers={"Last-Event-ID": "x"})
        assert bad.status_code == 400
