"""Time to associate, disassociate and forward one public address among N, and to sync N.

The host side only, in a network namespace of the bench's own (its own nftables and links, so
nothing of the host is touched): a veth standing for the public interface, N addresses of a
pool associated with N private addresses (no instances behind them: what an instance adds plays
no part in changing the NAT). Prints, for each kind of change, the nftables transactions it took
and the median and worst wall time of the whole driver call (reading the maps, the /32 on the
interface, the transaction).

    .venv/bin/python bench/addresses.py [--addresses 200] [--repeat 20]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lxcloud.drivers.network.nft import NFT, Json, Nft
from lxcloud.drivers.network.publicnat import (
    AddressPool,
    Association,
    PortForward,
    PublicNat,
    PublicNatDriver,
)

TABLE = "lxcloud_pubbench"
IFACE = "pubbench0"


@dataclass
class CountingNft(Nft):
    """The real context, counting the transactions that change something."""

    changes: int = 0
    runs: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def run(self, cmds: list[Json], what: str, *, missing_ok: bool = False) -> Json | None:
        if not (cmds and "list" in cmds[0]):
            self.changes += 1
        return NFT.run(cmds, what, missing_ok=missing_ok)


def timed(fn: Callable[[], object], nft: CountingNft) -> tuple[float, int]:
    before = nft.changes
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t, nft.changes - before


def report(name: str, samples: list[tuple[float, int]]) -> None:
    ms = [t * 1000 for t, _ in samples]
    tx = {n for _, n in samples}
    print(f"{name:<38} transactions {'/'.join(map(str, sorted(tx))):<4} "
          f"median {statistics.median(ms):7.2f} ms   worst {max(ms):7.2f} ms")


def inner(n: int, repeat: int) -> None:
    subprocess.run(["ip", "link", "add", IFACE, "type", "veth", "peer", "name", IFACE + "p"],
                   check=True)
    subprocess.run(["ip", "link", "set", IFACE, "up"], check=True)
    subprocess.run(["ip", "addr", "add", "198.18.0.1/16", "dev", IFACE], check=True)
    base = ipaddress.IPv4Address("198.18.1.0")
    pool = AddressPool(IFACE, str(base), str(base + n + repeat + 10))
    assocs = [Association(str(base + i), str(ipaddress.IPv4Address("10.99.0.0") + i + 2), IFACE)
              for i in range(n)]
    nft = CountingNft()
    drv = PublicNatDriver(nft)
    print(f"{n} addresses associated on one interface, {repeat} repeats")
    report(f"sync of all {n} (from nothing)",
           [timed(lambda: drv.sync(PublicNat(TABLE, (pool,), tuple(assocs))), nft)])
    report(f"sync of all {n} again (no change)",
           [timed(lambda: drv.sync(PublicNat(TABLE, (pool,), tuple(assocs))), nft)
            for _ in range(3)])
    extra = [Association(str(base + n + i), f"10.98.0.{i + 2}", IFACE) for i in range(repeat)]
    report("associate one more", [timed(lambda a=a: drv.associate(TABLE, a), nft)  # type: ignore[misc]
                                  for a in extra])
    report("disassociate it", [timed(lambda a=a: drv.disassociate(TABLE, a), nft)  # type: ignore[misc]
                               for a in extra])
    fwds = [PortForward(str(base + n + 1), "tcp", 10000 + i, "10.97.0.2", 80, IFACE)
            for i in range(repeat)]
    report("add a port forward", [timed(lambda f=f: drv.add_forward(TABLE, f), nft)  # type: ignore[misc]
                                  for f in fwds])
    report("remove it", [timed(lambda f=f: drv.remove_forward(TABLE, f), nft)  # type: ignore[misc]
                         for f in fwds])
    report(f"teardown of all {n}", [timed(lambda: drv.teardown(TABLE, [pool]), nft)])
    drv.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addresses", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.inner:
        inner(a.addresses, a.repeat)
        return
    ns = f"pubbench{random.randrange(16**4):04x}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--inner",
                        "--addresses", str(a.addresses), "--repeat", str(a.repeat)],
                       check=True, env=env)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)  # its links go with it


if __name__ == "__main__":
    main()
