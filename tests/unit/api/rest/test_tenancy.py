"""Projects and users: a user sees and touches only its project's resources (others' are
"not found"); only admins manage accounts; credentials are per user."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.unit.api.rest.test_instances import launch
from tests.unit.conftest import make_tar


def member(api: TestClient, name: str, project: str) -> TestClient:
    if api.post("/api/v1/projects", json={"name": project}).status_code not in (201, 409):
        raise AssertionError("project")
    r = api.post("/api/v1/users", json={"name": name, "project": project})
    assert r.status_code == 201, r.text
    tc = TestClient(api.app)
    tc.headers["Authorization"] = f"Bearer {r.json()['token']}"
    return tc


def test_cross_project_access_is_not_found(api: TestClient, image: Any, tmp_path: Any) -> None:
    admin_inst = launch(api, name="secret")["instance"]
    bob = member(api, "bob", "blue")
    # the admin's image is public: bob may launch it, in his own project
    mine = launch(bob, name="bobs")["instance"]
    assert [i["name"] for i in bob.get("/api/v1/instances").json()] == ["bobs"]
    assert "bobs" not in [i["name"] for i in api.get("/api/v1/instances").json()]
    for ref in (admin_inst["id"], "secret"):
        assert bob.get(f"/api/v1/instances/{ref}").status_code == 404
        assert bob.post(f"/api/v1/instances/{ref}/actions/stop").status_code == 404
        assert bob.delete(f"/api/v1/instances/{ref}?force=true").status_code == 404
        assert bob.post(f"/api/v1/instances/{ref}/exec", json={"argv": ["true"]}).status_code == 404
        assert bob.get(f"/api/v1/instances/{ref}/console").status_code == 404
    # an admin sees and acts on every project's instances; its list is its own project's unless
    # it asks for all of them, and shows whose each one is
    shown = api.get(f"/api/v1/instances/{mine['id']}")
    assert shown.status_code == 200 and shown.json()["project"] == "blue"
    assert api.get("/api/v1/instances/bobs").json()["id"] == mine["id"]
    assert api.post("/api/v1/instances/bobs/exec", json={"argv": ["true"]}).status_code == 200
    every = {i["name"]: i["project"] for i in
             api.get("/api/v1/instances", params={"all_projects": True}).json()}
    assert every == {"secret": "default", "bobs": "blue"}
    r = bob.get("/api/v1/instances", params={"all_projects": True})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    # operations: a member sees its own only
    theirs = admin_inst["operation"]
    assert bob.get(f"/api/v1/operations/{theirs}").status_code == 404
    assert bob.get(f"/api/v1/operations/{mine['operation']}").status_code == 200
    assert {o["target"] for o in bob.get("/api/v1/operations").json()} == {mine["id"]}
    # a member's image is private to its project
    tar = make_tar(tmp_path / "b.tar")
    r = bob.post("/api/v1/images", params={"name": "bobimg"}, content=tar.read_bytes())
    assert r.status_code == 201
    assert api.get("/api/v1/images/bobimg").status_code == 404
    assert bob.get("/api/v1/images/bb").status_code == 200
    assert bob.delete("/api/v1/images/bb").status_code == 404   # not his to delete
    r = api.post("/api/v1/instances", json={"image": "bobimg"})
    assert r.status_code == 404


def test_only_admins_manage_accounts_and_credentials_are_per_user(api: TestClient) -> None:
    carol = member(api, "carol", "red")
    assert carol.post("/api/v1/projects", json={"name": "x"}).status_code == 403
    assert carol.post("/api/v1/users", json={"name": "eve", "project": "red"}).status_code == 403
    assert carol.get("/api/v1/users/admin/credentials").status_code == 403
    mine = carol.get("/api/v1/users/carol/credentials").json()
    assert mine["access_key_id"] and len(mine["secret_access_key"]) >= 30
    assert mine["region"] == "lxcloud-1" and mine["endpoint_url"].endswith("/ec2/")
    # stable: asking again gives the same key
    assert carol.get("/api/v1/users/carol/credentials").json() == mine
    admins = api.get("/api/v1/users/admin/credentials").json()
    assert admins["access_key_id"] != mine["access_key_id"]
    assert api.post("/api/v1/users", json={"name": "carol", "project": "red"}).status_code == 409
    assert api.post("/api/v1/users", json={"name": "dave", "project": "nope"}).status_code == 404
    assert api.post("/api/v1/users", json={"name": "bad name", "project": "red"}).status_code == 400
    users = {u["name"]: u for u in api.get("/api/v1/users").json()}
    assert users["carol"]["project"] == "red" and users["admin"]["role"] == "admin"
