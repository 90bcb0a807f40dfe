#!/usr/bin/env python3
"""Network figures: throughput and latency container<->container on one bridge and
host<->container, through lxcloud (real containers of a real all-in-one cloud, `lxcloud up`,
launched through its REST API) against the floor, in the same run with the same tools:

  floor        a pair of plain veth endpoints (network namespaces) on a plain Linux bridge, in a
               namespace of its own with no nftables rule at all and bridge-nf-call-iptables=0
  + br_nf      the same with bridged IPv4 passing the inet hooks (bridge-nf-call-iptables=1, which
               security groups need), still no rule
  + rules      the same with lxcloud's network rules (drivers/network/firewall.py's ruleset for
               that bridge, as the bridge driver writes it) in that namespace
  lxcloud      two busybox instances of the cloud on its default network, in the host's own
               namespace, in a security group of one rule (any TCP in): the port guard, the
               cloud's table, its security groups, and whatever other tables this host has
               (other clouds' too) on the path
  + 50 rules   the same instances in a group of 50 ingress rules, only the last matching

The tools run in each endpoint's network namespace (`ip netns exec`, or `nsenter --net` into a
container's init), not inside the container's filesystem: the packets take exactly the path an
instance's own take (its veth, the bridge, every netfilter hook), and the same binaries measure
every row. Throughput: iperf3 (Debian's), one TCP stream for --seconds. Latency: a TCP 1-byte
request/response loop (bench/_rr.py, netperf's TCP_RR), and the same with a new connection for
each round trip (TCP_CRR: where a firewall's rules are paid, on a flow's first packets) — the
probe's own cost is in every row alike.
Each row is the median of --rounds rounds, the rows of a round in a shuffled order so the drift
of this shared 2-core machine hits every row alike, with the spread of the rounds beside it (one
TCP stream over veth is bound by one CPU: what else runs on the machine moves it by 2x or more);
a ratio (and an added latency) is the median over the rounds of that round's figure against the
floor's of the same round, the closest in time.

    .venv/bin/python bench/network.py [--rounds 5] [--seconds 3] [--rr 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._cloud import BenchCloud, ensure_image  # noqa: E402
from lxcloud.config import Settings  # noqa: E402
from lxcloud.drivers.network.base import NetworkSpec  # noqa: E402
from lxcloud.drivers.network.firewall import ruleset  # noqa: E402

RR = str(Path(__file__).resolve().parent / "_rr.py")


def sh(argv: Sequence[str], timeout: float = 120) -> str:
    cp = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                        stdin=subprocess.DEVNULL)
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {cp.stderr.strip()}")
    return cp.stdout


@dataclass
class End:
    """Where a tool runs: argv prefix that enters the namespace, and the address it has there."""

    name: str
    enter: list[str]
    ip: str


def netns(name: str) -> list[str]:
    return ["ip", "netns", "exec", name]


def iperf(server: End, client: End, seconds: int) -> float:
    """Gbit/s received by `server` from one TCP stream of `client`."""
    port = str(random.randint(20000, 40000))
    srv = subprocess.Popen([*server.enter, "iperf3", "-s", "-1", "-p", port, "--forceflush"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert srv.stdout is not None
        for line in srv.stdout:          # a real event: it says so once it listens
            if "listening" in line:
                break
        else:
            raise SystemExit(f"iperf3 server in {server.name} did not start")
        out = json.loads(sh([*client.enter, "iperf3", "-c", server.ip, "-p", port, "-t",
                             str(seconds), "-J"], timeout=seconds + 60))
        return float(out["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        srv.kill()
        srv.wait()


def rr(server: End, client: End, n: int, mode: str = "") -> dict[str, float]:
    """Round trips of one byte on one connection; mode "c": a new connection each (TCP_CRR)."""
    port = str(random.randint(40001, 60000))
    srv = subprocess.Popen([*server.enter, sys.executable, RR, f"{mode}server", port],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout is not None
        if srv.stdout.readline().strip() != "ready":
            raise SystemExit(f"latency probe in {server.name} did not start")
        return json.loads(sh([*client.enter, sys.executable, RR, f"{mode}client", server.ip,
                              port, str(n)]))  # type: ignore[no-any-return]
    finally:
        srv.kill()
        srv.wait()


@dataclass
class Figures:
    gbps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    crr: list[float] = field(default_factory=list)    # p50 of connect + round trip + close

    def add(self, g: float, lat: dict[str, float], crr: dict[str, float]) -> None:
        self.gbps.append(g)
        self.p50.append(lat["p50_us"])
        self.p99.append(lat["p99_us"])
        self.crr.append(crr["p50_us"])

    @property
    def med(self) -> tuple[float, float, float]:
        return (statistics.median(self.gbps), statistics.median(self.p50),
                statistics.median(self.p99))


class Floor:
    """A bridge in a namespace of its own (the floor's "host": its address is the gateway) with
    two endpoint namespaces on it through plain veth pairs."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.host, self.a, self.b = f"lxbh{tag}", f"lxba{tag}", f"lxbb{tag}"
        self.bridge = f"lxbbr{tag}"
        net = "10.248.251"
        self.spec = NetworkSpec(name="floor", bridge=self.bridge, cidr=f"{net}.0/24",
                                gateway=f"{net}.1", nft_table=f"lxcloud_b{tag}")
        self.ends: dict[str, End] = {}
        self.made: list[str] = []
        try:
            for ns in (self.host, self.a, self.b):
                sh(["ip", "netns", "add", ns])
                self.made.append(ns)
            h = netns(self.host)
            sh([*h, "ip", "link", "add", self.bridge, "type", "bridge"])
            sh([*h, "ip", "addr", "add", f"{net}.1/24", "dev", self.bridge])
            sh([*h, "ip", "link", "set", self.bridge, "up"])
            sh([*h, "ip", "link", "set", "lo", "up"])
            sh([*h, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"])
            for i, ns in enumerate((self.a, self.b)):
                port = f"lxbp{tag}{i}"
                sh([*h, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", ns])
                sh([*h, "ip", "link", "set", port, "master", self.bridge, "up"])
                ip = f"{net}.{10 + i}"
                sh([*netns(ns), "ip", "addr", "add", f"{ip}/24", "dev", "eth0"])
                sh([*netns(ns), "ip", "link", "set", "eth0", "up"])
                sh([*netns(ns), "ip", "link", "set", "lo", "up"])
                self.ends[ns] = End(ns, netns(ns), ip)
            self.ends[self.host] = End("floor host", h, f"{net}.1")
        except BaseException:
            self.close()
            raise

    def br_netfilter(self, on: bool) -> None:
        sh([*netns(self.host), "sysctl", "-qw",
            f"net.bridge.bridge-nf-call-iptables={int(on)}"])

    def rules(self, on: bool) -> None:
        if on:
            with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
                json.dump({"nftables": ruleset(self.spec)}, f)
                f.flush()
                sh([*netns(self.host), "nft", "-j", "-f", f.name])
        else:
            sh([*netns(self.host), "nft", "flush", "ruleset"])

    def close(self) -> None:
        for ns in reversed(self.made):   # their links, bridge and rules go with them
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@dataclass
class Case:
    label: str
    prepare: Callable[[], None]
    c2c: tuple[End, End]     # (server, client)
    h2c: tuple[End, End]
    figures: dict[str, Figures] = field(default_factory=lambda: {"c2c": Figures(),
                                                                  "h2c": Figures()})


def container_end(cloud: BenchCloud, lxcpath: Path, inst: dict[str, object]) -> End:
    inst = cloud.http.get(f"/api/v1/instances/{inst['id']}").json()
    pid = sh(["lxc-info", "-P", str(lxcpath), "-n", str(inst["id"]), "-p", "-H"]).strip()
    return End(str(inst["name"]), ["nsenter", f"--net=/proc/{pid}/ns/net"], str(inst["ipv4"]))


def make_groups(cloud: BenchCloud) -> dict[str, int]:
    """Two security groups: "bench1" lets any TCP in (one ingress rule), "bench50" has 50 ingress
    rules of which only the last matches these flows (49 others before it: ports and CIDRs of
    nothing here). Both allow all egress (a new group's own rule). Name -> ingress rule count."""
    counts = {}
    for name, n in (("bench1", 1), ("bench50", 50)):
        r = cloud.http.post("/api/v1/security-groups", json={"name": name})
        if r.status_code >= 400:
            raise SystemExit(f"security group {name}: {r.status_code} {r.text}")
        for i in range(n - 1):
            rule = {"direction": "ingress", "protocol": "tcp", "port_from": 1000 + i,
                    "port_to": 1000 + i, "cidr": f"10.99.{i}.0/24"}
            cloud.http.post(f"/api/v1/security-groups/{name}/rules", json=rule).raise_for_status()
        cloud.http.post(f"/api/v1/security-groups/{name}/rules",
                        json={"direction": "ingress", "protocol": "tcp",
                              "cidr": "0.0.0.0/0"}).raise_for_status()
        counts[name] = n
    return counts


def in_group(cloud: BenchCloud, names: Sequence[str], group: str) -> Callable[[], None]:
    """A row's preparation: the instances put in `group` (applied on the host at once)."""
    def prepare() -> None:
        for n in names:
            cloud.http.put(f"/api/v1/instances/{n}/security-groups",
                           json={"groups": [group]}).raise_for_status()
    return prepare


def forward_chains() -> dict[str, int]:
    """The forward-hook base chains of the host's namespace (every table, every program's)."""
    from lxcloud.node.doctor import read_facts

    facts = read_facts()
    fwd = [c for c in facts.chains if c.hook == "forward"]
    return {"forward": len(fwd), "tables": len({(c.family, c.table) for c in fwd}),
            "ours": sum(c.table == OURS[0] for c in fwd)}


OURS = [""]     # this run's cloud table name, once it is up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rr", type=int, default=2000, help="round trips per latency figure")
    ap.add_argument("--crr", type=int, default=500, help="new connections per figure")
    args = ap.parse_args()
    steps: list[tuple[str, float]] = []
    t = time.perf_counter()

    def step(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps.append((name, now - t))
        t = now

    floor = Floor()
    step("floor: 3 namespaces, a bridge, 2 veth pairs")
    cloud = BenchCloud()
    step("lxcloud up (controller, node, default network)")
    try:
        ensure_image(cloud, "busybox")
        step("image build busybox")
        insts = [cloud.launch("busybox", f"net{i}", memory="128MiB") for i in range(2)]
        step("launch 2 instances (REST, waited)")
        settings = Settings.load(cloud.data_dir)
        lxcpath = settings.lxcpath
        OURS[0] = settings.nft_table
        a, b = (container_end(cloud, lxcpath, i) for i in insts)
        names = [a.name, b.name]
        make_groups(cloud)
        step("2 security groups (1 and 50 ingress rules)")
        host = End("host", [], "")
        fa, fb, fh = floor.ends[floor.a], floor.ends[floor.b], floor.ends[floor.host]

        def floor_state(br_nf: bool, rules: bool) -> Callable[[], None]:
            def prepare() -> None:
                floor.br_netfilter(br_nf)
                floor.rules(rules)
            return prepare

        cases = [
            Case("floor: veth + bridge", floor_state(False, False), (fa, fb), (fa, fh)),
            Case("+ br_netfilter (no rule)", floor_state(True, False), (fa, fb), (fa, fh)),
            Case("+ lxcloud's network rules", floor_state(True, True), (fa, fb), (fa, fh)),
            Case("lxcloud: instances, 1-rule group", in_group(cloud, names, "bench1"),
                 (a, b), (a, host)),
            Case("+ 50 rules per security group", in_group(cloud, names, "bench50"),
                 (a, b), (a, host)),
        ]
        hooks = forward_chains()
        for _ in range(args.rounds):
            for case in random.sample(cases, len(cases)):
                case.prepare()
                for path, (srv, cli) in (("c2c", case.c2c), ("h2c", case.h2c)):
                    case.figures[path].add(iperf(srv, cli, args.seconds), rr(srv, cli, args.rr),
                                           rr(srv, cli, args.crr, "c"))
        step(f"measure: {args.rounds} rounds x {len(cases)} rows x 2 paths "
             f"(iperf3 {args.seconds} s + {args.rr} round trips + {args.crr} connections each)")
    finally:
        cloud.close()
        floor.close()
    step("purge the cloud, remove the floor")

    print(f"\n== network: iperf3 one TCP stream {args.seconds:g} s; TCP 1-byte request/response "
          f"x{args.rr}; median of {args.rounds} interleaved rounds")
    for path, title in (("c2c", "container <-> container, one bridge"),
                        ("h2c", "host <-> container")):
        print(f"\n{title}")
        print(f"  {'':34} {'Gbit/s':>8} {'(min-max)':>13} {'ratio':>6} {'RR p50 us':>10} "
              f"{'p99 us':>8} {'p50 +us':>8} {'CRR p50 us':>11} {'+us':>7}")
        floor_f = cases[0].figures[path]
        for case in cases:
            f = case.figures[path]
            g, p50, p99 = f.med
            spread = f"({min(f.gbps):.1f}-{max(f.gbps):.1f})"
            # each round's figure against the floor's of the same round (the closest in time)
            ratio = statistics.median(x / y for x, y in zip(f.gbps, floor_f.gbps, strict=True))
            added = statistics.median(x - y for x, y in zip(f.p50, floor_f.p50, strict=True))
            crr = statistics.median(f.crr)
            crr_added = statistics.median(x - y for x, y in zip(f.crr, floor_f.crr, strict=True))
            print(f"  {case.label:34} {g:8.2f} {spread:>13} {ratio:6.2f} {p50:10.1f} "
                  f"{p99:8.1f} {added:+8.1f} {crr:11.1f} {crr_added:+7.1f}")
    print("\nwhere the time goes: each row adds one step to the row above it; 'ratio' is the "
          "throughput against the floor's of the same round, 'p50 +us' the latency added to it. A security "
          "group's rules see a flow's first packet only (established packets are accepted before "
          "them), so 50 rules cost a new connection (CRR), not a stream's bytes.")
    print(f"\nthe host's own namespace (the lxcloud rows) had {hooks['forward']} forward-hook base "
          f"chains in {hooks['tables']} tables during the run ({hooks['ours']} of this cloud's): "
          "with br_netfilter each bridged packet passes every one of them, the floor's none")
    print("\nwhere the run's time went")
    for name, s in steps:
        print(f"  {s:8.2f} s  {name}")


if __name__ == "__main__":
    main()
