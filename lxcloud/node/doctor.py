"""`lxcloud doctor`: what on this host breaks container networking, and what to do about it.

Two halves. `read_facts()` reads one network namespace of the host (the host's own by default)
into a `HostFacts` value: sysctls, the kernel's configuration and modules, cgroup controllers,
every nftables base chain (whichever program made it: nft, iptables-nft, firewalld, Docker), the
legacy iptables FORWARD chain, links, addresses and routes, dnsmasq and lxc. `checks()` is pure:
facts, the cloud's networks and its nftables table in, one `Check` per question out, each ok, warn
or fail with a concrete command that fixes it. Unit tests feed it facts; integration tests make
each problem for real in a network namespace, where `read_facts(netns=...)` reads them (every
fact that depends on the namespace is read by this module run inside it: `ip netns exec`).

Why a drop policy elsewhere matters though our chains accept: nftables runs every base chain of
a hook, in priority order, and an accept ends only the chain it is in. A packet our table accepts
is still dropped by another table's chain on the same hook whose policy is drop, before or after
ours alike, unless that chain accepts it itself.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import ipaddress
import json
import os
import platform
import re
import shlex
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lxcloud.core.errors import DriverError
from lxcloud.core.proc import run
from lxcloud.drivers.network.base import NetworkSpec

OK, WARN, FAIL = "ok", "warn", "fail"
OUR_PRIO = 0            # firewall.py's filter chains (forward, input)
BRIDGE_PATTERN = "lxcbr*"   # our bridges' names (Settings.bridge_name) when no network is named


@dataclass(frozen=True)
class Check:
    name: str          # what was asked: "ip_forward", "kernel.veth", "forward.inet.fw.fwd"
    status: str        # ok | warn | fail
    message: str
    fix: str = ""      # a shell command that fixes it (several joined by " && "), "" when ok

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Chain:
    """An nftables base chain, with what it accepts by interface name alone."""

    family: str
    table: str
    name: str
    hook: str
    prio: int
    policy: str                      # accept | drop
    ends_in_drop: bool = False       # a last rule that drops everything (iptables -A X -j DROP)
    accepts_in: tuple[str, ...] = ()     # `iifname X accept` (X may be a pattern: "lxcbr*")
    accepts_out: tuple[str, ...] = ()    # `oifname X accept`
    accepts_in_some: tuple[str, ...] = ()  # iifname X and something more, accept (a port)

    @property
    def drops(self) -> bool:
        return self.policy == "drop" or self.ends_in_drop


@dataclass(frozen=True)
class Link:
    name: str
    kind: str          # "bridge", "veth", "" (physical)
    up: bool


@dataclass(frozen=True)
class Route:
    dst: str           # "10.20.0.0/24"
    dev: str
    origin: str = "route"   # route | address


@dataclass
class HostFacts:
    netns: str = ""                          # "" = the host's own namespace
    kernel: str = ""
    sysctls: dict[str, str] = field(default_factory=dict)   # absent key: absent file
    kernel_config: dict[str, str] = field(default_factory=dict)   # CONFIG_X -> y | m
    modules_loaded: list[str] = field(default_factory=list)
    modules_available: list[str] = field(default_factory=list)
    cgroups: dict[str, bool] = field(default_factory=dict)   # controller -> enabled
    chains: list[Chain] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)          # "inet lxcloud_ab12", ...
    nft_error: str = ""
    legacy_tables: list[str] = field(default_factory=list)   # /proc/net/ip_tables_names
    legacy_forward: str | None = None        # `iptables-legacy -S FORWARD`, None: not read
    links: list[Link] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dnsmasq: str = ""
    lxc_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostFacts:
        d = dict(d)
        d["chains"] = [Chain(**{k: tuple(v) if isinstance(v, list) else v  # type: ignore[arg-type]
                                for k, v in c.items()}) for c in d.get("chains", [])]
        d["links"] = [Link(**x) for x in d.get("links", [])]
        d["routes"] = [Route(**x) for x in d.get("routes", [])]
        return cls(**d)


# --- reading the facts -----------------------------------------------------------------------

SYSCTLS = ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables",
           "user/max_user_namespaces", "kernel/unprivileged_userns_clone",
           "net/netfilter/nf_conntrack_count", "net/netfilter/nf_conntrack_max")


def read_facts(netns: str | None = None, *, proc: Path = Path("/proc"),
               modules_dir: Path = Path("/lib/modules")) -> HostFacts:
    """The facts of the host's own network namespace, or of `netns` (read by this module run
    there with `ip netns exec`, so /proc/sys/net, nftables and netlink answer for it)."""
    if netns:
        cp = run(["ip", "netns", "exec", netns, sys.executable, "-m", "lxcloud.node.doctor",
                  "--facts"], timeout=60)
        facts = HostFacts.from_dict(json.loads(cp.stdout))
        facts.netns = netns
        return facts
    facts = read_files(proc, modules_dir)
    try:
        ruleset = _nft_ruleset()
        facts.chains = parse_chains(ruleset)
        facts.tables = [f"{o['table']['family']} {o['table']['name']}" for o in ruleset
                        if "table" in o]
    except Exception as e:   # no libnftables, no permission: said, not fatal
        facts.nft_error = str(e)
    if "filter" in facts.legacy_tables and shutil.which("iptables-legacy"):
        cp = run(["iptables-legacy", "-w", "-S", "FORWARD"], timeout=30, check=False)
        facts.legacy_forward = cp.stdout.decode() if cp.returncode == 0 else None
    facts.links, facts.routes = _links_and_routes()
    facts.dnsmasq = shutil.which("dnsmasq") or ""
    facts.lxc_version = _lxc_version()
    return facts


def read_files(proc: Path = Path("/proc"), modules_dir: Path = Path("/lib/modules"),
               release: str | None = None, boot: Path = Path("/boot")) -> HostFacts:
    """The facts files tell: sysctls, kernel config and modules, cgroup controllers, legacy
    iptables tables (under `proc`, a fake tree in unit tests)."""
    release = release or platform.release()
    facts = HostFacts(kernel=release)
    for key in SYSCTLS:
        try:
            facts.sysctls[key.replace("/", ".")] = (proc / "sys" / key).read_text().strip()
        except OSError:
            pass
    facts.kernel_config = read_kernel_config(proc, boot / f"config-{release}")
    facts.modules_loaded = _loaded_modules(proc)
    facts.modules_available = _available_modules(modules_dir / release)
    facts.cgroups = parse_cgroups(_read(proc / "cgroups"))
    facts.legacy_tables = _read(proc / "net/ip_tables_names").split()
    return facts


def _read(p: Path) -> str:
    try:
        return p.read_text()
    except OSError:
        return ""


def read_kernel_config(proc: Path, boot_config: Path) -> dict[str, str]:
    """CONFIG_X -> "y" | "m" from /proc/config.gz, else /boot/config-RELEASE; {} when neither."""
    text = ""
    try:
        text = gzip.decompress((proc / "config.gz").read_bytes()).decode(errors="replace")
    except OSError:
        text = _read(boot_config)
    return dict(re.findall(r"^(CONFIG_\w+)=([ym])$", text, re.M))


def _loaded_modules(proc: Path) -> list[str]:
    return sorted({line.split()[0] for line in _read(proc / "modules").splitlines() if line})


def _available_modules(moddir: Path) -> list[str]:
    """Modules this kernel can load or has built in (modules.dep, modules.builtin)."""
    names: set[str] = set()
    for f, sep in (("modules.dep", ":"), ("modules.builtin", None)):
        for line in _read(moddir / f).splitlines():
            path = line.split(sep)[0] if sep else line
            if path.strip():
                names.add(Path(path.strip()).name.split(".ko")[0].replace("-", "_"))
    return sorted(names)


def parse_cgroups(text: str) -> dict[str, bool]:
    """/proc/cgroups: controller -> enabled."""
    out: dict[str, bool] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4 and not line.startswith("#"):
            out[f[0]] = f[3] == "1"
    return out


def _nft_ruleset() -> list[dict[str, Any]]:
    from lxcloud.drivers.network.nft import NFT

    out = NFT.run([{"list": {"ruleset": None}}], "list ruleset") or {}
    return [o for o in out.get("nftables", []) if "metainfo" not in o]


def _iface_match(expr: dict[str, Any]) -> tuple[str, list[str]] | None:
    """("iifname" | "oifname", names) of `meta iifname == X` (or a set of names), else None."""
    m = expr.get("match")
    if not isinstance(m, dict) or m.get("op") not in ("==", "in"):
        return None
    key = (m.get("left") or {}).get("meta", {}).get("key") if isinstance(m.get("left"), dict) \
        else None
    if key not in ("iifname", "oifname"):
        return None
    right = m.get("right")
    if isinstance(right, str):
        return key, [right]
    if isinstance(right, dict) and isinstance(right.get("set"), list):
        return key, [x for x in right["set"] if isinstance(x, str)]
    return None


_NEUTRAL = ("counter", "log", "comment", "limit")


def parse_chains(ruleset: Iterable[dict[str, Any]]) -> list[Chain]:
    """Every base chain of an nftables JSON listing, with what it accepts by interface name."""
    items = list(ruleset)
    rules: dict[tuple[str, str, str], list[list[dict[str, Any]]]] = {}
    for o in items:
        if "rule" in o:
            r = o["rule"]
            rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r.get("expr", []))
    out: list[Chain] = []
    for o in items:
        c = o.get("chain")
        if not c or "hook" not in c:
            continue
        acc_in: list[str] = []
        acc_out: list[str] = []
        acc_some: list[str] = []
        ends_in_drop = False
        exprs = rules.get((c["family"], c["table"], c["name"]), [])
        for expr in exprs:
            verdict = next((k for e in expr for k in e if k in ("accept", "drop", "reject")), "")
            matches = [e for e in expr if not any(k in e for k in
                                                  (*_NEUTRAL, "accept", "drop", "reject"))]
            if verdict != "accept":
                continue
            ifm = [m for m in (_iface_match(e) for e in matches) if m]
            if len(matches) == 1 and len(ifm) == 1:
                (acc_in if ifm[0][0] == "iifname" else acc_out).extend(ifm[0][1])
            for key, names in ifm:
                if key == "iifname":
                    acc_some.extend(names)
        if exprs:
            last = exprs[-1]
            only = [e for e in last if not any(k in e for k in _NEUTRAL)]
            ends_in_drop = len(only) == 1 and ("drop" in only[0] or "reject" in only[0])
        prio = c.get("prio", 0)
        out.append(Chain(family=c["family"], table=c["table"], name=c["name"], hook=c["hook"],
                         prio=int(prio) if isinstance(prio, int) else 0,
                         policy=c.get("policy", "accept"), ends_in_drop=ends_in_drop,
                         accepts_in=tuple(acc_in), accepts_out=tuple(acc_out),
                         accepts_in_some=tuple(acc_some)))
    return out


def _links_and_routes() -> tuple[list[Link], list[Route]]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links, names = [], {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            names[link["index"]] = name
            kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or ""
            links.append(Link(name=name, kind=kind, up=bool(link["flags"] & 1)))
        routes = []
        for a in ipr.get_addr(family=2):
            addr = a.get_attr("IFA_ADDRESS") or a.get_attr("IFA_LOCAL")
            if addr:
                net = ipaddress.IPv4Network(f"{addr}/{a['prefixlen']}", strict=False)
                routes.append(Route(str(net), names.get(a["index"], ""), "address"))
        for r in ipr.get_routes(family=2, table=254):   # main table (local: our own addresses)
            dst, plen = r.get_attr("RTA_DST"), r["dst_len"]
            if dst and plen > 0:
                routes.append(Route(f"{dst}/{plen}", names.get(r.get_attr("RTA_OIF"), ""), "route"))
    return links, routes


def _lxc_version() -> str:
    if not shutil.which("lxc-start"):
        return ""
    try:
        return run(["lxc-start", "--version"], timeout=10).stdout.decode().strip()
    except DriverError:
        return ""


# --- the checks (pure) -------------------------------------------------------------------------

@dataclass(frozen=True)
class Feature:
    name: str
    configs: tuple[str, ...]
    module: str
    required: bool
    why: str


FEATURES = (
    Feature("veth", ("CONFIG_VETH",), "veth", True, "every instance's NIC is a veth pair"),
    Feature("bridge", ("CONFIG_BRIDGE",), "bridge", True, "bridge networks"),
    Feature("macvlan", ("CONFIG_MACVLAN",), "macvlan", False, "--driver macvlan networks"),
    Feature("vxlan", ("CONFIG_VXLAN",), "vxlan", False, "networks across hosts"),
    Feature("nf_tables", ("CONFIG_NF_TABLES", "CONFIG_NF_TABLES_INET"), "nf_tables", True,
            "lxcloud's rules"),
    Feature("nf_conntrack", ("CONFIG_NF_CONNTRACK",), "nf_conntrack", True,
            "stateful rules and security groups"),
    Feature("nf_nat", ("CONFIG_NF_NAT", "CONFIG_NFT_NAT", "CONFIG_NFT_MASQ"), "nf_nat", True,
            "NAT of --nat networks, public addresses, the metadata service"),
    Feature("sch_tbf", ("CONFIG_NET_SCH_TBF",), "sch_tbf", False, "rate limits"),
    Feature("sch_htb", ("CONFIG_NET_SCH_HTB",), "sch_htb", False, "rate limits"),
    Feature("sch_ingress", ("CONFIG_NET_SCH_INGRESS",), "sch_ingress", False,
            "egress rate limits (the host side's ingress)"),
    Feature("user_namespaces", ("CONFIG_USER_NS",), "", True, "unprivileged containers"),
)
# (controller, required, why); v1 names (/proc/cgroups lists the v2 ones by the same names)
CGROUPS = (("cpu", True, "--cpus"), ("memory", True, "--memory"), ("pids", True, "--pids"),
           ("cpuset", False, "pinned cpus"), ("blkio", False, "disk I/O limits"),
           ("freezer", False, "suspend/resume"), ("devices", False, "device access rules"))


def _ns(facts: HostFacts, cmd: str) -> str:
    """`cmd` as run in the facts' namespace."""
    if not facts.netns:
        return cmd
    return " && ".join(f"ip netns exec {facts.netns} {c}" for c in cmd.split(" && "))


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p.replace("\\*", "*")) for p in patterns)


