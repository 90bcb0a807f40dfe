"""Public addresses on a host interface: 1:1 NAT to instances and port forwards (nftables + netlink).

An address associated to an instance is added to its pool's host interface as a /32 (so the host
answers ARP for it there) and mapped in the cloud's `inet <table>` by chains of our own, which
never collide with firewall.py's `<bridge>_*` chains:

  pub_prerouting   nat/dstnat-10   port forwards (public . proto . port -> private . port), then
                                   1:1 DNAT (public -> private), for traffic from anywhere
  pub_output       nat/output      the same for the host's own connections
  pub_postrouting  nat/srcnat-10   1:1 SNAT (private . out interface -> public): only traffic
                                   leaving through the address's own interface; it runs before
                                   the network's masquerade (srcnat), and the first NAT wins;
                                   masquerade of hairpin connections (marked in pub_forward)
  pub_forward      filter/-10      accept connections DNATed to one of our targets; mark those
                                   from an instance network (conntrack mark bit HAIRPIN)

The rules never change: every address and forward is an element of the maps they look up
(`pub_dnat`, `pub_snat`, `pub_fwd_addr` + `pub_fwd_port`, and the set `pub_targets`), so an
association, a forward or a full sync is one atomic transaction of element changes, and the
kernel's maps are the driver's only state (it keeps none: each call reads them first).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lxcloud.core.errors import DriverError, InvalidInput
from lxcloud.drivers.network.base import IFNAMSIZ
from lxcloud.drivers.network.nft import NFT, Json, Nft

log = logging.getLogger(__name__)
FAMILY = "inet"
PROTOCOLS = ("tcp", "udp")
CHAINS = {"pub_prerouting": ("nat", "prerouting", -110),
          "pub_output": ("nat", "output", -110),
          "pub_postrouting": ("nat", "postrouting", 90),
          "pub_forward": ("filter", "forward", -10)}
DNAT, SNAT, FWD_ADDR, FWD_PORT, TARGETS = ("pub_dnat", "pub_snat", "pub_fwd_addr", "pub_fwd_port",
                                           "pub_targets")
_FWD_KEY = ["ipv4_addr", "inet_proto", "inet_service"]
MAPS: dict[str, tuple[Any, str | None]] = {
    DNAT: ("ipv4_addr", "ipv4_addr"),
    SNAT: (["ipv4_addr", "ifname"], "ipv4_addr"),
    FWD_ADDR: (_FWD_KEY, "ipv4_addr"),
    FWD_PORT: (_FWD_KEY, "inet_service"),
    TARGETS: ("ipv4_addr", None),     # a set
}
_EEXIST, _EADDRNOTAVAIL, _ENODEV = 17, 99, 19
# the conntrack mark bit of connections from an instance network to a public address (hairpin)
HAIRPIN = 1 << 26
BRIDGE_PREFIX = "lxcbr"     # every cloud's instance networks (base.NetworkSpec.bridge_prefix)


@dataclass(frozen=True)
class AddressPool:
    """A range of public addresses on a host interface (the cloud's; the operator's choice)."""

    interface: str
    first: str
    last: str

    def __contains__(self, address: object) -> bool:
        ip = ipaddress.IPv4Address(str(address))
        return ipaddress.IPv4Address(self.first) <= ip <= ipaddress.IPv4Address(self.last)


@dataclass(frozen=True)
class Association:
    """`address` (on `interface`) is `private_ip`'s, both ways."""

    address: str
    private_ip: str
    interface: str


@dataclass(frozen=True)
class PortForward:
    """`address`:`port`/`protocol` -> `private_ip`:`target_port`. `interface` is where `address`
    lives when it is a pool's (added there while in use); "" for one of the host's own."""

    address: str
    protocol: str
    port: int
    private_ip: str
    target_port: int
    interface: str = ""

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.address, self.protocol, self.port)


@dataclass(frozen=True)
class PublicNat:
    """Everything public one cloud has on this host (sync's argument, state's answer)."""

    table: str
    pools: tuple[AddressPool, ...] = ()
    associations: tuple[Association, ...] = ()
    forwards: tuple[PortForward, ...] = ()


