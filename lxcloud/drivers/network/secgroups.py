"""Security groups: a stateful firewall per instance port, in the cloud's own `inet <table>`.

Why the inet family and addresses, not the bridge family and port names: a bridge table cannot use
conntrack on this kernel (no nf_conntrack_bridge), and an inet chain only ever sees the bridge as
the interface. Bridged IPv4 traffic still passes the inet forward hook (br_netfilter with
`bridge-nf-call-iptables = 1`), so a port is told by (bridge . address) — an address that the port
guard (portguard.py) already pins to its port — and conntrack works for bridged and routed traffic.

Objects, all prefixed `sg` (firewall.py's chains are `<bridge>_*`):

  sg_egress   base chain, forward hook, priority 10: established/related accept, invalid drop,
              `iifname . ip saddr vmap @sg_out`  (traffic leaving an instance)
  sg_ingress  base chain, forward hook, priority 11: the same with `oifname . ip daddr vmap @sg_in`
  sg_out/sg_in   verdict maps (ifname . ipv4_addr) -> goto the port's chain
  sgo_<port>/sgi_<port>  one jump per group of the port to its rule chain, then drop (default deny)
  sgr_<gid>_out/_in      the group's rules, each ending in accept
  sgm_<gid>   the group's members (bridge . address), for rules whose source is a group

An accept ends only its own base chain, so a packet between two instances passes the sender's
egress (sg_egress) and then the receiver's ingress (sg_ingress). A rule change rewrites one group
chain whatever the number of instances; a membership change is set and map element changes plus
the port's two small chains. Every call is one libnftables transaction.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lxcloud.core.errors import DriverError, InvalidInput
from lxcloud.drivers.network.nft import NFT, Json, Nft

FAMILY = "inet"
EGRESS_CHAIN = "sg_egress"
INGRESS_CHAIN = "sg_ingress"
OUT_MAP = "sg_out"
IN_MAP = "sg_in"
BRIDGES = "sg_bridges"   # bridges with filtered ports: IPv6 is not forwarded on them
PRIORITY = 10
PROTOCOLS = ("tcp", "udp", "icmp", "all")
DIRECTIONS = ("ingress", "egress")
BR_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
_KEY = ["ifname", "ipv4_addr"]
_PORT_AND_GROUP = ("sgo_", "sgi_", "sgr_")


@dataclass(frozen=True)
class SecurityGroupRule:
    """One allow rule. tcp/udp: ports port_from..port_to (None: all). icmp: port_from is the ICMP
    type and port_to the code (-1 or None: any), as AWS does. cidr or source_group (a group id,
    matched against its members) is the peer; neither means any address."""

    direction: str
    protocol: str = "all"
    port_from: int | None = None
    port_to: int | None = None
    cidr: str | None = None
    source_group: str | None = None

    def __post_init__(self) -> None:
        check_rule(self)


@dataclass(frozen=True)
class GroupPolicy:
    id: str
    rules: tuple[SecurityGroupRule, ...] = ()


@dataclass(frozen=True)
class PortPolicy:
    """An instance's host-side port: its veth, the bridge it is on, its addresses, its groups."""

    port: str
    bridge: str
    addresses: tuple[str, ...]
    groups: tuple[str, ...] = field(default=())


def check_rule(rule: SecurityGroupRule) -> None:
    """InvalidInput for a rule nftables could not express (before anything is touched)."""
    if rule.direction not in DIRECTIONS:
        raise InvalidInput(f"direction must be one of {', '.join(DIRECTIONS)}, not {rule.direction!r}")
    if rule.protocol not in PROTOCOLS:
        raise InvalidInput(f"protocol must be one of {', '.join(PROTOCOLS)}, not {rule.protocol!r}")
    if rule.cidr is not None and rule.source_group is not None:
        raise InvalidInput("a rule has a CIDR or a source group, not both")
    if rule.cidr is not None:
        try:
            net = ipaddress.ip_network(rule.cidr, strict=False)
        except ValueError as e:
            raise InvalidInput(f"invalid CIDR {rule.cidr!r}") from e
        if net.version != 4:
            raise InvalidInput(f"only IPv4 CIDRs are supported, not {rule.cidr!r}")
    lo, hi = rule.port_from, rule.port_to
    if rule.protocol in ("tcp", "udp"):
        if (lo is None) != (hi is None):
            raise InvalidInput("give both ends of a port range, or neither")
        if lo is not None and hi is not None and not (0 <= lo <= hi <= 65535):
            raise InvalidInput(f"invalid port range {lo}-{hi} (0..65535, from <= to)")
    elif rule.protocol == "icmp":
        for what, v in (("type", lo), ("code", hi)):
            if v is not None and not -1 <= v <= 255:
                raise InvalidInput(f"invalid ICMP {what} {v} (-1 for any, else 0..255)")
        if (lo is None or lo == -1) and hi not in (None, -1):
            raise InvalidInput("an ICMP code needs an ICMP type")