def check_ip_forward(facts: HostFacts) -> Check:
    v = facts.sysctls.get("net.ipv4.ip_forward")
    if v == "1":
        return Check("ip_forward", OK, "IPv4 forwarding is on")
    return Check("ip_forward", FAIL, "IPv4 forwarding is off: instances reach nothing beyond "
                 "their host, and nothing outside reaches them",
                 _ns(facts, "sysctl -w net.ipv4.ip_forward=1"))


def _ours(c: Chain, table: str) -> bool:
    return c.family == "inet" and c.table == table


def _order(c: Chain) -> str:
    if c.prio == OUR_PRIO:
        return f"priority {c.prio}, the same as lxcloud's"
    return f"priority {c.prio}, {'before' if c.prio < OUR_PRIO else 'after'} lxcloud's {OUR_PRIO}"


def _forward_fix(facts: HostFacts, c: Chain, bridges: Sequence[str]) -> str:
    cmds = []
    for br in map(shlex.quote, bridges):
        if c.family in ("ip", "ip6") and c.table == "filter" and c.name == "FORWARD":
            tool = "iptables" if c.family == "ip" else "ip6tables"   # iptables-nft's own table
            cmds += [f"{tool} -I FORWARD -i {br} -j ACCEPT", f"{tool} -I FORWARD -o {br} -j ACCEPT"]
        else:
            cmds += [f"nft insert rule {c.family} {c.table} {c.name} iifname {br} accept",
                     f"nft insert rule {c.family} {c.table} {c.name} oifname {br} accept"]
    return _ns(facts, " && ".join(cmds))


