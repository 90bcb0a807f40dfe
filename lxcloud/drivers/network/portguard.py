"""Address anti-spoofing on a cloud's bridge: an instance's port may only send from its own address.

The metadata service tells instances apart by source address, and tenants share a bridge: without
this, root in one container could take a neighbour's address and read its user data and keys.

One `bridge <table>` per cloud (nftables' bridge family sees frames as they enter the bridge from
a port): a set `ports` of (host veth name . IPv4 address) and a chain that drops IPv4 and ARP from
the cloud's instance ports (their names start with the cloud's veth prefix) whose sender address is
not the port's own. DHCP requests (sent from 0.0.0.0) pass. Ports of other clouds, and anything
else on the bridge, are not matched.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from lxcloud.drivers.network.nft import NFT, Json, Nft

FAMILY = "bridge"
SET = "ports"
CHAIN = "guard"


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _iif() -> Json:
    return {"meta": {"key": "iifname"}}


def _payload(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


def ruleset(table: str, port_prefix: str) -> list[Json]:
    """Table, set and chain (the set's elements are kept: only the chain is rewritten)."""
    ours = _match(_iif(), f"{port_prefix}*")

    def rule(*expr: Json) -> Json:
        return {"add": {"rule": {"family": FAMILY, "table": table, "chain": CHAIN,
                                 "expr": list(expr)}}}

    return [
        {"add": {"table": {"family": FAMILY, "name": table}}},
        {"add": {"set": {"family": FAMILY, "table": table, "name": SET,
                         "type": ["ifname", "ipv4_addr"]}}},
        {"add": {"chain": {"family": FAMILY, "table": table, "name": CHAIN, "type": "filter",
                           "hook": "prerouting", "prio": -300, "policy": "accept"}}},
        {"flush": {"chain": {"family": FAMILY, "table": table, "name": CHAIN}}},
        rule(ours, _match(_payload("ip", "saddr"), "0.0.0.0"),
             _match(_payload("udp", "dport"), 67), {"accept": None}),
        rule(ours, _match(_payload("ether", "type"), "ip"),
             _match({"concat": [_iif(), _payload("ip", "saddr")]}, f"@{SET}", "!="),
             {"drop": None}),
        rule(ours, _match(_payload("ether", "type"), "arp"),
             _match({"concat": [_iif(), _payload("arp", "saddr ip")]}, f"@{SET}", "!="),
             {"drop": None}),
    ]


class PortGuard:
    """The guard table's chain and port set, through the shared libnftables context."""

    def __init__(self, nft: Nft | None = None) -> None:
        self.nft = nft or NFT

    def _run(self, cmds: list[Json], what: str, missing_ok: bool = False) -> Any:
        return self.nft.run(cmds, what, missing_ok=missing_ok)

    def ensure(self, table: str, port_prefix: str) -> None:
        self._run(ruleset(table, port_prefix), f"port guard of {table}")

    def allow(self, table: str, port: str, ip: str) -> None:
        self._run([{"add": {"element": {"family": FAMILY, "table": table, "name": SET,
                                        "elem": [{"concat": [port, ip]}]}}}],
                  f"allow {ip} on {port}")

    def forget(self, table: str, ports: Collection[str]) -> None:
        """Removes every address of these ports. Missing table or ports: no-op."""
        wanted = set(ports)
        elems = [e for e in self.elements(table) if e[0] in wanted]
        if elems:
            self._run([{"delete": {"element": {"family": FAMILY, "table": table, "name": SET,
                                               "elem": [{"concat": list(e)} for e in elems]}}}],
                      f"forget {', '.join(sorted(wanted))}", missing_ok=True)

    def sync(self, table: str, ports: dict[str, str]) -> None:
        """The set becomes exactly `ports` (port -> address), in one transaction."""
        cmds: list[Json] = [{"flush": {"set": {"family": FAMILY, "table": table, "name": SET}}}]
        if ports:
            cmds.append({"add": {"element": {"family": FAMILY, "table": table, "name": SET,
                                             "elem": [{"concat": [p, ip]} for p, ip in
                                                      sorted(ports.items())]}}})
        self._run(cmds, f"sync port guard of {table}")

    def elements(self, table: str) -> list[tuple[str, str]]:
        out = self._run([{"list": {"set": {"family": FAMILY, "table": table, "name": SET}}}],
                        f"list {table} ports", missing_ok=True)
        if not out:
            return []
        for obj in out.get("nftables", []):
            if "set" in obj:
                return [tuple(e["concat"]) for e in obj["set"].get("elem", [])
                        if isinstance(e, dict) and "concat" in e]  # type: ignore[misc]
        return []

    def remove(self, table: str) -> None:
        self._run([{"delete": {"table": {"family": FAMILY, "name": table}}}],
                  f"delete {table}", missing_ok=True)
