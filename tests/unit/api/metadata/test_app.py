"""The EC2 metadata app: paths, listings, per-caller answers and IMDSv2 tokens (TestClient, fake lookup)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lxcloud.api.metadata.app import (
    MAX_TTL,
    TOKEN_HEADER,
    TTL_HEADER,
    MetadataView,
    create_metadata_app,
    issue_token,
    verify_token,
)

SECRET = b"s3cret-for-tests"
IP_A, IP_B, IP_NOBODY = "10.1.2.3", "10.1.2.4", "10.1.2.99"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFake me@laptop"

VIEW_A = MetadataView(
    instance_id="i-0123456789abcdef0", hostname="web1", local_ipv4=IP_A, mac="02:AA:BB:CC:DD:01",
    instance_type="t3.micro", ami_id="ami-00000000000000001", availability_zone="lxcloud-1a",
    region="lxcloud-1", reservation_id="r-0000000000000000a", public_keys={"mykey": KEY},
    user_data=b"#!/bin/sh\necho hi\n", security_groups=["default", "web"], launch_index=2,
    account_id="123456789012", subnet_cidr="10.1.2.0/24",
    pending_time=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))
VIEW_B = MetadataView(
    instance_id="i-0fedcba98765432100", hostname="db1", local_ipv4=IP_B, mac="02:aa:bb:cc:dd:02",
    instance_type="t3.nano", ami_id="ami-00000000000000002", availability_zone="lxcloud-1b",
    region="lxcloud-1", reservation_id="r-0000000000000000b", account_id="123456789012")
VIEWS = {IP_A: VIEW_A, IP_B: VIEW_B}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> FastAPI:
    return create_metadata_app(VIEWS.get, SECRET, clock=clock)


def client(app: FastAPI, ip: str = IP_A) -> TestClient:
    return TestClient(app, client=(ip, 40000))


def get(app: FastAPI, path: str, ip: str = IP_A, **headers: str) -> httpx.Response:
    return client(app, ip).get(path, headers=headers)


@pytest.mark.parametrize("version", ["latest", "2009-04-04", "2021-03-23", "2016-09-02"])
def test_leaves_for_every_version(app: FastAPI, version: str) -> None:
    want = {
        "meta-data/instance-id": "i-0123456789abcdef0", "meta-data/local-ipv4": IP_A,
        "meta-data/hostname": "web1", "meta-data/local-hostname": "web1",
        "meta-data/instance-type": "t3.micro", "meta-data/ami-id": "ami-00000000000000001",
        "meta-data/ami-launch-index": "2", "meta-data/reservation-id": "r-0000000000000000a",
        "meta-data/mac": "02:aa:bb:cc:dd:01", "meta-data/security-groups": "default\nweb",
        "meta-data/placement/availability-zone": "lxcloud-1a",
        "meta-data/placement/region": "lxcloud-1",
        "meta-data/public-keys/0/openssh-key": KEY,
        "meta-data/network/interfaces/macs/02:aa:bb:cc:dd:01/local-ipv4s": IP_A,
        "meta-data/network/interfaces/macs/02:aa:bb:cc:dd:01/subnet-ipv4-cidr-block": "10.1.2.0/24",
        "meta-data/network/interfaces/macs/02:aa:bb:cc:dd:01/owner-id": "123456789012",
        "user-data": "#!/bin/sh\necho hi\n",
    }
    for path, body in want.items():
        r = get(app, f"/{version}/{path}")
        assert r.status_code == 200, path
        assert r.text == body, path
        assert r.headers["content-type"].startswith("text/plain")


def test_listings_are_ec2_shaped(app: FastAPI) -> None:
    md = get(app, "/latest/meta-data/").text.split("\n")
    assert md == sorted(md)
    for entry in ("ami-id", "ami-launch-index", "hostname", "instance-id", "instance-type",
                  "local-hostname", "local-ipv4", "mac", "placement/", "public-keys/",
                  "reservation-id", "security-groups", "network/"):
        assert entry in md
    assert get(app, "/latest/meta-data").text.split("\n") == md   # no trailing slash: same listing
    assert get(app, "/latest/").text.split("\n") == ["dynamic/", "meta-data/", "user-data"]
    assert get(app, "/latest/meta-data/public-keys/").text == "0=mykey"
    assert get(app, "/latest/meta-data/public-keys/0/").text == "openssh-key"
    assert get(app, "/latest/meta-data/placement/").text == "availability-zone\nregion"
    assert get(app, "/latest/meta-data/network/interfaces/macs/").text == "02:aa:bb:cc:dd:01/"
    assert "local-ipv4s" in get(app, "/latest/meta-data/network/interfaces/macs/02:aa:bb:cc:dd:01/"
                                ).text.split("\n")
    assert get(app, "/latest/dynamic/").text == "instance-identity/"
    assert get(app, "/latest/dynamic/instance-identity/").text == "document"
    assert "latest" in get(app, "/").text.split("\n")


def test_identity_document(app: FastAPI) -> None:
    doc = json.loads(get(app, "/2021-03-23/dynamic/instance-identity/document").text)
    assert doc == doc | {
        "accountId": "123456789012", "architecture": "x86_64", "availabilityZone": "lxcloud-1a",
        "imageId": "ami-00000000000000001", "instanceId": "i-0123456789abcdef0",
        "instanceType": "t3.micro", "privateIp": IP_A, "region": "lxcloud-1",
        "pendingTime": "2024-05-06T07:08:09Z", "version": "2017-09-30"}


def test_each_caller_sees_only_its_own_instance(app: FastAPI) -> None:
    assert get(app, "/latest/meta-data/instance-id", IP_B).text == "i-0fedcba98765432100"
    assert get(app, "/latest/meta-data/placement/availability-zone", IP_B).text == "lxcloud-1b"
    # no key: no public-keys/ at all, as EC2; no user data: 404, as EC2
    assert "public-keys/" not in get(app, "/latest/meta-data/", IP_B).text.split("\n")
    assert get(app, "/latest/meta-data/public-keys/", IP_B).status_code == 404
    assert get(app, "/latest/user-data", IP_B).status_code == 404
    assert get(app, "/latest/", IP_B).text.split("\n") == ["dynamic/", "meta-data/"]
    # an address that is no instance gets nothing
    for path in ("/latest/meta-data/instance-id", "/latest/", "/"):
        assert get(app, path, IP_NOBODY).status_code == 404
    r = client(app, IP_NOBODY).put("/latest/api/token", headers={TTL_HEADER: "60"})
    assert r.status_code == 404


def test_unknown_paths_and_versions(app: FastAPI) -> None:
    for path in ("/latest/meta-data/nope", "/latest/meta-data/instance-id/more",
                 "/2021-3-23/meta-data/instance-id", "/v1/meta-data/instance-id",
                 "/latest/meta-data/public-keys/1/openssh-key", "/latest/dynamic/nope"):
        assert get(app, path).status_code == 404, path
    assert client(app).post("/latest/meta-data/instance-id").status_code == 405


def test_imdsv2_token_flow(app: FastAPI, clock: Clock) -> None:
    c = client(app)
    r = c.put("/latest/api/token", headers={TTL_HEADER: "60"})
    assert r.status_code == 200 and r.headers[TTL_HEADER] == "60"
    token = r.text
    ok = c.get("/latest/meta-data/instance-id", headers={TOKEN_HEADER: token})
    assert ok.status_code == 200 and ok.text == VIEW_A.instance_id
    # IMDSv1 (no token at all) stays allowed: EC2's default "optional"
    assert c.get("/latest/meta-data/instance-id").status_code == 200
    # a garbled, a forged or another address's token is refused
    assert c.get("/latest/meta-data/instance-id", headers={TOKEN_HEADER: "garbage!"}).status_code == 401
    assert c.get("/latest/meta-data/instance-id",
                 headers={TOKEN_HEADER: token[:-2] + ("AA" if token[-2:] != "AA" else "BB")}
                 ).status_code == 401
    assert get(app, "/latest/meta-data/instance-id", IP_B, **{TOKEN_HEADER: token}).status_code == 401
    forged = issue_token(b"other-secret", IP_A, 60, clock.now)
    assert c.get("/latest/meta-data/instance-id", headers={TOKEN_HEADER: forged}).status_code == 401
    # expiry
    clock.now += 59
    assert c.get("/latest/meta-data/instance-id", headers={TOKEN_HEADER: token}).status_code == 200
    clock.now += 2
    assert c.get("/latest/meta-data/instance-id", headers={TOKEN_HEADER: token}).status_code == 401


@pytest.mark.parametrize("ttl", [None, "0", "-1", str(MAX_TTL + 1), "abc", ""])
def test_token_ttl_must_be_in_range(app: FastAPI, ttl: str | None) -> None:
    headers = {} if ttl is None else {TTL_HEADER: ttl}
    assert client(app).put("/latest/api/token", headers=headers).status_code == 400


def test_token_limits(app: FastAPI) -> None:
    c = client(app)
    assert c.put("/latest/api/token", headers={TTL_HEADER: "1"}).status_code == 200
    assert c.put("/latest/api/token", headers={TTL_HEADER: str(MAX_TTL)}).status_code == 200
    # a proxied token request is refused, as EC2 does
    r = c.put("/latest/api/token", headers={TTL_HEADER: "60", "X-Forwarded-For": "1.2.3.4"})
    assert r.status_code == 403
    # tokens come only from /latest/api/token
    assert c.put("/latest/meta-data/instance-id", headers={TTL_HEADER: "60"}).status_code == 405


def test_token_helpers() -> None:
    t = issue_token(SECRET, IP_A, 10, now=100)
    assert verify_token(SECRET, IP_A, t, now=109.9)
    assert not verify_token(SECRET, IP_A, t, now=110)
    assert not verify_token(SECRET, IP_B, t, now=100)
    assert not verify_token(b"x", IP_A, t, now=100)
    assert not verify_token(SECRET, IP_A, "", now=100)
    assert not verify_token(SECRET, IP_A, t + "AAAA", now=100)


def test_cloud_init_crawl_materializes(app: FastAPI) -> None:
    """Walk the tree the way cloud-init 22.4's MetadataMaterializer does (listings, `0=name` keys)."""
    c = client(app)

    def crawl(url: str) -> dict[str, object]:
        out: dict[str, object] = {}
        for line in c.get(url).text.splitlines():
            line = line.strip()
            if line.endswith("/"):
                out[line.rstrip("/")] = crawl(url + line)
            else:
                ident, _, name = line.partition("=")
                if name and ident.isdigit():
                    out[name] = c.get(f"{url}{ident}/openssh-key").text
                else:
                    r = c.get(url + line)
                    assert r.status_code == 200, url + line
                    out[line] = r.text
        return out

    md = crawl("/2021-03-23/meta-data/")
    assert md["instance-id"] == VIEW_A.instance_id
    assert md["public-keys"] == {"mykey": KEY}
    assert md["placement"] == {"availability-zone": "lxcloud-1a", "region": "lxcloud-1"}
    macs = md["network"]["interfaces"]["macs"]  # type: ignore[index]
    assert macs["02:aa:bb:cc:dd:01"]["local-ipv4s"] == IP_A
