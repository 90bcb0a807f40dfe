"""The dashboard's assets: `/` serves the built index.html (never cached), `/static/…` the bundle
(cached for a year, named by content hash), all without a token; a controller without a build says
how to make one; the API keeps its paths; /api/v1/whoami tells the dashboard whose token it holds."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from lxcloud import web
from lxcloud.services.cloud import Cloud

ASSET = re.compile(r"""(?:src|href)="(static/[^"?]+)\?v=([0-9a-f]{12})\"""")


def test_index_and_assets_are_served_without_a_token(api: TestClient) -> None:
    assert web.built(), "the dashboard is not built: run `make web`"
    anon = TestClient(api.app)
    r = anon.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    assets = dict(ASSET.findall(r.text))
    assert set(assets) == {"static/app.js", "static/app.css"}, r.text
    assert not re.search(r"(?:https?:)?//[a-z0-9]", r.text)         # nothing from a CDN
    for path in assets:
        got = anon.get(f"/{path}", params={"v": assets[path]})
        assert got.status_code == 200 and len(got.content) > 1000, path
        assert got.headers["cache-control"] == web.LONG_CACHE
        kind = "javascript" if path.endswith(".js") else "text/css"
        assert kind in got.headers["content-type"], got.headers
    css = anon.get("/static/app.css").text
    assert ".xterm" in css                       # xterm's own CSS is bundled
    js = anon.get("/static/app.js").text
    assert "Bearer" in js and "//cdn" not in js
    assert anon.get("/static/nothing.js").status_code == 404


def test_the_api_keeps_its_paths(api: TestClient) -> None:
    anon = TestClient(api.app)
    assert anon.get("/api/v1/instances").status_code == 401
    assert anon.get("/docs").status_code == 200
    assert anon.get("/healthz").status_code == 200
    assert api.get("/api/v1/instances").status_code == 200


def test_a_missing_build_says_how_to_make_one(tmp_path: Path) -> None:
    app = FastAPI()
    web.install(app, static=tmp_path / "absent")
    assert not web.built(tmp_path / "absent")
    with TestClient(app) as tc:
        r = tc.get("/")
        assert r.status_code == 503 and "make web" in r.text and "not built" in r.text
        assert r.headers["cache-control"] == "no-store"
        assert tc.get("/static/app.js").status_code == 404


def test_whoami_names_the_token_s_user_and_project(api: TestClient, cloud: Cloud) -> None:
    me = api.get("/api/v1/whoami").json()
    assert me["role"] == "admin" and me["is_admin"] is True
    cloud.accounts.create_project("p-web")
    user, token = cloud.accounts.create_user("alice-web", "p-web", "member")
    r = api.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": user.id, "user": "alice-web", "project_id": user.project_id,
                        "project": "p-web", "role": "member", "is_admin": False}
    bad = TestClient(api.app).get("/api/v1/whoami", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["code"] == "unauthorized"