@dataclass
class _State:
    """The maps' contents, as read from the kernel."""

    dnat: dict[str, str] = field(default_factory=dict)                # public -> private
    snat: dict[tuple[str, str], str] = field(default_factory=dict)    # (private, ifname) -> public
    fwd: dict[tuple[str, str, int], tuple[str, int]] = field(default_factory=dict)
    targets: set[str] = field(default_factory=set)

    def associations(self) -> list[Association]:
        out = [Association(pub, priv, ifname) for (priv, ifname), pub in self.snat.items()
               if self.dnat.get(pub) == priv]
        return sorted(out, key=lambda a: a.address)

    def wanted_targets(self) -> set[str]:
        return set(self.dnat.values()) | {priv for priv, _ in self.fwd.values()}


# --- validation (before anything touches the host)

def _ipv4(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise InvalidInput(f"{what} {value!r} is not an IPv4 address") from None


def _ifname(name: str) -> str:
    if not name or len(name) > IFNAMSIZ or "/" in name or " " in name or name in (".", ".."):
        raise InvalidInput(f"invalid interface name {name!r} (1..{IFNAMSIZ} chars)")
    return name


def check_pool(pool: AddressPool) -> None:
    _ifname(pool.interface)
    first, last = _ipv4(pool.first, "range start"), _ipv4(pool.last, "range end")
    if ipaddress.IPv4Address(first) > ipaddress.IPv4Address(last):
        raise InvalidInput(f"range {first}-{last} is empty (its start is past its end)")


def check_association(a: Association) -> None:
    _ipv4(a.address, "public address")
    _ipv4(a.private_ip, "private address")
    _ifname(a.interface)


def check_forward(f: PortForward) -> None:
    _ipv4(f.address, "address")
    _ipv4(f.private_ip, "private address")
    if f.protocol not in PROTOCOLS:
        raise InvalidInput(f"protocol {f.protocol!r} is not one of {', '.join(PROTOCOLS)}")
    for port, what in ((f.port, "port"), (f.target_port, "target port")):
        if not 1 <= port <= 65535:
            raise InvalidInput(f"{what} {port} is not in 1..65535")
    if f.interface:
        _ifname(f.interface)


def check(nat: PublicNat) -> None:
    """Every value of `nat` well-formed and no two claims on one key (InvalidInput)."""
    for p in nat.pools:
        check_pool(p)
    publics: dict[str, str] = {}
    privates: dict[tuple[str, str], str] = {}
    for a in nat.associations:
        check_association(a)
        if publics.setdefault(a.address, a.private_ip) != a.private_ip:
            raise InvalidInput(f"{a.address} is associated twice")
        if privates.setdefault((a.private_ip, a.interface), a.address) != a.address:
            raise InvalidInput(f"{a.private_ip} has two public addresses on {a.interface}")
    keys: set[tuple[str, str, int]] = set()
    for f in nat.forwards:
        check_forward(f)
        if f.key in keys:
            raise InvalidInput(f"{f.address}:{f.port}/{f.protocol} is forwarded twice")
        keys.add(f.key)


# --- nftables JSON

def _payload(protocol: str, fld: str) -> Json:
    return {"payload": {"protocol": protocol, "field": fld}}


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _lookup(key: Json, name: str) -> Json:
    return {"map": {"key": key, "data": f"@{name}"}}


def base(table: str, bridge_prefix: str = BRIDGE_PREFIX) -> list[Json]:
    """Table, maps (their elements kept) and chains with their fixed rules (rewritten)."""
    cmds: list[Json] = [{"add": {"table": {"family": FAMILY, "name": table}}}]
    for name, (key, data) in MAPS.items():
        if data is None:
            cmds.append({"add": {"set": {"family": FAMILY, "table": table, "name": name,
                                         "type": key}}})
        else:
            cmds.append({"add": {"map": {"family": FAMILY, "table": table, "name": name,
                                         "type": key, "map": data}}})
    for name, (ctype, hook, prio) in CHAINS.items():
        cmds.append({"add": {"chain": {"family": FAMILY, "table": table, "name": name,
                                       "type": ctype, "hook": hook, "prio": prio,
                                       "policy": "accept"}}})
        cmds.append({"flush": {"chain": {"family": FAMILY, "table": table, "name": name}}})

    def rule(chain: str, *expr: Json) -> Json:
        return {"add": {"rule": {"family": FAMILY, "table": table, "chain": chain,
                                 "expr": list(expr)}}}

    fwd_key = {"concat": [_payload("ip", "daddr"), _meta("l4proto"), _payload("th", "dport")]}
    # (One map per half of the target: libnftables 1.0.6's JSON parser crashes on a NAT map whose
    # data is a concatenation.)
    forward = {"dnat": {"family": "ip", "addr": _lookup(fwd_key, FWD_ADDR),
                        "port": _lookup(fwd_key, FWD_PORT)}}
    one_to_one = {"dnat": {"family": "ip", "addr": _lookup(_payload("ip", "daddr"), DNAT)}}
    for chain in ("pub_prerouting", "pub_output"):
        cmds += [rule(chain, forward), rule(chain, one_to_one)]
    dnat = {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}
    to_target = {"match": {"op": "==", "left": _payload("ip", "daddr"), "right": f"@{TARGETS}"}}
    mark = {"ct": {"key": "mark"}}
    instances = f"{bridge_prefix}*"
    cmds += [
        # An instance reaching a public address (hairpin): the connection is marked in forward
        # (where both interfaces are known) and masqueraded, or a neighbour on the same bridge
        # would answer it straight from its private address.
        rule("pub_postrouting",
             {"match": {"op": "!=", "left": {"&": [mark, HAIRPIN]}, "right": 0}},
             {"masquerade": None}),
        rule("pub_postrouting",
             {"snat": {"family": "ip", "addr": _lookup(
                 {"concat": [_payload("ip", "saddr"), _meta("oifname")]}, SNAT)}}),
        rule("pub_forward", dnat, to_target,
             {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["new"]}},
             {"match": {"op": "==", "left": _meta("iifname"), "right": instances}},
             {"match": {"op": "==", "left": _meta("oifname"), "right": instances}},
             {"mangle": {"key": mark, "value": {"|": [mark, HAIRPIN]}}}),
        rule("pub_forward", dnat, to_target, {"accept": None}),
    ]
    return cmds