def _ident(s: str) -> str:
    return s.replace("-", "_")


def port_chain(port: str, direction: str) -> str:
    return f"sgo_{port}" if direction == "egress" else f"sgi_{port}"


def group_chain(gid: str, direction: str) -> str:
    return f"sgr_{_ident(gid)}_{'out' if direction == 'egress' else 'in'}"


def member_set(gid: str) -> str:
    return f"sgm_{_ident(gid)}"


def _match(left: Json, right: object, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _ip(field_: str) -> Json:
    return {"payload": {"protocol": "ip", "field": field_}}


def _prefix(cidr: str) -> Json | str:
    net = ipaddress.ip_network(cidr, strict=False)
    if net.prefixlen == 32:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def rule_expr(rule: SecurityGroupRule) -> list[Json]:
    """The nftables expression of one rule (ending in accept)."""
    ingress = rule.direction == "ingress"
    peer_addr, peer_if = (_ip("saddr"), _meta("iifname")) if ingress else (_ip("daddr"),
                                                                           _meta("oifname"))
    expr: list[Json] = []
    if rule.cidr is not None and ipaddress.ip_network(rule.cidr, strict=False).prefixlen > 0:
        expr.append(_match(peer_addr, _prefix(rule.cidr)))
    if rule.source_group is not None:
        expr.append(_match({"concat": [peer_if, peer_addr]}, f"@{member_set(rule.source_group)}"))
    if rule.protocol in ("tcp", "udp"):
        expr.append(_match(_meta("l4proto"), rule.protocol))
        lo, hi = rule.port_from, rule.port_to
        if lo is not None and hi is not None and not (lo == 0 and hi == 65535):
            right: object = lo if lo == hi else {"range": [lo, hi]}
            expr.append(_match({"payload": {"protocol": "th", "field": "dport"}}, right))
    elif rule.protocol == "icmp":
        expr.append(_match(_meta("l4proto"), "icmp"))
        if rule.port_from is not None and rule.port_from != -1:
            expr.append(_match({"payload": {"protocol": "icmp", "field": "type"}}, rule.port_from))
            if rule.port_to is not None and rule.port_to != -1:
                expr.append(_match({"payload": {"protocol": "icmp", "field": "code"}},
                                   rule.port_to))
    expr.append({"accept": None})
    return expr


class _Tx:
    """Commands of one transaction against one table."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.cmds: list[Json] = []

    def _obj(self, **kw: object) -> Json:
        return {"family": FAMILY, "table": self.table, **kw}

    def chain(self, name: str, flush: bool = True, **base: object) -> None:
        self.cmds.append({"add": {"chain": self._obj(name=name, **base)}})
        if flush:
            self.cmds.append({"flush": {"chain": self._obj(name=name)}})

    def rule(self, chain: str, expr: list[Json]) -> None:
        self.cmds.append({"add": {"rule": self._obj(chain=chain, expr=expr)}})

    def set(self, name: str) -> None:
        self.cmds.append({"add": {"set": self._obj(name=name, type=_KEY)}})

    def elements(self, verb: str, name: str, elems: list[object]) -> None:
        if elems:
            self.cmds.append({verb: {"element": self._obj(name=name, elem=elems)}})

    def delete(self, kind: str, name: str) -> None:
        self.cmds.append({"delete": {kind: self._obj(name=name)}})


def _key(bridge: str, addr: str) -> Json:
    return {"concat": [bridge, addr]}


class SecurityGroups:
    """The security-group objects of a cloud table, through the shared libnftables context."""

    def __init__(self, nft: Nft | None = None) -> None:
        self.nft = nft or NFT

    # --- building blocks -------------------------------------------------------------------
    @staticmethod
    def _base(tx: _Tx) -> None:
        tx.cmds.append({"add": {"table": {"family": FAMILY, "name": tx.table}}})
        for m in (OUT_MAP, IN_MAP):
            tx.cmds.append({"add": {"map": tx._obj(name=m, type=_KEY, map="verdict")}})
        tx.cmds.append({"add": {"set": tx._obj(name=BRIDGES, type="ifname")}})
        for name, prio, key, amap in ((EGRESS_CHAIN, PRIORITY, ("iifname", "saddr"), OUT_MAP),
                                      (INGRESS_CHAIN, PRIORITY + 1, ("oifname", "daddr"), IN_MAP)):
            tx.chain(name, type="filter", hook="forward", prio=prio, policy="accept")
            ct = {"ct": {"key": "state"}}
            tx.rule(name, [_match(ct, ["established", "related"], "in"), {"accept": None}])
            tx.rule(name, [_match(ct, "invalid", "in"), {"drop": None}])
            # the cloud is IPv4: no IPv6 (link-local included) between filtered ports
            tx.rule(name, [_match(_meta("nfproto"), "ipv6"),
                           _match(_meta(key[0]), f"@{BRIDGES}"), {"drop": None}])
            tx.rule(name, [{"vmap": {"key": {"concat": [_meta(key[0]), _ip(key[1])]},
                                     "data": f"@{amap}"}}])

    @staticmethod
    def _group(tx: _Tx, group: GroupPolicy) -> None:
        tx.set(member_set(group.id))
        for rule in group.rules:
            if rule.source_group is not None:
                tx.set(member_set(rule.source_group))
        for d in DIRECTIONS:
            tx.chain(group_chain(group.id, d))
            for rule in group.rules:
                if rule.direction == d:
                    tx.rule(group_chain(group.id, d), rule_expr(rule))

    @staticmethod
    def _port(tx: _Tx, p: PortPolicy) -> None:
        for d in DIRECTIONS:
            name = port_chain(p.port, d)
            tx.chain(name)
            for gid in p.groups:
                tx.rule(name, [{"jump": {"target": group_chain(gid, d)}}])
            tx.rule(name, [{"drop": None}])
        keys = [_key(p.bridge, a) for a in p.addresses]
        tx.elements("add", BRIDGES, [p.bridge])
        tx.elements("add", OUT_MAP, [[k, {"goto": {"target": port_chain(p.port, "egress")}}]
                                     for k in keys])
        tx.elements("add", IN_MAP, [[k, {"goto": {"target": port_chain(p.port, "ingress")}}]
                                    for k in keys])
        for gid in p.groups:
            tx.elements("add", member_set(gid), list(keys))

    def _run(self, tx: _Tx, what: str) -> None:
        self.nft.run(tx.cmds, what)

    # --- the contract ----------------------------------------------------------------------
    def ensure(self, table: str) -> None:
        """The base chains and maps (element-preserving). Raises DriverError when bridged traffic
        bypasses the inet hooks (then no rule could see instance-to-instance packets)."""
        check_bridged_filtering()
        tx = _Tx(table)
        self._base(tx)
        self._run(tx, f"security groups of {FAMILY} {table}")

    def apply(self, table: str, ports: Sequence[PortPolicy], groups: Sequence[GroupPolicy]) -> None:
        """Full sync: the table's security-group state becomes exactly `ports` and `groups`, in
        one transaction. Groups named by a port or a rule but absent from `groups` get no rules.
        (Bridged filtering is checked when there are ports to filter: a cloud with no instance
        starts on a host without it, and `lxcloud doctor` says what to do.)"""
        if ports:
            check_bridged_filtering()
        have = self.objects(table)
        tx = _Tx(table)
        self._base(tx)
        for m in (OUT_MAP, IN_MAP):
            tx.cmds.append({"flush": {"map": tx._obj(name=m)}})
        tx.cmds.append({"flush": {"set": tx._obj(name=BRIDGES)}})
        known = {g.id: g for g in groups}
        for p in ports:
            for gid in p.groups:
                known.setdefault(gid, GroupPolicy(gid))
        for g in list(known.values()):
            for r in g.rules:
                if r.source_group is not None:
                    known.setdefault(r.source_group, GroupPolicy(r.source_group))
        # Empty every port chain of ours first: only then may stale group chains be deleted.
        for name in have["chain"]:
            if name.startswith(("sgo_", "sgi_")):
                tx.cmds.append({"flush": {"chain": tx._obj(name=name)}})
        for g in known.values():
            tx.set(member_set(g.id))
            tx.cmds.append({"flush": {"set": tx._obj(name=member_set(g.id))}})
            self._group(tx, g)
        for p in ports:
            self._port(tx, p)
        want_chains = {port_chain(p.port, d) for p in ports for d in DIRECTIONS}
        want_chains |= {group_chain(g, d) for g in known for d in DIRECTIONS}
        stale_ports = [c for c in have["chain"] if c.startswith(("sgo_", "sgi_"))
                       and c not in want_chains]
        stale_groups = [c for c in have["chain"] if c.startswith("sgr_") and c not in want_chains]
        for c in stale_ports:
            tx.delete("chain", c)
        for c in stale_groups:
            tx.cmds.append({"flush": {"chain": tx._obj(name=c)}})
        for c in stale_groups:
            tx.delete("chain", c)
        for s in have["set"]:
            if s.startswith("sgm_") and s not in {member_set(g) for g in known}:
                tx.delete("set", s)
        self._run(tx, f"apply security groups to {len(ports)} port(s) in {FAMILY} {table}")

    def update_group(self, table: str, group: GroupPolicy) -> None:
        """Replace one group's rules (every port in it sees the change at once)."""
        tx = _Tx(table)
        self._group(tx, group)
        self._run(tx, f"update rules of {group.id} in {FAMILY} {table}")

    def add_port(self, table: str, port: PortPolicy, groups: Iterable[GroupPolicy]) -> None:
        """Add or replace one port (its groups' rules are (re)written from `groups`)."""
        check_bridged_filtering()
        tx = _Tx(table)
        self._base(tx)
        # a port's chains and entries are made and removed together: no chain, nothing to drop
        # (a launch lists nothing)
        if self._has_chain(table, port_chain(port.port, "egress")):
            self._drop_port(tx, table, [port.port])
        named = set(port.groups)
        for g in groups:
            self._group(tx, g)
            named.discard(g.id)
        for gid in sorted(named):  # named but not described: exists, allows nothing
            tx.set(member_set(gid))
            for d in DIRECTIONS:
                tx.chain(group_chain(gid, d), flush=False)
        self._port(tx, port)
        self._run(tx, f"security groups of port {port.port} in {FAMILY} {table}")

    def remove_group(self, table: str, gid: str) -> None:
        """A deleted group's rule chains and member set gone (no port jumps to them, no rule
        names it any more). Missing: no-op."""
        have = self.objects(table)
        tx = _Tx(table)
        chains = [group_chain(gid, d) for d in DIRECTIONS if group_chain(gid, d) in have["chain"]]
        for c in chains:
            tx.cmds.append({"flush": {"chain": tx._obj(name=c)}})
        for c in chains:
            tx.delete("chain", c)
        if member_set(gid) in have["set"]:
            tx.delete("set", member_set(gid))
        if tx.cmds:
            self._run(tx, f"remove group {gid} from {FAMILY} {table}")

    def remove_port(self, table: str, port: str) -> None:
        """Remove a port's chains, map entries and memberships. Missing: no-op."""
        self.remove_ports(table, [port])

    def remove_ports(self, table: str, ports: Iterable[str]) -> None:
        """remove_port for several ports, in one transaction. Missing ones: no-op."""
        tx = _Tx(table)
        names = list(ports)
        if self._drop_port(tx, table, names, delete=True):
            self._run(tx, f"remove ports {', '.join(names)} from {FAMILY} {table}")

    def forget_bridge(self, table: str, bridge: str) -> None:
        """A network's bridge is gone: it leaves the set of bridges with filtered ports.
        Not there (or no table): no-op."""
        if bridge in self._state(table)[1].get(BRIDGES, []):
            tx = _Tx(table)
            tx.elements("delete", BRIDGES, [bridge])
            self._run(tx, f"forget bridge {bridge} in {FAMILY} {table}")

    def remove_all(self, table: str) -> None:
        """Remove every security-group object from the table (and the table once it is empty)."""
        have = self.objects(table)
        if not (have["chain"] or have["set"] or have["map"] or have["bridges"]):
            return
        tx = _Tx(table)
        for name in (EGRESS_CHAIN, INGRESS_CHAIN):
            if name in have["chain"]:
                tx.delete("chain", name)
        for m in have["map"]:
            tx.delete("map", m)
        for c in have["chain"]:
            if c.startswith(_PORT_AND_GROUP):
                tx.cmds.append({"flush": {"chain": tx._obj(name=c)}})
        for c in have["chain"]:
            if c.startswith(_PORT_AND_GROUP):
                tx.delete("chain", c)
        for s in have["set"] + have["bridges"]:
            tx.delete("set", s)
        if not have["other"]:
            tx.cmds = [{"delete": {"table": {"family": FAMILY, "name": table}}}]
        self.nft.run(tx.cmds, f"remove security groups from {FAMILY} {table}", missing_ok=True)

    # --- reading back ----------------------------------------------------------------------
    def _list(self, table: str) -> list[Json]:
        out = self.nft.run([{"list": {"table": {"family": FAMILY, "name": table}}}],
                           f"list table {table}", missing_ok=True)
        return [o for o in (out or {}).get("nftables", []) if "metainfo" not in o]

    def _state(self, table: str) -> tuple[dict[str, list[str]], dict[str, list[object]]]:
        """One listing of the table: the names of our chains, sets and maps ("other": the
        chains not ours) and the elements of our sets and maps by name."""
        res: dict[str, list[str]] = {"chain": [], "set": [], "map": [], "bridges": [],
                                     "other": []}
        elems: dict[str, list[object]] = {}
        for o in self._list(table):
            if "chain" in o:
                name = o["chain"]["name"]
                ours = name in (EGRESS_CHAIN, INGRESS_CHAIN) or name.startswith(_PORT_AND_GROUP)
                res["chain" if ours else "other"].append(name)
                continue
            kind = "set" if "set" in o else "map" if "map" in o else None
            if kind is None:
                continue
            name = o[kind]["name"]
            if kind == "set" and name.startswith("sgm_"):
                res["set"].append(name)
            elif kind == "map" and name in (OUT_MAP, IN_MAP):
                res["map"].append(name)
            elif kind == "set" and name == BRIDGES:
                res["bridges"].append(BRIDGES)
            else:
                continue
            elems[name] = list(o[kind].get("elem", []))
        return res, elems

    def objects(self, table: str) -> dict[str, list[str]]:
        """Names of our chains, sets and maps in the table; "other" lists the chains not ours."""
        return self._state(table)[0]

    def members(self, table: str, gid: str) -> list[tuple[str, str]]:
        """(bridge, address) of a group's members."""
        return sorted(tuple(e["concat"]) for e in  # type: ignore[misc]
                      self._state(table)[1].get(member_set(gid), [])
                      if isinstance(e, dict) and "concat" in e)

    def ports(self, table: str) -> dict[tuple[str, str], str]:
        """(bridge, address) -> port, from the egress map."""
        return _ports_of(self._state(table)[1].get(OUT_MAP, []))

    def _has_chain(self, table: str, name: str) -> bool:
        return self.nft.run([{"list": {"chain": {"family": FAMILY, "table": table,
                                                 "name": name}}}],
                            f"list chain {name}", missing_ok=True) is not None

    def _drop_port(self, tx: _Tx, table: str, ports: Sequence[str], delete: bool = False) -> bool:
        """Commands removing the ports' map entries and memberships (and, when delete, their
        chains). False when none of them is known."""
        wanted_ports = set(ports)
        have, elements = self._state(table)
        keys = [k for k, p in _ports_of(elements.get(OUT_MAP, [])).items() if p in wanted_ports]
        chains = [port_chain(p, d) for p in ports for d in DIRECTIONS
                  if port_chain(p, d) in have["chain"]]
        if not keys and not chains:
            return False
        elems: list[object] = [_key(*k) for k in keys]
        tx.elements("delete", OUT_MAP, list(elems))
        tx.elements("delete", IN_MAP, list(elems))
        wanted = set(keys)
        for s in have["set"]:
            mine: list[object] = [e for e in elements.get(s, [])
                                  if isinstance(e, dict) and tuple(e["concat"]) in wanted]
            tx.elements("delete", s, list(mine))
        if delete:
            for c in chains:
                tx.delete("chain", c)
        return True


def _ports_of(out_map: list[object]) -> dict[tuple[str, str], str]:
    res: dict[tuple[str, str], str] = {}
    for e in out_map:
        if isinstance(e, list) and len(e) == 2:
            key, verdict = e
            target = verdict.get("goto", {}).get("target", "")
            res[tuple(key["concat"])] = target[len("sgo_"):]  # type: ignore[index]
    return res


def check_bridged_filtering() -> None:
    """DriverError unless bridged IPv4 passes the inet hooks (br_netfilter)."""
    try:
        on = BR_NF.read_text().strip() == "1"
    except OSError:
        on = False
    if not on:
        raise DriverError("security groups need bridged traffic to pass nftables' inet hooks: "
                          "modprobe br_netfilter && "
                          "sysctl -w net.bridge.bridge-nf-call-iptables=1 (see lxcloud doctor)")
