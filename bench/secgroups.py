"""Time to apply one security-group change to N running instances, and where the time goes.

The host side only: N veth ports on a bridge inside a network namespace of the bench's own (its own
nftables, so nothing of the host is touched), each port standing for an instance with one address,
all in one group with R rules. What an instance adds beyond its port (the container) plays no part
in applying a rule, so containers are not started. Prints, for each kind of change: the number of
nftables transactions, of JSON commands, the median and worst time of building the commands and of
libnftables' run (parse, netlink, the kernel's commit).

    .venv/bin/python bench/secgroups.py [--ports 100] [--rules 50] [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lxcloud.drivers.network.nft import NFT, Json, Nft
from lxcloud.drivers.network.secgroups import (
    GroupPolicy,
    PortPolicy,
    SecurityGroupRule,
    SecurityGroups,
)

TABLE = "lxcloud_sgbench"


@dataclass
class TimedNft(Nft):
    """The real context, timing each transaction and counting its commands."""

    runs: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def run(self, cmds: list[Json], what: str, *, missing_ok: bool = False) -> Json | None:
        t = time.perf_counter()
        out = NFT.run(cmds, what, missing_ok=missing_ok)
        if not (cmds and "list" in cmds[0]):
            self.runs.append((time.perf_counter() - t, len(cmds)))
        return out


class BuildOnly(Nft):
    """Counts what would be sent; lists go to the real context (to build the same commands)."""

    def run(self, cmds: list[Json], what: str, *, missing_ok: bool = False) -> Json | None:
        if cmds and "list" in cmds[0]:
            return NFT.run(cmds, what, missing_ok=missing_ok)
        return {}


def rules(n: int, gid: str) -> tuple[SecurityGroupRule, ...]:
    out = [SecurityGroupRule("egress"), SecurityGroupRule("ingress", source_group=gid)]
    out += [SecurityGroupRule("ingress", "tcp", 1000 + i, 1000 + i, cidr=f"10.{i % 250}.0.0/16")
            for i in range(max(0, n - 2))]
    return tuple(out[:n])


def _ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1e3:7.2f} ms   worst {max(xs) * 1e3:7.2f} ms"


def measure(label: str, change: Callable[[SecurityGroups], None], repeat: int) -> None:
    timed = TimedNft()
    build, run = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        change(SecurityGroups(BuildOnly()))
        build.append(time.perf_counter() - t)
        timed.runs.clear()
        change(SecurityGroups(timed))
        run.append(sum(r[0] for r in timed.runs))
    tx, cmds = len(timed.runs), sum(r[1] for r in timed.runs)
    print(f"{label}\n  {tx} nft transaction(s), {cmds} JSON commands")
    print(f"  build the commands (Python)        {_ms(build)}")
    print(f"  libnftables run (parse+netlink+commit) {_ms(run)}")


def inner(ports: int, nrules: int, repeat: int) -> None:
    subprocess.run(["ip", "link", "add", "br0", "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", "br0", "up"], check=True)
    for i in range(ports):
        subprocess.run(["ip", "link", "add", f"p{i}", "type", "veth", "peer", "name", f"q{i}"],
                       check=True)
        subprocess.run(["ip", "link", "set", f"p{i}", "master", "br0", "up"], check=True)
    pol = [PortPolicy(f"p{i}", "br0", (f"10.99.{i // 250}.{i % 250 + 2}",), ("sg-bench",))
           for i in range(ports)]
    group = GroupPolicy("sg-bench", rules(nrules, "sg-bench"))
    print(f"security groups: {ports} veth ports on a bridge in a network namespace (no containers:"
          f" applying a rule touches only the host side), one group of {nrules} rules\n")
    sg = SecurityGroups()
    measure(f"full sync of {ports} ports (controller start-up)",
            lambda s: s.apply(TABLE, pol, [group]), max(3, repeat // 4))
    flip = [0]

    def rule_change(s: SecurityGroups) -> None:
        flip[0] += 1
        extra = SecurityGroupRule("ingress", "tcp", 22, 22 + flip[0] % 2, cidr="0.0.0.0/0")
        s.update_group(TABLE, GroupPolicy("sg-bench", (*group.rules, extra)))

    measure(f"one rule added to the group of {ports} running instances (the goal: one "
            "transaction, < 100 ms)", rule_change, repeat)
    fresh = [0]

    def launch(s: SecurityGroups) -> None:   # a new instance's port: nothing to read back
        fresh[0] += 1
        n = fresh[0]
        s.add_port(TABLE, PortPolicy(f"n{n}", "br0", (f"10.98.{n // 250}.{n % 250 + 2}",),
                                     ("sg-bench",)), [group])

    measure("a new instance joins the group (a launch: set/map elements + its two chains)",
            launch, repeat)
    again = PortPolicy("p0", "br0", ("10.99.9.9",), ("sg-bench",))
    measure("an instance's port rewritten (a start: its old entries read back and replaced)",
            lambda s: s.add_port(TABLE, again, [group]), repeat)
    members = sg.members(TABLE, "sg-bench")
    print(f"\nkernel check: {len(members)} members in the group's set, "
          f"{len(sg.ports(TABLE))} ports in the verdict map")
    sg.remove_all(TABLE)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", type=int, default=100)
    ap.add_argument("--rules", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.inner:
        inner(a.ports, a.rules, a.repeat)
        return
    ns = f"sgbench{random.randrange(16**4):04x}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--inner",
                        "--ports", str(a.ports), "--rules", str(a.rules),
                        "--repeat", str(a.repeat)], check=True, env=env)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)  # its links go with it


if __name__ == "__main__":
    main()