def _bridges(networks: Sequence[NetworkSpec]) -> list[str]:
    bridges = [n.bridge for n in networks if n.driver == "bridge"]
    return bridges or [BRIDGE_PATTERN]


def check_forward_chains(facts: HostFacts, networks: Sequence[NetworkSpec],
                         table: str) -> list[Check]:
    """Another table's forward chain dropping (by policy, or by a last catch-all rule) what it
    does not accept itself: our bridges' traffic dies there whatever our chains say."""
    if facts.nft_error:
        return [Check("forward", WARN, f"cannot read the nftables ruleset ({facts.nft_error}): "
                      "another firewall's forward policy is not known", _ns(facts, "nft list ruleset"))]
    bridges = _bridges(networks)
    out = []
    others = [c for c in facts.chains if c.hook == "forward" and not _ours(c, table)]
    for c in others:
        if not c.drops:
            continue
        cut = [br for br in bridges
               if not (_matches(br, c.accepts_in) and _matches(br, c.accepts_out))]
        name = f"forward.{c.family}.{c.table}.{c.name}"
        how = "its policy is drop" if c.policy == "drop" else "its last rule drops everything"
        if cut:
            also = (" (bridge-nf-call-iptables=1: also between instances of one network)"
                    if facts.sysctls.get("net.bridge.bridge-nf-call-iptables") == "1" else "")
            out.append(Check(name, FAIL, f"table {c.family} {c.table}, chain {c.name} (hook "
                             f"forward, {_order(c)}): {how}, and it does not accept "
                             f"{', '.join(cut)}: instances' traffic through the host is "
                             f"dropped{also}, though lxcloud's own table accepts it (an accept "
                             "ends only its own chain)", _forward_fix(facts, c, cut)))
        else:
            out.append(Check(name, OK, f"table {c.family} {c.table}, chain {c.name} drops by "
                             f"default but accepts {', '.join(bridges)} both ways"))
    if not out:
        n = len(others)
        out.append(Check("forward", OK, "no other firewall's forward chain drops" +
                         (f" ({n} other forward chain{'s' if n > 1 else ''}, accepting: they "
                          "coexist with lxcloud's table)" if n else "")))
    return out


