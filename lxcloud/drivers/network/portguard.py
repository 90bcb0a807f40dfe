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

import threading
from typing import Any

from lxcloud.core.errors import DriverError

Json = dict[str, Any]
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
    """libnftables calls for the guard table (one context, behind a lock)."""

    def __init__(self) -> None:
        self._nft: Any = None
        self._lock = threading.Lock()

    def _run(self, cmds: list[Json], what: str, missing_ok: bool = False) -> Any:
        with self._lock:
            if self._nft is None:
                import nftables

                self._nft = nftables.Nftables()
                self._nft.set_json_output(True)
            rc, out, err = self._nft.json_cmd({"nftables": cmds})
        if rc != 0:
            if missing_ok and "No such file or directory" in (err or ""):
                return None
            raise DriverError(f"nftables: {what} failed (rc {rc})", stderr=err or "")
        return out

    def ensure(self, table: str, port_prefix: str) -> None:
        self._run(ruleset(table, port_prefix), f"port guard of {table}")

    def allow(self, table: str, port: str, ip: str) -> None:
        self._run([{"add": {"element": {"family": FAMILY, "table": table, "name": SET,
                                        "elem": [{"concat": [port, ip]}]}}}],
                  f"allow {ip} on {port}")

    def forget(self, table: str, port: str) -> None:
        """Removes every address of `port`. Missing table or port: no-op."""
        elems = [e for e in self.elements(table) if e[0] == port]
        if elems:
            self._run([{"delete": {"element": {"family": FAMILY, "table": table, "name": SET,
                                               "elem": [{"concat": list(e)} for e in elems]}}}],
                      f"forget {port}", missing_ok=True)

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
