"""nftables rules for a cloud's networks, through libnftables' JSON API (Debian python3-nftables).

One table `inet <spec.nft_table>` per cloud. Inside it each network (bridge) owns four base chains,
named after its bridge so that several networks of one cloud never touch each other's rules:

  <bridge>_prerouting   nat/dstnat:  when spec.metadata_port is set, 169.254.169.254:80 from the
                                     bridge -> gateway:metadata_port (the metadata service)
  <bridge>_postrouting  nat/srcnat:  nat mode: masquerade the subnet leaving through any other
                                     interface (routed and isolated: no NAT)
  <bridge>_forward      filter:      established/related pass; leaving: to the world beyond the host
                                     (never to another instance network, of this cloud or another;
                                     isolated: nowhere); entering: DNATed traffic (public addresses,
                                     port forwards), and on a routed network what comes from beyond
  <bridge>_input        filter:      from the bridge only DHCP, DNS, the metadata port, ICMP, replies
                                     and the network's allowed host ports reach the host; the
                                     metadata port from anywhere else is dropped

Each network has its own bridge and gateway, so the DNAT of one cloud's network never sends an
instance to another cloud's metadata service.

Every chain's policy is accept, so we never break other users of the host. Each apply is one atomic
transaction (add table, add chains, flush them, add the rules): re-applying is idempotent and a
half-written table is never visible.
"""

from __future__ import annotations

from typing import Any

from lxcloud.core.errors import DriverError
from lxcloud.core.ipam import NetworkPlan
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.drivers.network.nft import NFT, Json, Nft

FAMILY = "inet"
_CHAIN_KINDS = ("prerouting", "postrouting", "forward", "input")
METADATA_IP = "169.254.169.254"


def chain_names(bridge: str) -> dict[str, str]:
    """The chain names one network owns inside its cloud's table."""
    return {kind: f"{bridge}_{kind}" for kind in _CHAIN_KINDS}


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


def _prefix(cidr: str) -> Json:
    plan = NetworkPlan.from_cidr(cidr)
    return {"prefix": {"addr": plan.network, "len": plan.prefix}}


def ruleset(spec: NetworkSpec) -> list[Json]:
    """The nftables JSON commands (without the outer {"nftables": …}) that make spec's rules."""
    table = spec.nft_table
    names = chain_names(spec.bridge)
    br = spec.bridge
    cmds: list[Json] = [{"add": {"table": {"family": FAMILY, "name": table}}}]
    # The prerouting chain exists even without a metadata port, so that unsetting the port flushes
    # the DNAT away like every other rule.
    hooks = {"prerouting": ("nat", "prerouting", -100), "postrouting": ("nat", "postrouting", 100),
             "forward": ("filter", "forward", 0), "input": ("filter", "input", 0)}
    for kind, (ctype, hook, prio) in hooks.items():
        cmds.append({"add": {"chain": {"family": FAMILY, "table": table, "name": names[kind],
                                       "type": ctype, "hook": hook, "prio": prio,
                                       "policy": "accept"}}})
        cmds.append({"flush": {"chain": {"family": FAMILY, "table": table, "name": names[kind]}}})

    def rule(kind: str, *expr: Json) -> Json:
        return {"add": {"rule": {"family": FAMILY, "table": table, "chain": names[kind],
                                 "expr": list(expr)}}}

    if spec.mode == "nat" and spec.nat:
        cmds.append(rule("postrouting",
                         _match(_payload("ip", "saddr"), _prefix(spec.cidr)),
                         _match(_meta("oifname"), br, "!="),
                         {"masquerade": None}))
    ours = f"{spec.bridge_prefix}*"     # every cloud's bridges: its instances' networks
    cmds += [
        rule("forward", _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
             {"accept": None}),
        rule("forward", _match(_meta("iifname"), br), _match(_meta("oifname"), br),
             {"accept": None}),
    ]
    # Leaving the network: an isolated one reaches nothing; the others never reach another
    # instance network (this cloud's or another's) — only the world beyond the host, and the
    # public addresses and port forwards (DNATed) that lead to another network's instances.
    if spec.mode == "isolated":
        cmds.append(rule("forward", _match(_meta("iifname"), br), {"drop": None}))
    else:
        not_dnat = _match({"&": [{"ct": {"key": "status"}}, "dnat"]}, 0)
        cmds += [rule("forward", _match(_meta("iifname"), br), _match(_meta("oifname"), ours),
                      not_dnat, {"drop": None}),
                 rule("forward", _match(_meta("iifname"), br), {"accept": None})]
    # Entering it: what a public address or a port forward sent (DNAT); on a routed network
    # also what comes from beyond the host; never a new connection from another instance network.
    cmds.append(rule("forward", _match(_meta("oifname"), br),
                     _match({"ct": {"key": "status"}}, "dnat", "in"), {"accept": None}))
    if spec.mode == "routed":
        cmds.append(rule("forward", _match(_meta("oifname"), br),
                         _match(_meta("iifname"), ours, "!="), {"accept": None}))
    cmds.append(rule("forward", _match(_meta("oifname"), br), {"drop": None}))
    cmds += [
        rule("input", _match(_meta("iifname"), br), _match(_meta("l4proto"), "udp"),
             _match(_payload("udp", "dport"), {"set": [53, 67]}), {"accept": None}),
        rule("input", _match(_meta("iifname"), br), _match(_meta("l4proto"), "tcp"),
             _match(_payload("tcp", "dport"), 53), {"accept": None}),
    ]
    if spec.metadata_port:
        cmds += [
            rule("prerouting", _match(_meta("iifname"), br),
                 _match(_payload("ip", "daddr"), METADATA_IP), _match(_meta("l4proto"), "tcp"),
                 _match(_payload("tcp", "dport"), 80),
                 {"dnat": {"family": "ip", "addr": spec.gateway, "port": spec.metadata_port}}),
            rule("input", _match(_meta("iifname"), br), _match(_meta("l4proto"), "tcp"),
                 _match(_payload("ip", "daddr"), spec.gateway),
                 _match(_payload("tcp", "dport"), spec.metadata_port), {"accept": None}),
            # The service tells who asks by the source address: only this bridge may reach it, so
            # another network's (or cloud's) instance can't ask with an address of its own subnet.
            rule("input", _match(_meta("iifname"), br, "!="), _match(_meta("l4proto"), "tcp"),
                 _match(_payload("ip", "daddr"), spec.gateway),
                 _match(_payload("tcp", "dport"), spec.metadata_port), {"drop": None}),
        ]
    # The host is reached from the network only for the above (and what the operator allows):
    # not sshd, nor anything else listening on the host's addresses.
    cmds += [rule("input", _match(_meta("iifname"), br),
                  _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
                  {"accept": None}),
             rule("input", _match(_meta("iifname"), br), _match(_meta("l4proto"), "icmp"),
                  {"accept": None})]
    for hp in spec.host_ports:
        proto, _, ports = hp.partition("/")
        first, _, last = ports.partition("-")
        port: Any = int(first) if not last else {"range": [int(first), int(last)]}
        cmds.append(rule("input", _match(_meta("iifname"), br), _match(_meta("l4proto"), proto),
                         _match(_payload(proto, "dport"), port), {"accept": None}))
    cmds.append(rule("input", _match(_meta("iifname"), br), {"drop": None}))
    return cmds