def check_input_chains(facts: HostFacts, networks: Sequence[NetworkSpec],
                       table: str) -> list[Check]:
    """Another table's input chain dropping what instances send their host: DHCP and DNS
    (dnsmasq on the gateway) and the metadata service."""
    bridges = _bridges(networks)
    out = []
    for c in facts.chains:
        if c.hook != "input" or _ours(c, table) or not c.drops:
            continue
        cut = [br for br in bridges if not _matches(br, (*c.accepts_in, *c.accepts_in_some))]
        if not cut:
            continue
        fix = " && ".join(
            f"nft insert rule {c.family} {c.table} {c.name} iifname {br} udp dport "
            "'{ 53, 67 }' accept && "
            f"nft insert rule {c.family} {c.table} {c.name} iifname {br} tcp dport 53 accept"
            for br in map(shlex.quote, cut))
        out.append(Check(f"input.{c.family}.{c.table}.{c.name}", FAIL,
                         f"table {c.family} {c.table}, chain {c.name} (hook input) drops what "
                         f"it does not accept, and accepts nothing from {', '.join(cut)}: "
                         "instances get no DHCP lease nor DNS answer from their host",
                         _ns(facts, fix)))
    return out or [Check("input", OK, "no other firewall's input chain drops instances' DHCP "
                         "and DNS")]


