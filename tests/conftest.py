"""Shared test configuration: markers and the root check."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root")
    for item in items:
        if "integration" in item.nodeid or "e2e" in item.nodeid:
            item.add_marker(skip)
