"""Pools, disk limits, volumes, snapshots, copies, images from instances, exports and imports:
the rules of the services, through the REST API, over the fake node (its fake pool keeps roots,
volumes and snapshots as records; its fake compute driver keeps mounts and plays holders)."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lxcloud.core.caller import Caller
from lxcloud.drivers.storage.base import SnapshotOf
from lxcloud.services.cloud import Cloud
from tests.unit.fakes import FakeNode

ROOT, VOLUME = SnapshotOf.ROOT, SnapshotOf.VOLUME
GiB = 1024**3
MiB = 1024**2
W = {"wait": 10}


def launch(api: TestClient, name: str, **kw: Any) -> dict[str, Any]:
    r = api.post("/api/v1/instances", params=W, json={"image": "bb", "name": name, **kw})
    assert r.status_code == 202, r.text
    assert r.json()["operation"]["status"] == "success", r.text
    return r.json()["instance"]  # type: ignore[no-any-return]


def done(r: Any, status: str = "success") -> dict[str, Any]:
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    assert body["operation"]["status"] == status, body
    return body


def volume(api: TestClient, name: str, size: str = "1GiB", **kw: Any) -> dict[str, Any]:
    return done(api.post("/api/v1/volumes", params=W, json={"name": name, "size": size, **kw}))[
        "volume"]


# --- pools
def test_pools_are_listed_made_refused_and_deleted(api: TestClient, image: dict[str, Any],
                                                   node: FakeNode) -> None:
    [default] = api.get("/api/v1/pools").json()
    assert default["name"] == "default" and default["default"] and default["quota"] is True
    assert default["capacity"] > 0 and default["instances"] == 0
    r = api.post("/api/v1/pools", json={"name": "fast", "driver": "dir", "size": "1GiB"})
    assert r.status_code == 201, r.text
    assert r.json()["size"] == GiB and "fast" in node.pools
    for body, status in (({"name": "fast", "driver": "dir"}, 409),
                         ({"name": "9bad", "driver": "dir"}, 400),
                         ({"name": "z", "driver": "zfs"}, 400),
                         ({"name": "z", "driver": "dir", "size": "1GiB", "source": "/tmp"}, 400),
                         ({"name": "z", "driver": "dir", "source": "relative/dir"}, 400),
                         ({"name": "z", "driver": "dir", "source": "/nonexistent/x"}, 400),
                         ({"name": "z", "driver": "shared"}, 400),
                         ({"name": "z", "driver": "dir", "size": "1MiB"}, 400)):
        r = api.post("/api/v1/pools", json=body)
        assert r.status_code == status, (body, r.text)
    assert [p["name"] for p in api.get("/api/v1/pools").json()] == ["default", "fast"]
    inst = launch(api, "onfast", pool="fast")
    assert inst["disks"][0]["pool"] == "fast"
    assert api.get("/api/v1/pools/fast").json()["instances"] == 1
    r = api.delete("/api/v1/pools/fast")
    assert r.status_code == 409 and r.json()["code"] == "in_use", r.text
    assert api.delete("/api/v1/pools/default").status_code == 400
    done(api.delete(f"/api/v1/instances/{inst['id']}", params={**W, "force": True}))
    assert api.delete("/api/v1/pools/fast").status_code == 204
    assert "fast" not in node.pools and api.get("/api/v1/pools/fast").status_code == 404


def test_only_an_admin_changes_pools(api: TestClient, cloud: Cloud) -> None:
    cloud.accounts.create_project("p1")
    _user, token = cloud.accounts.create_user("bob", "p1")
    r = api.post("/api/v1/pools", json={"name": "mine", "driver": "dir"},
                 headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    assert api.get("/api/v1/pools", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_pool_usage_in_metrics(api: TestClient) -> None:
    text = api.get("/metrics").text
    assert 'lxcloud_pool_capacity_bytes{driver="dir",pool="default"}' in text


# --- disk limits
def test_the_disk_limit_is_asked_for_at_launch_and_resized(api: TestClient, image: dict[str, Any],
                                                           node: FakeNode) -> None:
    inst = launch(api, "d1", limits={"disk": "1GiB"})
    assert inst["limits"]["disk"] == GiB and inst["disks"][0]["size"] == GiB
    assert node.pool.roots[inst["id"]].size == GiB
    done(api.post(f"/api/v1/instances/{inst['id']}/resize", params=W, json={"disk": "2GiB"}))
    assert node.pool.roots[inst["id"]].size == 2 * GiB
    got = api.get(f"/api/v1/instances/{inst['id']}").json()
    assert got["limits"]["disk"] == 2 * GiB and got["disks"][0]["size"] == 2 * GiB
    node.pool.set_usage(ROOT, inst["id"], 1536 * MiB)
    body = done(api.post(f"/api/v1/instances/{inst['id']}/resize", params=W,
                         json={"disk": "1GiB"}), "failure")
    assert body["operation"]["error_code"] == "invalid_input"
    assert api.get(f"/api/v1/instances/{inst['id']}").json()["limits"]["disk"] == 2 * GiB
    for bad in ("1MiB", "lots", "-1"):
        r = api.post(f"/api/v1/instances/{inst['id']}/resize", json={"disk": bad})
        assert r.status_code == 400, (bad, r.text)


def test_a_pool_without_quotas_says_so_and_refuses_a_disk_limit(api: TestClient,
                                                                 image: dict[str, Any],
                                                                 cloud: Cloud,
                                                                 node: FakeNode) -> None:
    node.pool.caps = dataclasses.replace(node.pool.caps, quota=False,
                                         quota_note="made without quotas")
    cloud.instances.forget_caps()
    p = api.get("/api/v1/pools/default").json()
    assert p["quota"] is False and p["quota_note"] == "made without quotas"
    r = api.post("/api/v1/instances", json={"image": "bb", "limits": {"disk": "1GiB"}})
    assert r.status_code == 422 and "made without quotas" in r.json()["error"], r.text
    inst = launch(api, "plain")          # the type's own limit is no request: it launches
    r = api.post(f"/api/v1/instances/{inst['id']}/resize", json={"disk": "4GiB"})
    assert r.status_code == 422


# --- volumes
def test_volumes_attach_to_stopped_and_running_instances(api: TestClient, image: dict[str, Any],
                                                         node: FakeNode) -> None:
    vol = volume(api, "data")
    assert vol["state"] == "available" and vol["size"] == GiB and vol["pool"] == "default"
    assert node.pool.volumes[vol["id"]].size == GiB
    assert api.get("/api/v1/volumes/data").json()["id"] == vol["id"]
    launch(api, "s1", start=False)
    body = done(api.post(f"/api/v1/volumes/{vol['id']}/attach", params=W,
                         json={"instance": "s1", "device": "/dev/sdf"}))
    [att] = body["volume"]["attachments"]
    assert body["volume"]["state"] == "in-use" and att["state"] == "attached"
    assert att["path"] == f"/media/{vol['id']}" and att["device"] == "/dev/sdf"
    disks = api.get("/api/v1/instances/s1").json()["disks"]
    assert [(d["name"], d["path"], d["device"]) for d in disks[1:]] == \
        [(vol["id"], f"/media/{vol['id']}", "/dev/sdf")]
    # one instance at a time for a volume that is not shared
    launch(api, "r1")
    r = api.post(f"/api/v1/volumes/{vol['id']}/attach", json={"instance": "r1"})
    assert r.status_code == 409 and r.json()["code"] == "in_use"
    r = api.delete(f"/api/v1/volumes/{vol['id']}")
    assert r.status_code == 409 and r.json()["code"] == "in_use"
    done(api.post(f"/api/v1/volumes/{vol['id']}/detach", params=W))
    assert api.get(f"/api/v1/volumes/{vol['id']}").json()["state"] == "available"
    assert len(api.get("/api/v1/instances/s1").json()["disks"]) == 1
    # into a running one, at a path of our choosing: mounted at once
    done(api.post(f"/api/v1/volumes/{vol['id']}/attach", params=W,
                  json={"instance": "r1", "path": "/srv/data"}))
    r1 = api.get("/api/v1/instances/r1").json()
    assert "/srv/data" in node.compute.mounted(r1["id"])
    # held open inside: the detach fails naming the process, nothing changes; forced, it goes
    pid = node.compute.hold(r1["id"], "/srv/data/log", "tail")
    body = done(api.post(f"/api/v1/volumes/{vol['id']}/detach", params=W), "failure")
    assert body["operation"]["error_code"] == "in_use" and "tail" in body["operation"]["error"]
    assert api.get(f"/api/v1/volumes/{vol['id']}").json()["attachments"][0]["state"] == "attached"
    assert "/srv/data" in node.compute.mounted(r1["id"])
    done(api.post(f"/api/v1/volumes/{vol['id']}/detach", params=W, json={"force": True}))
    assert "/srv/data" not in node.compute.mounted(r1["id"])
    node.compute.release(r1["id"], pid)
    done(api.post(f"/api/v1/volumes/{vol['id']}/resize", params=W, json={"size": "2GiB"}))
    assert node.pool.volumes[vol["id"]].size == 2 * GiB
    done(api.delete(f"/api/v1/volumes/{vol['id']}", params=W))
    assert api.get(f"/api/v1/volumes/{vol['id']}").status_code == 404
    assert vol["id"] not in node.pool.volumes


def test_bad_volume_requests_are_refused_before_anything_is_made(api: TestClient,
                                                                 image: dict[str, Any],
                                                                 node: FakeNode) -> None:
    for body, status in (({"name": "v", "size": "1MiB"}, 400), ({"name": "v"}, 400),
                         ({"name": "9v", "size": "1GiB"}, 400),
                         ({"name": "v", "size": "1GiB", "pool": "nope"}, 422),
                         ({"name": "v", "size": "1GiB", "zone": "mars-1a"}, 400),
                         ({"name": "v", "size": "1GiB", "snapshot_id": "snap-0123456789abcdef0"},
                          404)):
        r = api.post("/api/v1/volumes", json=body)
        assert r.status_code == status, (body, r.text)
    assert api.get("/api/v1/volumes").json() == [] and node.pool.volumes == {}
    vol = volume(api, "v")
    assert api.post("/api/v1/volumes", json={"name": "v", "size": "1GiB"}).status_code == 409
    launch(api, "i1", start=False)
    for body in ({"instance": "i1", "path": "relative"}, {"instance": "i1", "path": "/"},
                 {"instance": "i1", "path": "/proc/x"}, {"instance": "i1", "path": "/a/../b"},
                 {"instance": "i1", "device": "sdf"}):
        r = api.post(f"/api/v1/volumes/{vol['id']}/attach", json=body)
        assert r.status_code == 400, (body, r.text)
    assert api.post(f"/api/v1/volumes/{vol['id']}/attach",
                    json={"instance": "nope"}).status_code == 404
    r = api.post(f"/api/v1/volumes/{vol['id']}/detach")
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"
    assert api.get(f"/api/v1/volumes/{vol['id']}").json()["attachments"] == []


def test_a_shared_volume_attaches_to_several(api: TestClient, image: dict[str, Any]) -> None:
    vol = volume(api, "shared1", shared=True)
    launch(api, "a1", start=False)
    launch(api, "a2", start=False)
    for name in ("a1", "a2"):
        done(api.post(f"/api/v1/volumes/{vol['id']}/attach", params=W, json={"instance": name}))
    assert len(api.get(f"/api/v1/volumes/{vol['id']}").json()["attachments"]) == 2
    r = api.post(f"/api/v1/volumes/{vol['id']}/detach")
    assert r.status_code == 400    # which one?
    done(api.post(f"/api/v1/volumes/{vol['id']}/detach", params=W, json={"instance": "a1"}))
    [att] = api.get(f"/api/v1/volumes/{vol['id']}").json()["attachments"]
    assert att["instance"] == "a2"


def test_deleting_an_instance_detaches_its_volumes(api: TestClient, image: dict[str, Any]) -> None:
    vol = volume(api, "keep")
    inst = launch(api, "gone", start=False)
    done(api.post(f"/api/v1/volumes/{vol['id']}/attach", params=W, json={"instance": "gone"}))
    done(api.delete(f"/api/v1/instances/{inst['id']}", params=W))
    got = api.get(f"/api/v1/volumes/{vol['id']}").json()
    assert got["state"] == "available" and got["attachments"] == []


def test_another_projects_volume_is_not_found(api: TestClient, cloud: Cloud,
                                              image: dict[str, Any]) -> None:
    vol = volume(api, "admins")
    cloud.accounts.create_project("p2")
    _user, token = cloud.accounts.create_user("eve", "p2")
    h = {"Authorization": f"Bearer {token}"}
    assert api.get(f"/api/v1/volumes/{vol['id']}", headers=h).status_code == 404
    assert api.get("/api/v1/volumes", headers=h).json() == []
    assert api.delete(f"/api/v1/volumes/{vol['id']}", headers=h).status_code == 404


# --- snapshots
def test_instance_snapshots_any_one_restored(api: TestClient, image: dict[str, Any],
                                             node: FakeNode) -> None:
    inst = launch(api, "snappy")
    iid = inst["id"]
    node.pool.write(ROOT, iid, "etc/v", b"one")
    s0 = done(api.post(f"/api/v1/instances/{iid}/snapshots", params=W))["snapshot"]
    assert s0["name"] == "snap0" and s0["state"] == "completed" and s0["of"] == "root"
    node.pool.write(ROOT, iid, "etc/v", b"two")
    done(api.post(f"/api/v1/instances/{iid}/snapshots", params=W, json={"name": "second"}))
    r = api.post(f"/api/v1/instances/{iid}/snapshots", json={"name": "second"})
    assert r.status_code == 409
    assert [s["name"] for s in api.get(f"/api/v1/instances/{iid}/snapshots").json()] == \
        ["snap0", "second"]
    node.pool.write(ROOT, iid, "etc/v", b"three")
    body = done(api.post(f"/api/v1/instances/{iid}/snapshots/snap0/restore", params=W))
    assert node.pool.read(ROOT, iid, "etc/v") == b"one"
    assert body["instance"]["state"] == "running"       # stopped, restored, started again
    done(api.post(f"/api/v1/instances/{iid}/snapshots/second/restore", params=W))
    assert node.pool.read(ROOT, iid, "etc/v") == b"two"
    done(api.delete(f"/api/v1/instances/{iid}/snapshots/snap0", params=W))
    assert [s["name"] for s in api.get(f"/api/v1/instances/{iid}/snapshots").json()] == ["second"]
    assert api.delete(f"/api/v1/instances/{iid}/snapshots/nope").status_code == 404
    assert api.post(f"/api/v1/instances/{iid}/snapshots", json={"name": "bad/name"}).status_code \
        == 400
    # the instance goes, its snapshots with it
    done(api.delete(f"/api/v1/instances/{iid}", params={**W, "force": True}))
    assert api.get("/api/v1/snapshots").json() == []


def test_volume_snapshots_outlive_their_volume(api: TestClient, image: dict[str, Any],
                                               node: FakeNode) -> None:
    vol = volume(api, "src")
    node.pool.write(VOLUME, vol["id"], "f", b"kept")
    snap = done(api.post(f"/api/v1/volumes/{vol['id']}/snapshots", params=W,
                         json={"description": "before"}))["snapshot"]
    assert snap["of"] == "volume" and snap["size"] == GiB and snap["description"] == "before"
    r = api.post("/api/v1/volumes", json={"name": "small", "size": "512MiB",
                                          "snapshot_id": snap["id"]})
    assert r.status_code == 400
    done(api.delete(f"/api/v1/volumes/{vol['id']}", params=W))
    assert api.get(f"/api/v1/volumes/{vol['id']}").status_code == 404
    assert api.get(f"/api/v1/snapshots/{snap['id']}").json()["target_id"] == vol["id"]
    assert vol["id"] in node.pool.volumes                      # kept for its snapshot
    copy = done(api.post("/api/v1/volumes", params=W, json={"name": "copy",
                                                            "snapshot_id": snap["id"]}))["volume"]
    assert copy["size"] == GiB and copy["snapshot_id"] == snap["id"]
    assert node.pool.read(VOLUME, copy["id"], "f") == b"kept"
    done(api.delete(f"/api/v1/snapshots/{snap['id']}", params=W))
    assert vol["id"] not in node.pool.volumes                  # its last snapshot went


# --- copies, images, exports
def test_a_copy_has_its_own_identity(api: TestClient, image: dict[str, Any],
                                     node: FakeNode) -> None:
    src = launch(api, "orig")
    node.pool.write(ROOT, src["id"], "etc/data", b"payload")
    body = done(api.post(f"/api/v1/instances/{src['id']}/copy", params=W, json={"name": "twin"}))
    twin = body["instance"]
    assert twin["name"] == "twin" and twin["state"] == "stopped"
    assert twin["id"] != src["id"] and twin["ipv4"] != src["ipv4"] and twin["mac"] != src["mac"]
    assert node.pool.read(ROOT, twin["id"], "etc/data") == b"payload"
    assert api.get(f"/api/v1/instances/{src['id']}").json()["state"] == "running"
    started = done(api.post(f"/api/v1/instances/{src['id']}/copy", params=W,
                            json={"start": True}))["instance"]
    assert started["state"] == "running" and started["name"] == started["id"]
    r = api.post(f"/api/v1/instances/{src['id']}/copy", json={"name": "twin"})
    assert r.status_code == 409


def test_an_image_from_an_instance_launches(api: TestClient, image: dict[str, Any],
                                            node: FakeNode) -> None:
    src = launch(api, "golden")
    body = done(api.post("/api/v1/images/from-instance", params=W,
                         json={"instance": "golden", "name": "golden-img"}))
    image_id = body["operation"]["result"]["image_id"]
    got = api.get("/api/v1/images/golden-img").json()
    assert got["id"] == image_id and got["os"] == image["os"]
    assert not [k for k in node.pool.snapshots if k[1] == src["id"]]   # the temporary one went
    launch(api, "from-golden", image="golden-img")
    r = api.post("/api/v1/images/from-instance", json={"instance": "golden", "name": "golden-img"})
    assert r.status_code == 409


def test_export_and_import_round_trip(api: TestClient, image: dict[str, Any],
                                      tmp_path: Path) -> None:
    src = launch(api, "exported", start=False)
    done(api.post(f"/api/v1/instances/{src['id']}/snapshots", params=W, json={"name": "s1"}))
    body = done(api.post(f"/api/v1/instances/{src['id']}/export", params=W))
    xid = body["operation"]["result"]["export_id"]
    r = api.get(f"/api/v1/exports/{xid}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
        names = tf.getnames()
        meta = json.load(tf.extractfile("lxcloud-export.json"))  # type: ignore[arg-type]
    assert sorted(names) == ["lxcloud-export.json", "rootfs.tar", "snapshots/s1.tar"]
    assert meta["instance"]["name"] == "exported" and [s["name"] for s in meta["snapshots"]] == ["s1"]
    body = done(api.post("/api/v1/instances/import", params={**W, "name": "imported"},
                         content=r.content))
    inst = body["instance"]
    assert inst["name"] == "imported" and inst["state"] == "stopped"
    assert [s["name"] for s in api.get(f"/api/v1/instances/{inst['id']}/snapshots").json()] == \
        ["s1"]
    assert api.delete(f"/api/v1/exports/{xid}").status_code == 204
    assert api.get(f"/api/v1/exports/{xid}").status_code == 404


@pytest.mark.parametrize("members", [
    {"lxcloud-export.json": b"{}", "rootfs.tar": b""},
    {"rootfs.tar": b""},
    {"lxcloud-export.json": b"not json", "rootfs.tar": b""},
    {"lxcloud-export.json": b"{}", "rootfs.tar": b"", "../evil": b"x"},
])
def test_a_hostile_or_broken_export_is_refused(api: TestClient, members: dict[str, bytes],
                                               image: dict[str, Any]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    r = api.post("/api/v1/instances/import", content=buf.getvalue())
    assert r.status_code == 400, r.text
    assert api.get("/api/v1/instances").json() == []


def test_members_cannot_touch_another_projects_exports(api: TestClient, cloud: Cloud,
                                                       image: dict[str, Any]) -> None:
    src = launch(api, "mine", start=False)
    xid = done(api.post(f"/api/v1/instances/{src['id']}/export", params=W))["operation"][
        "result"]["export_id"]
    cloud.accounts.create_project("p3")
    _u, token = cloud.accounts.create_user("mallory", "p3")
    h = {"Authorization": f"Bearer {token}"}
    assert api.get(f"/api/v1/exports/{xid}", headers=h).status_code == 404
    assert isinstance(cloud.copies.export_file(xid, caller=Caller(
        user_id="u", user="admin", project_id="", project="", role="admin")).size, int)


@pytest.mark.parametrize("as_driver_error", [False, True])
def test_a_delete_the_host_refuses_leaves_the_volume_as_it_was(
        api: TestClient, node: FakeNode, monkeypatch: pytest.MonkeyPatch,
        as_driver_error: bool) -> None:
    from lxcloud.core.errors import DriverError, InUse

    vol = volume(api, "held")

    def held(pool: str, volume_id: str) -> None:   # a process kept it after a forced detach
        e = InUse(f"volume {volume_id} is in use (its instance runs?): stop it first")
        if as_driver_error:       # as the dir pool says it
            raise DriverError(f"cannot remove volume {volume_id}: {e}") from e
        raise e

    monkeypatch.setattr(node, "delete_volume", held)
    body = done(api.delete(f"/api/v1/volumes/{vol['id']}", params=W), "failure")
    assert "in use" in body["operation"]["error"]
    after = api.get(f"/api/v1/volumes/{vol['id']}").json()
    assert after["state"] == "available" and not after["state_reason"], after
    monkeypatch.undo()
    done(api.delete(f"/api/v1/volumes/{vol['id']}", params=W))
    assert api.get(f"/api/v1/volumes/{vol['id']}").status_code == 404