def check_legacy_iptables(facts: HostFacts, networks: Sequence[NetworkSpec]) -> Check:
    if "filter" not in facts.legacy_tables:
        return Check("iptables_legacy", OK, "no legacy iptables filter table")
    if facts.legacy_forward is None:
        return Check("iptables_legacy", WARN, "a legacy iptables filter table is loaded but its "
                     "FORWARD chain could not be read: a DROP policy there would drop "
                     "instances' traffic", _ns(facts, "apt-get install -y iptables && "
                                                "iptables-legacy -S FORWARD"))
    lines = facts.legacy_forward.splitlines()
    if "-P FORWARD DROP" not in lines:
        return Check("iptables_legacy", OK, "legacy iptables FORWARD policy is ACCEPT")
    cut = [br for br in _bridges(networks)
           if not (any(re.fullmatch(rf"-A FORWARD -i {re.escape(br)} -j ACCEPT", x) for x in lines)
                   and any(re.fullmatch(rf"-A FORWARD -o {re.escape(br)} -j ACCEPT", x)
                           for x in lines))]
    if not cut:
        return Check("iptables_legacy", OK, "legacy iptables FORWARD drops by default but "
                     "accepts lxcloud's bridges")
    fix = " && ".join(f"iptables-legacy -I FORWARD {d} {shlex.quote(br)} -j ACCEPT"
                      for br in cut for d in ("-i", "-o"))
    return Check("iptables_legacy", FAIL, "legacy iptables FORWARD policy is DROP (Docker sets "
                 f"it so) and it does not accept {', '.join(cut)}: instances' traffic through "
                 "the host is dropped", _ns(facts, fix))


