"""REST key pairs: a new pair's private key is answered once, imports are checked, and each
project sees only its own."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.unit.api.rest.test_tenancy import member


def test_make_get_import_and_delete(api: TestClient) -> None:
    r = api.post("/api/v1/key-pairs", json={"name": "k1", "key_type": "ed25519"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert made["public_key"].startswith("ssh-ed25519 ") and made["fingerprint"]
    got = api.get("/api/v1/key-pairs/k1").json()
    assert got["private_key"] is None and got["fingerprint"] == made["fingerprint"]
    r = api.post("/api/v1/key-pairs", json={"name": "k2", "public_key": made["public_key"]})
    assert r.status_code == 201 and r.json()["private_key"] is None
    assert [k["name"] for k in api.get("/api/v1/key-pairs").json()] == ["k1", "k2"]
    assert api.delete("/api/v1/key-pairs/k1").status_code == 204
    assert api.get("/api/v1/key-pairs/k1").status_code == 404
    assert api.delete("/api/v1/key-pairs/k1").status_code == 404


def test_bad_input_is_refused_and_nothing_is_stored(api: TestClient) -> None:
    for body, code in (({"name": "x", "key_type": "dsa"}, 400),
                       ({"name": "x", "public_key": "garbage"}, 400),
                       ({"name": "", "key_type": "rsa"}, 400),
                       ({"key_type": "rsa"}, 400)):
        r = api.post("/api/v1/key-pairs", json=body)
        assert r.status_code == code, (body, r.text)
        assert r.json()["error"]
    assert api.get("/api/v1/key-pairs").json() == []
    assert api.post("/api/v1/key-pairs", json={"name": "k"}).status_code == 201
    r = api.post("/api/v1/key-pairs", json={"name": "k"})
    assert r.status_code == 409, r.text
    assert len(api.get("/api/v1/key-pairs").json()) == 1


def test_another_projects_pairs_are_invisible(api: TestClient) -> None:
    assert api.post("/api/v1/key-pairs", json={"name": "mine"}).status_code == 201
    bob = member(api, "bob", "blue")
    assert bob.get("/api/v1/key-pairs").json() == []
    assert bob.get("/api/v1/key-pairs/mine").status_code == 404
    assert bob.delete("/api/v1/key-pairs/mine").status_code == 404
    # the same name in another project is another pair
    assert bob.post("/api/v1/key-pairs", json={"name": "mine"}).status_code == 201
    assert len(api.get("/api/v1/key-pairs").json()) == 1
