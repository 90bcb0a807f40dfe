"""The dashboard's shell, with a real container: the interactive exec websocket (a shell on a pty:
output, resize, exit code) and its refusals. The console websocket shares its bridge (resize)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from lxcloud.api.rest.app import create_app
from lxcloud.services.cloud import Cloud
from lxcloud.services.instances import LaunchRequest
from tests.integration.services.stack import Stack, running_stack, wait

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("lxcloud-terms-") as st:
        yield st


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[TestClient]:
    c: Cloud = stack.cloud
    [(inst, op)] = c.instances.launch(LaunchRequest(image="busybox", name="t1", memory="64MiB"))
    assert op is not None
    wait(c, op.id)
    with TestClient(create_app(c)) as tc:
        yield tc


def read_until(ws, needle: bytes, limit: int = 400) -> bytes:  # type: ignore[no-untyped-def]
    """Frames until `needle` shows, answering as a terminal does: busybox's shell asks where the
    cursor is (ESC [6n) and waits for the answer before it prompts."""
    got = b""
    for _ in range(limit):          # frames, not time: each receive blocks until one comes
        frame = ws.receive_bytes()
        if b"\x1b[6n" in frame:
            ws.send_bytes(b"\x1b[1;1R")
        got += frame
        if needle in got:
            return got
    raise AssertionError(f"{needle!r} not in {got[-500:]!r}")


def test_a_shell_runs_resizes_and_reports_its_exit(api: TestClient, stack: Stack) -> None:
    tok = stack.cloud.admin_token
    with api.websocket_connect(f"/api/v1/instances/t1/exec/ws?token={tok}&cols=100&rows=30") as ws:
        read_until(ws, b"\x1b[6n")   # the prompt (input typed before it would be dropped)
        ws.send_bytes(b"stty size; echo lx$((6*7))\n")
        out = read_until(ws, b"lx42")
        assert b"30 100" in out
        ws.send_text(json.dumps({"resize": [120, 40]}))
        ws.send_bytes(b"stty size\n")
        read_until(ws, b"40 120")
        ws.send_bytes(b"exit 3\n")
        with pytest.raises(WebSocketDisconnect) as e:
            for _ in range(400):
                ws.receive_bytes()
        assert e.value.code == 1000 and e.value.reason == "exit 3"


def test_a_one_shot_command_and_refusals(api: TestClient, stack: Stack) -> None:
    tok = stack.cloud.admin_token
    with api.websocket_connect(f"/api/v1/instances/t1/exec/ws?token={tok}&command=echo%20hi%20there") as ws:
        assert b"hi there" in read_until(ws, b"hi there")
    for url, code in (("/api/v1/instances/t1/exec/ws?token=nope", 4401),
                      (f"/api/v1/instances/nosuch/exec/ws?token={tok}", 4404),
                      (f"/api/v1/instances/t1/exec/ws?token={tok}&command=%22unclosed", 4400)):
        with pytest.raises(WebSocketDisconnect) as e, api.websocket_connect(url) as ws:
            ws.receive_bytes()
        assert e.value.code == code, (url, e.value.code, e.value.reason)