def check_br_netfilter(facts: HostFacts) -> Check:
    v = facts.sysctls.get("net.bridge.bridge-nf-call-iptables")
    fix = "modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1"
    if v is None:
        return Check("br_netfilter", FAIL, "br_netfilter is not loaded: traffic between "
                     "instances of one bridge bypasses nftables, so security groups cannot "
                     "filter it", _ns(facts, fix))
    if v != "1":
        return Check("br_netfilter", FAIL, "bridge-nf-call-iptables=0: traffic between "
                     "instances of one bridge bypasses nftables, so security groups cannot "
                     "filter it", _ns(facts, "sysctl -w net.bridge.bridge-nf-call-iptables=1"))
    return Check("br_netfilter", OK, "bridged traffic passes the inet forward hook (security "
                 "groups need it; so every other table's forward chain sees it too)")


def check_conntrack(facts: HostFacts) -> Check:
    """A full conntrack table drops every new connection (the kernel logs "table full")."""
    try:
        count = int(facts.sysctls["net.netfilter.nf_conntrack_count"])
        most = int(facts.sysctls["net.netfilter.nf_conntrack_max"])
    except (KeyError, ValueError):
        return Check("conntrack", OK, "conntrack table: not in use yet")
    if most and count >= most * 0.9:
        return Check("conntrack", FAIL if count >= most else WARN,
                     f"conntrack table {count} of {most} entries: once full, every new "
                     "connection through the host (NAT, security groups) is dropped",
                     _ns(facts, f"sysctl -w net.netfilter.nf_conntrack_max={most * 4}"))
    return Check("conntrack", OK, f"conntrack table {count} of {most} entries")


def check_networks(facts: HostFacts, networks: Sequence[NetworkSpec], table: str) -> list[Check]:
    """Each network of ours: its bridge (or macvlan parent) there and up, its subnet routed to
    it alone; and our nftables table present."""
    links = {link.name: link for link in facts.links}
    out = []
    for n in networks:
        name = f"network.{n.name}"
        dev = n.bridge
        if n.driver == "bridge":
            link = links.get(n.bridge)
            if link is None:
                out.append(Check(name, FAIL, f"bridge {n.bridge} of network {n.name} is missing "
                                 "(lxcloud up remakes its networks at start-up)", "lxcloud up"))
                continue
            if link.kind != "bridge":
                out.append(Check(name, FAIL, f"{n.bridge} of network {n.name} is a "
                                 f"{link.kind or 'plain'} link, not a bridge (remove it, then "
                                 "restart lxcloud up: it remakes its networks)",
                                 _ns(facts, f"ip link del {n.bridge}")))
                continue
            if not link.up:
                out.append(Check(name, FAIL, f"bridge {n.bridge} of network {n.name} is down",
                                 _ns(facts, f"ip link set {n.bridge} up")))
                continue
        else:
            dev = n.parent
            if dev and dev not in links:
                out.append(Check(name, FAIL, f"parent interface {dev} of network {n.name} is "
                                 "missing (create it, or delete the network)",
                                 f"lxcloud network delete {n.name}"))
                continue
            if dev and not links[dev].up:
                out.append(Check(name, FAIL, f"parent interface {dev} of network {n.name} is "
                                 "down", _ns(facts, f"ip link set {dev} up")))
                continue
        subnet = ipaddress.ip_network(n.cidr)
        clash = [r for r in facts.routes
                 if r.dev != dev and ipaddress.ip_network(r.dst).overlaps(subnet)]
        if clash:
            r = clash[0]
            what = "an address" if r.origin == "address" else "a route"
            fix = (f"ip addr del {r.dst} dev {r.dev}" if r.origin == "address"
                   else f"ip route del {r.dst} dev {r.dev}")
            out.append(Check(name, FAIL, f"subnet {n.cidr} of network {n.name} overlaps {what} "
                             f"{r.dst} on {r.dev or '?'}: part of its traffic goes the wrong way "
                             f"(remove it, or move network {n.name} to a free subnet)",
                             _ns(facts, fix)))
            continue
        out.append(Check(name, OK, f"network {n.name}: {n.cidr} on {dev or n.driver}, up, "
                         "routed to it alone"))
    if networks and not facts.nft_error and f"inet {table}" not in facts.tables:
        out.append(Check("nft_table", FAIL, f"lxcloud's table inet {table} is missing: no NAT, "
                         "no metadata service, no security groups (lxcloud up writes its rules "
                         "at start-up)",
                         "lxcloud up"))
    elif networks and not facts.nft_error:
        others = [t for t in facts.tables if t != f"inet {table}"]
        out.append(Check("nft_table", OK, f"lxcloud's rules are in their own table inet {table}"
                         + (f", beside {len(others)} other table(s)" if others else "")))
    return out


