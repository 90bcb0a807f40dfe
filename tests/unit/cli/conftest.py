"""CLI fixtures: `lxcloud` run in-process (typer's CliRunner) against the REST app over a fake node."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from lxcloud.cli.client import Client
from lxcloud.cli.common import Globals
from lxcloud.cli.main import app

Run = Callable[..., Result]


@pytest.fixture
def run(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> Run:
    """run(*args) -> Result of `lxcloud ARGS…`, its client talking to `api` in-process."""
    client = Client(str(api.base_url), api.headers["Authorization"].removeprefix("Bearer "))
    client.http = api
    monkeypatch.setattr(Globals, "client", lambda self: client)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), catch_exceptions=False)
    return invoke
