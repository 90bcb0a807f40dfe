"""The CLI's NIC commands over the REST API and a fake node: launch with limits, nic attach
(next free, fixed, no address), nic list/set/detach, and the refusals as one error line."""

from __future__ import annotations

from typing import Any

from tests.unit.cli.conftest import Run
from tests.unit.cli.test_storage import as_json, failed, ok


def test_nic_attach_list_set_detach(run: Run, image: Any) -> None:
    ok(run("network", "create", "side", "--subnet", "10.252.30.0/24"))
    ok(run("network", "create", "bare", "--subnet", "10.252.31.0/24"))
    ok(run("launch", "bb", "web", "--ingress", "20Mbit", "--egress", "10Mbit", "--wait"))
    out = ok(run("nic", "attach", "web", "--network", "side", "--ip", "10.252.30.50")).stdout
    assert out.startswith("web: eth1 on side at 10.252.30.50 (")
    out = ok(run("nic", "attach", "web", "--network", "bare", "--no-ip")).stdout
    assert out.startswith("web: eth2 on bare at no address (")
    table = ok(run("nic", "list", "web")).stdout
    assert "INGRESS" in table and "20Mbit" in table and "10Mbit" in table
    nics = as_json(run, "nic", "list", "web")
    assert [(n["name"], n["ipv4"]) for n in nics] == [
        ("eth0", nics[0]["ipv4"]), ("eth1", "10.252.30.50"), ("eth2", None)]
    out = ok(run("nic", "set", "web", "eth1", "--egress", "1Gbit")).stdout
    assert out.strip() == "web: eth1 ingress 20Mbit, egress 1Gbit"
    shown = ok(run("show", "web")).stdout
    assert "eth1 on side, 10.252.30.50" in shown and "egress 1Gbit" in shown
    failed(run("nic", "detach", "web", "eth0"), "primary interface")
    failed(run("nic", "set", "web", "eth0", "--egress", "fast"), "not a rate")
    failed(run("nic", "attach", "web", "--network", "nowhere"), "not found")
    assert ok(run("nic", "detach", "web", "eth2")).stdout.strip() == "web: eth2 detached"
    assert [n["name"] for n in as_json(run, "show", "web")["nics"]] == ["eth0", "eth1"]
    failed(run("launch", "bb", "slow", "--egress", "4bit"), "smallest")