def check_uplinks(facts: HostFacts, interfaces: Sequence[str]) -> list[Check]:
    """The host interfaces the cloud's public address pools are on: there and up."""
    links = {link.name: link for link in facts.links}
    out = []
    for dev in dict.fromkeys(interfaces):
        if dev not in links:
            out.append(Check(f"uplink.{dev}", FAIL, f"interface {dev} of a public address pool "
                             "is missing: its addresses and port forwards answer nothing (make "
                             "it again, or delete the pool)", "lxcloud address pool list"))
        elif not links[dev].up:
            out.append(Check(f"uplink.{dev}", FAIL, f"interface {dev} of a public address pool "
                             "is down: its addresses and port forwards answer nothing",
                             _ns(facts, f"ip link set {dev} up")))
        else:
            out.append(Check(f"uplink.{dev}", OK, f"interface {dev} of a public address pool "
                             "is up"))
    return out


def check_kernel(facts: HostFacts) -> list[Check]:
    loaded = set(facts.modules_loaded)
    available = set(facts.modules_available)
    out = []
    for f in FEATURES:
        name = f"kernel.{f.name}"
        values = [facts.kernel_config.get(k) for k in f.configs]
        if f.module and f.module in loaded:
            out.append(Check(name, OK, f"{f.name}: loaded"))
        elif facts.kernel_config and all(v == "y" for v in values):
            out.append(Check(name, OK, f"{f.name}: built in"))
        elif (facts.kernel_config and all(v in ("y", "m") for v in values)) or \
                (f.module and f.module in available):
            out.append(Check(name, OK, f"{f.name}: a module, loaded on first use",
                             ))
        elif not facts.kernel_config and not available:
            out.append(Check(name, WARN, f"{f.name}: cannot tell (no /proc/config.gz, no "
                             f"/boot/config-{facts.kernel}, no modules.dep) — {f.why} need it",
                             f"modprobe {f.module}" if f.module else ""))
        else:
            missing = [k for k, v in zip(f.configs, values, strict=True) if v not in ("y", "m")]
            out.append(Check(name, FAIL if f.required else WARN,
                             f"{f.name}: missing from this kernel ({', '.join(missing)} not set): "
                             f"{f.why} cannot work",
                             f"boot a kernel with {'=y, '.join(missing)}=y (or =m)"))
    userns = facts.sysctls.get("user.max_user_namespaces")
    if userns is not None and userns.strip() == "0":
        out.append(Check("kernel.user_namespaces.limit", FAIL, "user.max_user_namespaces=0: no "
                         "unprivileged container can start",
                         "sysctl -w user.max_user_namespaces=63000"))
    return out