def _elem(table: str, name: str, elems: list[Any], op: str) -> Json:
    return {op: {"element": {"family": FAMILY, "table": table, "name": name, "elem": elems}}}


def _diff(table: str, old: _State, new: _State) -> list[Json]:
    """Element changes turning `old` into `new`: deletions first, so a changed key is re-added."""
    cmds: list[Json] = []

    def changes(name: str, before: dict[Any, Any], after: dict[Any, Any],
                key: Any, value: Any) -> tuple[Json | None, Json | None]:
        gone = [key(k) for k, v in before.items() if after.get(k) != v]
        added = [[key(k), value(v)] for k, v in after.items() if before.get(k) != v]
        return (_elem(table, name, gone, "delete") if gone else None,
                _elem(table, name, added, "add") if added else None)

    def fwd_key(k: tuple[str, str, int]) -> Json:
        return {"concat": list(k)}

    pairs = [
        changes(DNAT, old.dnat, new.dnat, str, str),
        changes(SNAT, old.snat, new.snat, lambda k: {"concat": list(k)}, str),
        changes(FWD_ADDR, {k: v[0] for k, v in old.fwd.items()},
                {k: v[0] for k, v in new.fwd.items()}, fwd_key, str),
        changes(FWD_PORT, {k: v[1] for k, v in old.fwd.items()},
                {k: v[1] for k, v in new.fwd.items()}, fwd_key, int),
    ]
    gone_targets = sorted(old.targets - new.targets)
    new_targets = sorted(new.targets - old.targets)
    cmds += [d for d, _ in pairs if d]
    if gone_targets:
        cmds.append(_elem(table, TARGETS, gone_targets, "delete"))
    cmds += [a for _, a in pairs if a]
    if new_targets:
        cmds.append(_elem(table, TARGETS, new_targets, "add"))
    return cmds


def _state_of(nat: PublicNat) -> _State:
    s = _State()
    for a in nat.associations:
        s.dnat[a.address] = a.private_ip
        s.snat[(a.private_ip, a.interface)] = a.address
    for f in nat.forwards:
        s.fwd[f.key] = (f.private_ip, f.target_port)
    s.targets = s.wanted_targets()
    return s