class Firewall:
    """The cloud tables' NAT, forward and input rules, through the shared libnftables context."""

    def __init__(self, nft: Nft | None = None) -> None:
        self.nft = nft or NFT

    def apply(self, spec: NetworkSpec) -> None:
        """Create or replace spec's rules in its cloud table, atomically. Idempotent."""
        self.nft.run(ruleset(spec), f"apply rules of {spec.bridge} in {FAMILY} {spec.nft_table}")

    def validate(self, spec: NetworkSpec) -> bool:
        """Check spec's JSON against libnftables' schema (needs jsonschema). Raises if invalid."""
        return self.nft.validate(ruleset(spec))

    def table_exists(self, name: str) -> bool:
        return self.list_table(name) is not None

    def list_table(self, name: str) -> list[Json] | None:
        """The table's contents as nftables JSON objects, None when there is no such table."""
        try:
            out = self.nft.run([{"list": {"table": {"family": FAMILY, "name": name}}}],
                               f"list table {name}", missing_ok=True)
        except DriverError:
            return None
        if out is None:
            return None
        return [o for o in out.get("nftables", []) if "metainfo" not in o]

    def remove_network(self, spec: NetworkSpec) -> None:
        """Delete spec's chains; the table goes too once no chain is left in it. Missing: no-op."""
        content = self.list_table(spec.nft_table)
        if content is None:
            return
        ours = set(chain_names(spec.bridge).values())
        chains = {o["chain"]["name"] for o in content if "chain" in o}
        if not chains - ours:
            self.remove_table(spec.nft_table)
            return
        cmds: list[Json] = [{"delete": {"chain": {"family": FAMILY, "table": spec.nft_table,
                                                  "name": c}}} for c in sorted(chains & ours)]
        if cmds:
            self.nft.run(cmds, f"remove chains of {spec.bridge} from {FAMILY} {spec.nft_table}")

    def remove_table(self, name: str) -> None:
        """Delete the whole cloud table. Missing: no-op."""
        self.nft.run([{"delete": {"table": {"family": FAMILY, "name": name}}}],
                     f"delete table {FAMILY} {name}", missing_ok=True)

    def rules_of(self, spec: NetworkSpec) -> list[Json]:
        """spec's rules as listed by the kernel (for checks and tests); [] when absent."""
        content = self.list_table(spec.nft_table) or []
        ours = set(chain_names(spec.bridge).values())
        return [o["rule"] for o in content if "rule" in o and o["rule"]["chain"] in ours]