def check_cgroups(facts: HostFacts) -> list[Check]:
    out = []
    for ctl, required, why in CGROUPS:
        if facts.cgroups.get(ctl):
            continue
        state = "disabled" if ctl in facts.cgroups else "missing"
        out.append(Check(f"cgroup.{ctl}", FAIL if required else WARN,
                         f"cgroup controller {ctl} is {state}: {why} cannot be enforced",
                         f"boot with cgroup_enable={ctl} on the kernel command line"
                         if state == "disabled" else f"boot a kernel with the {ctl} controller"))
    return out or [Check("cgroups", OK, "cgroup controllers: " + ", ".join(
        c for c, _, _ in CGROUPS))]


def check_tools(facts: HostFacts) -> list[Check]:
    out = []
    if facts.dnsmasq:
        out.append(Check("dnsmasq", OK, f"dnsmasq: {facts.dnsmasq}"))
    else:
        out.append(Check("dnsmasq", FAIL, "dnsmasq is not installed: no DHCP nor DNS for "
                         "instances", "apt-get install -y dnsmasq-base"))
    m = re.match(r"(\d+)\.(\d+)", facts.lxc_version)
    if not facts.lxc_version:
        out.append(Check("lxc", FAIL, "lxc is not installed", "apt-get install -y lxc"))
    elif m and (int(m.group(1)), int(m.group(2))) < (4, 0):
        out.append(Check("lxc", WARN, f"lxc {facts.lxc_version} is older than 4.0 (tested: 5.0)",
                         "apt-get install -y lxc (from Debian 12 or later)"))
    else:
        out.append(Check("lxc", OK, f"lxc {facts.lxc_version}"))
    return out


def checks(facts: HostFacts, networks: Sequence[NetworkSpec] = (),
           table: str = "lxcloud", uplinks: Sequence[str] = ()) -> list[Check]:
    """Every check over `facts`, for a cloud with `networks` whose rules are in `inet table`
    and whose public address pools are on the host interfaces `uplinks`."""
    return [check_ip_forward(facts), *check_forward_chains(facts, networks, table),
            *check_input_chains(facts, networks, table), check_legacy_iptables(facts, networks),
            check_br_netfilter(facts), check_conntrack(facts),
            *check_networks(facts, networks, table), *check_uplinks(facts, uplinks),
            *check_kernel(facts), *check_cgroups(facts), *check_tools(facts)]


def diagnose(networks: Sequence[NetworkSpec] = (), table: str = "lxcloud",
             netns: str | None = None, uplinks: Sequence[str] = ()) -> list[Check]:
    """The host's (or `netns`'s) facts read and checked."""
    return checks(read_facts(netns), networks, table, uplinks)


def worst(found: Sequence[Check]) -> str:
    statuses = {c.status for c in found}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m lxcloud.node.doctor [--netns NS] [--json]`: the checks without a cloud (no
    network of ours is known: our bridges are taken as lxcbr*). `--facts`: the facts as JSON
    (what read_facts(netns=...) runs inside the namespace)."""
    p = argparse.ArgumentParser(prog="python -m lxcloud.node.doctor")
    p.add_argument("--facts", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--netns")
    a = p.parse_args(argv)
    if a.facts:
        json.dump(read_facts().to_dict(), sys.stdout)
        return 0
    found = diagnose(netns=a.netns)
    report = {"status": worst(found), "checks": [c.to_dict() for c in found]}
    if a.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(report))
    return 1 if report["status"] == FAIL else 0


def render(report: dict[str, Any]) -> str:
    """A report ({"status", "checks": [{name, status, message, fix}]}) as text: a line per
    check, its fix below it, and a count."""
    lines = []
    for c in report["checks"]:
        lines.append(f"{c['status'].upper():4}  {c['name']:28} {c['message']}")
        if c["fix"]:
            lines.append(f"      fix: {c['fix']}")
    n = {s: sum(c["status"] == s for c in report["checks"]) for s in (OK, WARN, FAIL)}
    lines.append(f"{report['status']}: {n[FAIL]} failed, {n[WARN]} warning(s), {n[OK]} ok")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    raise SystemExit(main())
