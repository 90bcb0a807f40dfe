"""GET /api/v1/doctor (admins) and `lxcloud doctor [--json]` over a fake node whose doctor
answers made-up facts: the cloud's networks are what it is asked about, a failure exits 1."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.node import doctor
from lxcloud.node.doctor import WARN, Check, Link
from lxcloud.services.cloud import Cloud
from tests.unit.cli.conftest import Run
from tests.unit.fakes import FakeNode
from tests.unit.node.test_doctor import TABLE, healthy


@pytest.fixture
def sick(node: FakeNode, monkeypatch: pytest.MonkeyPatch) -> list[list[NetworkSpec]]:
    """The fake node's doctor: ip_forward off, whatever else; the networks it was asked about."""
    asked: list[list[NetworkSpec]] = []

    def fake(networks: list[NetworkSpec], uplinks: list[str]) -> list[Check]:
        asked.append(list(networks))
        return doctor.checks(healthy(sysctls={"net.ipv4.ip_forward": "0",
                                              "net.bridge.bridge-nf-call-iptables": "1"},
                                     links=[Link(n.bridge, "bridge", True) for n in networks],
                                     routes=[], tables=[f"inet {n.nft_table}" for n in networks]),
                             networks, networks[0].nft_table if networks else TABLE)
    monkeypatch.setattr(node, "doctor", fake)
    return asked


def test_rest_doctor_is_for_admins_and_names_the_clouds_networks(
        api: TestClient, cloud: Cloud, sick: list[list[NetworkSpec]]) -> None:
    r = api.get("/api/v1/doctor")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "fail"
    fwd = next(c for c in body["checks"] if c["name"] == "ip_forward")
    assert fwd == {"name": "ip_forward", "status": "fail", "message": fwd["message"],
                   "fix": "sysctl -w net.ipv4.ip_forward=1"}
    assert [n.bridge for n in sick[-1]] == [cloud.settings.bridge_name]
    cloud.accounts.create_project("p1")
    _user, token = cloud.accounts.create_user("bob", "p1")
    assert api.get("/api/v1/doctor", headers={"Authorization": f"Bearer {token}"}
                   ).status_code == 403


def test_cli_doctor_exits_non_zero_on_a_failure(run: Run, sick: list[list[NetworkSpec]],
                                                node: FakeNode,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    r = run("doctor")
    assert r.exit_code == 1
    assert "ip_forward" in r.output and "sysctl -w net.ipv4.ip_forward=1" in r.output
    assert "fail: 1 failed" in r.output
    r = run("doctor", "--json")
    assert r.exit_code == 1
    assert json.loads(r.output)["status"] == "fail"
    monkeypatch.setattr(node, "doctor", lambda networks, uplinks: [Check("x", WARN, "a warning", "do")])
    r = run("doctor")
    assert r.exit_code == 0 and "warn: 0 failed, 1 warning(s), 0 ok" in r.output
