"""Unit-test fixtures: a cloud over a FakeNode in a temp data dir, and a REST client for it."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lxcloud.api.rest.app import create_app
from lxcloud.config import Settings
from lxcloud.services.cloud import Cloud
from tests.unit.fakes import FakeNode


def make_tar(path: Path, files: dict[str, bytes] | None = None) -> Path:
    files = files or {"etc/os-release": b'ID=busybox\nVERSION_ID="1.35"\n', "bin/sh": b"\x7fELF"}
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def cloud(tmp_path: Path, node: FakeNode) -> Iterator[Cloud]:
    settings = Settings.load(tmp_path / "data", default_network_cidr="10.251.7.0/28",
                             reconcile_interval=0, metrics_interval=0)
    c = Cloud(settings, node)  # type: ignore[arg-type]
    c.startup(reconcile_loop=False)
    yield c
    c.close()


@pytest.fixture
def api(cloud: Cloud) -> Iterator[TestClient]:
    with TestClient(create_app(cloud)) as tc:
        tc.headers["Authorization"] = f"Bearer {cloud.admin_token}"
        yield tc


@pytest.fixture
def image(api: TestClient, tmp_path: Path) -> dict[str, object]:
    tar = make_tar(tmp_path / "bb.tar")
    r = api.post("/api/v1/images", params={"name": "bb"}, content=tar.read_bytes())
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@contextmanager
def serve(cloud: Cloud) -> Iterator[str]:
    """The cloud's HTTP app served by a real uvicorn on a free loopback port (boto3 needs HTTP).
    The socket listens before the server thread starts: early requests wait in its backlog, so
    nothing has to wait for the server to come up."""
    import socket
    import threading

    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    cloud.settings.url_file.write_text(f"http://127.0.0.1:{port}\n")
    server = uvicorn.Server(uvicorn.Config(create_app(cloud), log_level="warning", lifespan="on"))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)
        sock.close()


@pytest.fixture
def ec2_server(cloud: Cloud) -> Iterator[str]:
    with serve(cloud) as url:
        yield url


def ec2_client(url: str, access_key_id: str, secret: str):  # type: ignore[no-untyped-def]
    """A boto3 EC2 client for the cloud served at `url`."""
    import boto3

    return boto3.client("ec2", endpoint_url=f"{url}/ec2/", region_name="lxcloud-1",
                        aws_access_key_id=access_key_id, aws_secret_access_key=secret)


@pytest.fixture
def ec2(ec2_server: str, cloud: Cloud):  # type: ignore[no-untyped-def]
    key = cloud.admin_key
    return ec2_client(ec2_server, key.access_key_id, key.secret_access_key)