def _parse(content: Iterable[Json]) -> _State:
    """The maps' elements as listed by libnftables (JSON)."""
    s = _State()
    fwd_addr: dict[tuple[str, str, int], str] = {}
    fwd_port: dict[tuple[str, str, int], int] = {}
    for obj in content:
        m = obj.get("map") or obj.get("set")
        if not m or m.get("name") not in MAPS:    # another part's (security groups' sets…)
            continue
        name = m["name"]
        if name not in MAPS:    # the table is the cloud's: other parts keep sets in it too
            continue
        elems = m.get("elem", [])
        if name == TARGETS:
            s.targets = {str(e) for e in elems}
            continue
        for k, v in elems:
            if name == DNAT:
                s.dnat[str(k)] = str(v)
            elif name == SNAT:
                priv, ifname = k["concat"]
                s.snat[(str(priv), str(ifname))] = str(v)
            elif name in (FWD_ADDR, FWD_PORT):
                addr, proto, port = k["concat"]
                key = (str(addr), str(proto), int(port))
                if name == FWD_ADDR:
                    fwd_addr[key] = str(v)
                else:
                    fwd_port[key] = int(v)
    s.fwd = {k: (a, fwd_port[k]) for k, a in fwd_addr.items() if k in fwd_port}
    return s


def _iproute() -> Any:
    from pyroute2 import IPRoute  # imported late: importing pyroute2 costs ~100 ms
    return IPRoute()


