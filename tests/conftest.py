"""Shared test configuration: markers and the root check."""

from __future__ import annotations

import os

import pytest

# the browser fixtures (playwright, browser, page, shots) for the dashboard's e2e tests
pytest_plugins = ["tests.e2e.browser"]


def pytest_configure(config: pytest.Config) -> None:
    # Every program the tests start gets an empty stdin: `lxcloud exec`, ssh and friends read a
    # non-terminal stdin, and a CI runner's may be a pipe that never closes.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root")
    for item in items:
        if "integration" in item.nodeid or "e2e" in item.nodeid:
            item.add_marker(skip)
