"""The security-group driver's rule checks and nftables expressions, against a recording Nft."""

from __future__ import annotations

from typing import Any

import pytest

from lxcloud.core.errors import InvalidInput
from lxcloud.drivers.network import secgroups
from lxcloud.drivers.network.nft import Json
from lxcloud.drivers.network.secgroups import (
    GroupPolicy,
    PortPolicy,
    SecurityGroupRule,
    SecurityGroups,
    rule_expr,
)


class RecordingNft:
    def __init__(self) -> None:
        self.calls: list[list[Json]] = []

    def run(self, cmds: list[Json], what: str, *, missing_ok: bool = False) -> Json | None:
        if cmds and "list" in cmds[0]:
            return {"nftables": []}
        self.calls.append(cmds)
        return {}


@pytest.mark.parametrize("kw", [
    {"direction": "inbound"},
    {"direction": "ingress", "protocol": "sctp"},
    {"direction": "ingress", "protocol": "tcp", "port_from": 10, "port_to": 5},
    {"direction": "ingress", "protocol": "tcp", "port_from": 10},
    {"direction": "ingress", "protocol": "udp", "port_from": 1, "port_to": 70000},
    {"direction": "ingress", "cidr": "10.0.0.0/33"},
    {"direction": "ingress", "cidr": "fe80::/64"},
    {"direction": "ingress", "cidr": "10.0.0.0/8", "source_group": "sg-1"},
    {"direction": "ingress", "protocol": "icmp", "port_from": 300},
    {"direction": "ingress", "protocol": "icmp", "port_from": -1, "port_to": 0},
])
def test_bad_rules_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        SecurityGroupRule(**kw)


def test_rule_expressions() -> None:
    tcp = rule_expr(SecurityGroupRule("ingress", "tcp", 1000, 2000, cidr="10.1.0.0/16"))
    assert tcp[0]["match"]["left"] == {"payload": {"protocol": "ip", "field": "saddr"}}
    assert tcp[0]["match"]["right"] == {"prefix": {"addr": "10.1.0.0", "len": 16}}
    assert tcp[2]["match"]["right"] == {"range": [1000, 2000]}
    assert tcp[-1] == {"accept": None}
    one = rule_expr(SecurityGroupRule("egress", "udp", 53, 53, cidr="10.0.0.9/32"))
    assert one[0]["match"]["left"]["payload"]["field"] == "daddr"
    assert one[0]["match"]["right"] == "10.0.0.9" and one[2]["match"]["right"] == 53
    # 0.0.0.0/0 and a full port range match anything: no expression for them
    assert rule_expr(SecurityGroupRule("egress", "tcp", 0, 65535, cidr="0.0.0.0/0")) == [
        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
        {"accept": None}]
    assert rule_expr(SecurityGroupRule("egress")) == [{"accept": None}]
    grp = rule_expr(SecurityGroupRule("ingress", "icmp", 8, 0, source_group="sg-ab"))
    assert grp[0]["match"]["right"] == "@sgm_sg_ab"
    assert grp[0]["match"]["left"]["concat"][0] == {"meta": {"key": "iifname"}}
    assert [e["match"]["right"] for e in grp[1:4]] == ["icmp", 8, 0]


def test_a_change_for_many_ports_is_one_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secgroups, "check_bridged_filtering", lambda: None)
    nft = RecordingNft()
    sg = SecurityGroups(nft)  # type: ignore[arg-type]
    ports = [PortPolicy(f"p{i}", "br0", (f"10.0.{i // 200}.{i % 200 + 2}",), ("sg-a",))
             for i in range(100)]
    sg.apply("t", ports, [GroupPolicy("sg-a", (SecurityGroupRule("egress"),))])
    assert len(nft.calls) == 1
    nft.calls.clear()
    sg.update_group("t", GroupPolicy("sg-a", (SecurityGroupRule("ingress", "tcp", 22, 22),)))
    assert len(nft.calls) == 1
    # a rule change rewrites the group's two chains only, whatever the number of members
    chains = {c["add"]["rule"]["chain"] for c in nft.calls[0] if "rule" in c.get("add", {})}
    assert chains == {"sgr_sg_a_in"}


def test_without_bridged_filtering_nothing_is_applied(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Any) -> None:
    off = tmp_path / "call-iptables"
    off.write_text("0\n")
    monkeypatch.setattr(secgroups, "BR_NF", off)
    nft = RecordingNft()
    from lxcloud.core.errors import DriverError
    port = PortPolicy("p0", "br0", ("10.0.0.2",), ("sg-a",))
    with pytest.raises(DriverError, match="bridge-nf-call-iptables"):
        SecurityGroups(nft).apply("t", [port], [])  # type: ignore[arg-type]
    with pytest.raises(DriverError, match="bridge-nf-call-iptables"):
        SecurityGroups(nft).add_port("t", port, [])  # type: ignore[arg-type]
    assert nft.calls == []
    SecurityGroups(nft).apply("t", [], [])  # type: ignore[arg-type]   # nothing to filter: fine