class PublicNatDriver:
    """Public addresses of one host: netlink for the /32s, libnftables for the maps. Thread-safe;
    stateless (the kernel's maps and addresses are the state)."""

    def __init__(self, nft: Nft | None = None, bridge_prefix: str = BRIDGE_PREFIX) -> None:
        self.nft = nft or NFT
        self.bridge_prefix = bridge_prefix
        self._ipr: Any = None
        self._lock = threading.RLock()
        self._ifindex: dict[str, int | None] = {}   # within one call: one lookup per interface

    @contextlib.contextmanager
    def _op(self) -> Iterator[None]:
        """One call of the contract: under the lock, interfaces looked up afresh."""
        with self._lock:
            self._ifindex.clear()
            yield

    # --- netlink socket lifetime
    def _nl(self) -> Any:
        if self._ipr is None:
            self._ipr = _iproute()
        return self._ipr

    def close(self) -> None:
        with self._lock:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

    # --- the contract
    def sync(self, nat: PublicNat) -> None:
        """The host holds exactly `nat`: maps, rules, and on each pool's interface the /32s in
        use (other addresses of a pool's range there are removed; nothing outside the ranges is
        touched). One nftables transaction. Idempotent."""
        check(nat)
        with self._op():
            wanted = self._addresses(nat.associations, nat.forwards)
            ifaces = {i for _, i in wanted}
            self._check_interfaces(ifaces)
            held = {i: set(self._on(i)) for i in ifaces}
            added = [(a, i) for a, i in sorted(wanted) if a not in held[i]]
            for addr, ifname in added:
                self._add_addr(addr, ifname)
            old = self._read(nat.table)
            self.nft.run(base(nat.table, self.bridge_prefix)
                         + _diff(nat.table, old, _state_of(nat)),
                         f"sync public addresses in {FAMILY} {nat.table}")
            for pool in nat.pools:
                for addr in self._held(pool):
                    if (addr, pool.interface) not in wanted:
                        self._del_addr(addr, pool.interface)
            for addr, ifname in added:
                self._announce(addr, ifname)

    def associate(self, table: str, a: Association) -> None:
        """`a.address` on its interface and mapped to `a.private_ip` both ways (replacing what
        either had before). Idempotent."""
        check_association(a)
        with self._op():
            self._check_interfaces({a.interface})

            def change(s: _State) -> None:
                for priv_if, pub in list(s.snat.items()):
                    if pub == a.address or priv_if == (a.private_ip, a.interface):
                        del s.snat[priv_if]
                        s.dnat.pop(pub, None)
                s.dnat.pop(a.address, None)
                s.dnat[a.address] = a.private_ip
                s.snat[(a.private_ip, a.interface)] = a.address

            with self._address_held(a.address, a.interface):
                self._change(table, change, f"associate {a.address} with {a.private_ip}",
                             released=())

    def disassociate(self, table: str, a: Association) -> None:
        """`a.address` mapped to nothing, and off its interface unless a forward still uses it.
        Missing: no-op."""
        check_association(a)
        with self._op():
            def change(s: _State) -> None:
                if s.dnat.get(a.address) == a.private_ip:
                    del s.dnat[a.address]
                s.snat.pop((a.private_ip, a.interface), None)

            self._change(table, change, f"disassociate {a.address}",
                         released=[(a.address, a.interface)])

    def add_forward(self, table: str, f: PortForward) -> None:
        """Connections to `f.address`:`f.port` go to `f.private_ip`:`f.target_port`. Idempotent."""
        check_forward(f)
        with self._op():
            if f.interface:
                self._check_interfaces({f.interface})

            def change(s: _State) -> None:
                s.fwd[f.key] = (f.private_ip, f.target_port)

            with self._address_held(f.address, f.interface):
                self._change(table, change, f"forward {f.address}:{f.port}/{f.protocol}",
                             released=())

    def remove_forward(self, table: str, f: PortForward) -> None:
        """The forward gone (its pool address off the interface unless still in use). Missing:
        no-op."""
        check_forward(f)
        with self._op():
            def change(s: _State) -> None:
                s.fwd.pop(f.key, None)

            released = [(f.address, f.interface)] if f.interface else []
            self._change(table, change, f"remove forward {f.address}:{f.port}/{f.protocol}",
                         released=released)

    def teardown(self, table: str, pools: Iterable[AddressPool] = ()) -> None:
        """Our chains, maps and the pools' /32s removed; the table too once nothing else is in
        it. Missing: no-op."""
        with self._op():
            content = self._list(table)
            if content is not None:
                chains = {o["chain"]["name"] for o in content if "chain" in o}
                sets = {o[k]["name"] for o in content for k in ("map", "set") if k in o}
                if not chains - set(CHAINS) and not sets - set(MAPS):
                    self.nft.run([{"delete": {"table": {"family": FAMILY, "name": table}}}],
                                 f"delete table {FAMILY} {table}", missing_ok=True)
                else:
                    cmds: list[Json] = [
                        {"delete": {"chain": {"family": FAMILY, "table": table, "name": c}}}
                        for c in sorted(chains & set(CHAINS))]
                    cmds += [{"delete": {"map" if MAPS[m][1] else "set":
                                         {"family": FAMILY, "table": table, "name": m}}}
                             for m in sorted(sets & set(MAPS))]
                    if cmds:
                        self.nft.run(cmds, f"remove public addresses from {FAMILY} {table}")
            for pool in pools:
                for addr in self._held(pool):
                    self._del_addr(addr, pool.interface)

    def state(self, table: str, pools: Iterable[AddressPool] = ()) -> PublicNat:
        """What the host has (the maps as associations and forwards). Forwards' interfaces are
        not kept in the maps: they come back as ""."""
        with self._op():
            s = self._read(table)
        fwds = tuple(PortForward(a, p, port, priv, tport)
                     for (a, p, port), (priv, tport) in sorted(s.fwd.items()))
        return PublicNat(table, tuple(pools), tuple(s.associations()), fwds)

    def held_addresses(self, pool: AddressPool) -> list[str]:
        """The /32s of `pool`'s range on its interface."""
        with self._op():
            return self._held(pool)

    def host_addresses(self) -> list[str]:
        """Every IPv4 address of the host (this network namespace), the pools' /32s included."""
        with self._op():
            return sorted({str(a.get("IFA_ADDRESS")) for a in self._nl().get_addr(family=2)
                           if a.get("IFA_ADDRESS")})

    def interface_exists(self, name: str) -> bool:
        with self._op():
            return bool(self._nl().link_lookup(ifname=_ifname(name)))

    # --- helpers
    @contextlib.contextmanager
    def _address_held(self, addr: str, ifname: str) -> Iterator[None]:
        """`addr` on `ifname` (when given) for what follows; taken off again if that fails and
        it was not there before (nothing half-made)."""
        added = bool(ifname) and addr not in self._on(ifname)
        if added:
            self._add_addr(addr, ifname)
        try:
            yield
        except BaseException:
            if added:
                self._del_addr(addr, ifname)
            raise
        if added:
            self._announce(addr, ifname)

    def _announce(self, addr: str, ifname: str) -> None:
        """A gratuitous ARP for `addr` from `ifname`, so that neighbours holding it under another
        MAC (where the address was before) learn at once. Best effort: never fails the change."""
        try:
            idx = self._index(ifname)
            link = self._nl().get_links(idx)[0] if idx is not None else None
            mac = link.get_attr("IFLA_ADDRESS") if link is not None else None
            if not mac:
                return
            hw = bytes.fromhex(mac.replace(":", ""))
            ip = ipaddress.IPv4Address(addr).packed
            frame = (b"\xff" * 6 + hw + b"\x08\x06"                 # broadcast, from us, ARP
                     + b"\x00\x01\x08\x00\x06\x04\x00\x01"          # Ethernet/IPv4, request
                     + hw + ip + b"\x00" * 6 + ip)                   # who has addr? addr
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
                s.bind((ifname, 0))
                s.send(frame)
        except OSError as e:
            log.info("gratuitous ARP for %s on %s not sent: %s", addr, ifname, e)

    def _change(self, table: str, change: Any, what: str,
                released: Iterable[tuple[str, str]]) -> None:
        old = self._read(table)
        new = _State(dict(old.dnat), dict(old.snat), dict(old.fwd))
        change(new)
        new.targets = new.wanted_targets()
        self.nft.run(base(table, self.bridge_prefix) + _diff(table, old, new),
                     f"{what} in {FAMILY} {table}")
        # An address no longer mapped leaves its interface (an association's interface is in
        # the SNAT map; a forward's comes from the caller).
        in_use = set(new.dnat) | {k[0] for k in new.fwd}
        dropped = {(pub, ifname) for (_, ifname), pub in old.snat.items()} | set(released)
        for addr, ifname in sorted(dropped):
            if addr not in in_use:
                self._del_addr(addr, ifname)

    def _list(self, table: str) -> list[Json] | None:
        out = self.nft.run([{"list": {"table": {"family": FAMILY, "name": table}}}],
                           f"list table {table}", missing_ok=True)
        if out is None:
            return None
        return [o for o in out.get("nftables", []) if "metainfo" not in o]

    def _read(self, table: str) -> _State:
        return _parse(self._list(table) or [])

    @staticmethod
    def _addresses(assocs: Iterable[Association],
                   forwards: Iterable[PortForward]) -> set[tuple[str, str]]:
        return ({(a.address, a.interface) for a in assocs}
                | {(f.address, f.interface) for f in forwards if f.interface})

    def _index(self, ifname: str) -> int | None:
        if ifname not in self._ifindex:
            found = self._nl().link_lookup(ifname=ifname)
            self._ifindex[ifname] = int(found[0]) if found else None
        return self._ifindex[ifname]

    def _check_interfaces(self, names: Iterable[str]) -> None:
        for name in names:
            if self._index(name) is None:
                raise InvalidInput(f"interface {name!r} does not exist on this host",
                                   resource="interface")

    def _held(self, pool: AddressPool) -> list[str]:
        return [a for a in self._on(pool.interface) if a in pool]

    def _on(self, ifname: str) -> list[str]:
        """The /32s on an interface."""
        idx = self._index(ifname)
        if idx is None:
            return []
        return sorted(str(a.get("IFA_ADDRESS")) for a in self._nl().get_addr(index=idx, family=2)
                      if a["prefixlen"] == 32 and a.get("IFA_ADDRESS"))

    def _add_addr(self, addr: str, ifname: str) -> None:
        idx = self._index(ifname)
        if idx is None:
            raise InvalidInput(f"interface {ifname!r} does not exist on this host",
                               resource="interface")
        try:
            self._nl().addr("add", index=idx, address=addr, prefixlen=32)
        except Exception as e:
            if getattr(e, "code", None) != _EEXIST:
                raise DriverError(f"cannot add {addr}/32 to {ifname}: {e}") from e

    def _del_addr(self, addr: str, ifname: str) -> None:
        idx = self._index(ifname)
        if idx is None:
            return
        try:
            self._nl().addr("del", index=idx, address=addr, prefixlen=32)
        except Exception as e:
            if getattr(e, "code", None) not in (_EADDRNOTAVAIL, _ENODEV):
                raise DriverError(f"cannot remove {addr}/32 from {ifname}: {e}") from e
