"""The API's docs: /docs and /redoc load every file from the cloud itself (a private cloud often
reaches no CDN), and exactly the docs, their files, the description and /healthz are public."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

PUBLIC = {"/healthz", "/openapi.json", "/docs", "/redoc"}


URL = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|\burl: ?["']([^"']+)["']""")


def referenced(html: str) -> list[str]:
    """Every URL a page loads: src/href attributes, Swagger UI's `url:`, ReDoc's spec-url."""
    return [a or b for a, b in URL.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_nothing_from_outside(api: TestClient, page: str) -> None:
    anon = TestClient(api.app)
    r = anon.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not re.search(r"(?:https?:)?//[a-z0-9]", r.text), r.text      # no URL elsewhere
    urls = referenced(r.text)
    assert "/openapi.json" in urls and any(u.endswith(".js") for u in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        got = anon.get(url)
        assert got.status_code == 200 and got.content, url
        if url.endswith(".js"):
            assert "javascript" in got.headers["content-type"] and len(got.content) > 100_000
        elif url.endswith(".css"):
            assert got.headers["content-type"].startswith("text/css")
    if page == "/docs":
        assert '"validatorUrl": null' in r.text   # no call home to swagger.io's validator
        assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(urls)


def test_exactly_the_docs_and_healthz_are_public(api: TestClient) -> None:
    anon = TestClient(api.app)
    spec = anon.get("/openapi.json")
    assert spec.status_code == 200
    description = spec.json()["info"]["description"]
    for path in ("/healthz", "/openapi.json", "/docs", "/redoc", "/api/v1", "/metrics"):
        assert f"`{path}" in description, path
    checked = 0
    for path, ops in spec.json()["paths"].items():
        url = re.sub(r"\{[^}]+\}", "x", path)
        for method in ops:
            r = anon.request(method.upper(), url)
            if path in PUBLIC:
                assert r.status_code == 200, (method, path)
            else:
                assert r.status_code == 401 and r.json()["code"] == "unauthorized", (method, path)
                checked += 1
    assert checked > 20
    for path in PUBLIC:
        assert anon.get(path).status_code == 200, path
    assert anon.get("/metrics").status_code == 401
    assert anon.get("/docs/assets/").status_code == 404     # files only, no listing
    assert anon.post("/ec2/", data={"Action": "DescribeInstances"}).status_code == 401  # SigV4
