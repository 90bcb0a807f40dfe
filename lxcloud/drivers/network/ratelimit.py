"""Per-NIC bandwidth limits with tc on the instance's host-side port (a veth).

Seen from the host, the instance's directions are reversed: what the instance receives leaves the
host port (its egress), what it sends enters the host port (its ingress).

- ingress (into the instance): a TBF qdisc at the root of the host port.
- egress (out of the instance): the host port's ingress qdisc redirects every frame (a u32 match-all
  filter with a mirred action) to an ifb device of the port's own, whose root is a TBF. This kernel
  has no police action (STACK.md), so shaping on an ifb is the way to limit what a port receives;
  it also queues instead of dropping, which TCP prefers.

The ifb is named after the port (`ifb_name`) and carries the port's name in its alias, so a sweep
can remove those whose port is gone (a container killed without its stop hook) and only those: a
port of another cloud has another name. Nothing is set on the container's side: root inside the
instance cannot lift a limit.

A limit is one list of tc/ip commands (`steps`), run at once on a running instance (RateLimiter)
and written as LXC's network hooks (`script`, run by `lxc.net.N.script.up/down`), so it comes back
at every start, a reboot from inside included. Commands, not pyroute2, for the writing: a hook is a
new process at every start, and importing pyroute2 there cost 0.3 to 1.7 s on this machine where
the five commands take a few milliseconds. Reading (what is in force, the sweep) is netlink.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from typing import Any

from lxcloud.core.errors import DriverError, InvalidInput
from lxcloud.core.proc import run

ALIAS = "lxcloud-rate "          # IFLA_IFALIAS of our ifb devices: ALIAS + the port's name
INGRESS_PARENT = 0xFFFF0000      # the ingress qdisc's handle ffff:
TC_ROOT = 0xFFFFFFFF             # parent "root"
LATENCY = "50ms"                 # how long a packet may wait in a TBF before it is dropped
MIN_BURST = 32 * 1024            # bytes: several MTU-sized frames, whatever the rate
_ENODEV = 19


@dataclass(frozen=True)
class Rates:
    """What a port is limited to, bits/s; 0: no limit in that direction."""

    ingress: int = 0      # into the instance
    egress: int = 0       # out of the instance

    @property
    def any(self) -> bool:
        return bool(self.ingress or self.egress)


def ifb_name(port: str) -> str:
    """The ifb device that shapes what `port` receives (≤ 15 chars, the same for the same port)."""
    return "ifb" + hashlib.sha256(port.encode()).hexdigest()[:12]


def burst(rate: int) -> int:
    """Bytes a TBF may send at once: 20 ms at the rate, never below a few frames."""
    return max(MIN_BURST, rate // 8 // 50)


def _code(e: BaseException) -> int | None:
    return getattr(e, "code", None)


def _iproute(netns: str | None) -> Any:
    from pyroute2 import IPRoute  # imported late: importing pyroute2 costs ~100 ms

    return IPRoute(netns=netns) if netns else IPRoute()


@dataclass(frozen=True)
class Step:
    """One command of setting a limit; `may_fail`: its failure means there was nothing to do
    (a qdisc to delete that is not there, an ifb that exists already)."""

    argv: tuple[str, ...]
    may_fail: bool = False


def _tbf(dev: str, rate: int) -> Step:
    return Step(("tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "tbf", "rate",
                 f"{rate}bit", "burst", str(burst(rate)), "latency", LATENCY))


def steps(port: str, rates: Rates) -> list[Step]:
    """The tc/ip commands that leave `port` limited to `rates`, whatever it had before: the one
    description of a limit, run at once (RateLimiter.apply) or by LXC's hook at every start."""
    ifb = ifb_name(port)
    out: list[Step] = []
    if rates.ingress:
        out.append(_tbf(port, rates.ingress))
    else:
        out.append(Step(("tc", "qdisc", "del", "dev", port, "root"), may_fail=True))
    if rates.egress:
        out += [Step(("ip", "link", "add", ifb, "type", "ifb"), may_fail=True),
                Step(("ip", "link", "set", "dev", ifb, "alias", ALIAS + port, "up")),
                _tbf(ifb, rates.egress),
                Step(("tc", "qdisc", "add", "dev", port, "handle", "ffff:", "ingress"),
                     may_fail=True),
                # replace with a fixed priority and handle: the same filter however often
                Step(("tc", "filter", "replace", "dev", port, "parent", "ffff:", "protocol", "all",
                      "pref", "10", "handle", "800::800", "u32", "match", "u32", "0", "0",
                      "action", "mirred", "egress", "redirect", "dev", ifb))]
    else:
        out += [Step(("tc", "qdisc", "del", "dev", port, "ingress"), may_fail=True),
                Step(("ip", "link", "del", ifb), may_fail=True)]
    return out


def removal(port: str) -> list[Step]:
    """What takes every limit off `port` (and its ifb away)."""
    return steps(port, Rates())


def script(port: str, rates: Rates) -> str:
    """`steps` as the shell script LXC's network hook runs (`lxc.net.N.script.up`; with no rates:
    the `script.down` one). A failing step fails the hook, and with it the start: an instance
    never runs unlimited when a limit was asked for."""
    lines = ["#!/bin/sh", f"# written by lxcloud: the bandwidth limits of {port}",
             "PATH=/usr/sbin:/usr/bin:/sbin:/bin", ""]
    for st in steps(port, rates):
        cmd = " ".join(shlex.quote(a) for a in st.argv)
        lines.append(f"{cmd} 2>/dev/null || true" if st.may_fail else f"{cmd} || exit 1")
    return "\n".join(lines) + "\n"


class RateLimiter:
    """Sets, reads and removes the limits of host ports: writes with tc and ip (the commands
    the hook runs too), reads with netlink."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns      # where the ports are (the compute driver's network namespace)

    def _run(self, st: Step) -> None:
        prefix = ("ip", "netns", "exec", self.netns) if self.netns else ()
        cp = run([*prefix, *st.argv], check=False, timeout=30)
        if cp.returncode != 0 and not st.may_fail:
            raise DriverError(f"{' '.join(st.argv[:3])} failed (exit {cp.returncode})",
                              command=list(st.argv), stderr=cp.stderr.decode(errors="replace"))

    # --- the contract
    def apply(self, port: str, rates: Rates) -> None:
        """`port` limited to `rates` (0 in a direction removes that limit). Idempotent; a change
        on a running instance takes effect at once. DriverError when `port` does not exist."""
        if rates.ingress < 0 or rates.egress < 0:
            raise InvalidInput("a rate limit must not be negative")
        if not self._exists(port):
            raise DriverError(f"cannot limit {port}: no such interface")
        for st in steps(port, rates):
            self._run(st)

    def remove(self, port: str) -> None:
        """No limit left on `port`, its ifb gone. Missing port: only the ifb is removed."""
        todo = removal(port) if self._exists(port) else [Step(("ip", "link", "del",
                                                                ifb_name(port)), may_fail=True)]
        for st in todo:
            self._run(st)

    def _exists(self, name: str) -> bool:
        ipr = _iproute(self.netns)
        try:
            return self._index(ipr, name) is not None
        finally:
            ipr.close()

    def read(self, port: str) -> Rates:
        """The limits in force on `port` (as the kernel holds them)."""
        ipr = _iproute(self.netns)
        try:
            idx = self._index(ipr, port)
            if idx is None:
                return Rates()
            ingress = self._tbf_rate(ipr, idx)
            egress = 0
            ifb = self._index(ipr, ifb_name(port))
            if ifb is not None and self._redirects(ipr, idx):
                egress = self._tbf_rate(ipr, ifb)
            return Rates(ingress, egress)
        finally:
            ipr.close()

    def sweep(self, prefix: str) -> list[str]:
        """Remove the ifb devices of ports named `prefix`… that no longer exist; their names."""
        ipr = _iproute(self.netns)
        gone = []
        try:
            for link in ipr.get_links():
                alias = link.get_attr("IFLA_IFALIAS") or ""
                if not alias.startswith(ALIAS):
                    continue
                port = alias[len(ALIAS):]
                if port.startswith(prefix) and self._index(ipr, port) is None:
                    name = link.get_attr("IFLA_IFNAME")
                    self._del_link(ipr, name)
                    gone.append(name)
        finally:
            ipr.close()
        return gone

    # --- helpers
    @staticmethod
    def _index(ipr: Any, name: str) -> int | None:
        found = ipr.link_lookup(ifname=name)
        return int(found[0]) if found else None

    @staticmethod
    def _tbf_rate(ipr: Any, idx: int) -> int:
        for q in ipr.get_qdiscs(idx):
            if q.get_attr("TCA_KIND") == "tbf" and q["parent"] == TC_ROOT:
                parms = q.get_nested("TCA_OPTIONS", "TCA_TBF_PARMS")
                rate64 = q.get_nested("TCA_OPTIONS", "TCA_TBF_RATE64")
                bytes_s = rate64 or (parms or {}).get("rate", 0)
                return int(bytes_s) * 8
        return 0

    @staticmethod
    def _redirects(ipr: Any, idx: int) -> bool:
        return any(f.get_attr("TCA_KIND") == "u32" and f.get_nested("TCA_OPTIONS", "TCA_U32_ACT")
                   for f in ipr.get_filters(idx, parent=INGRESS_PARENT))

    def _del_link(self, ipr: Any, name: str) -> None:
        idx = self._index(ipr, name)
        if idx is None:
            return
        try:
            ipr.link("del", index=idx)
        except Exception as e:
            if _code(e) != _ENODEV:
                raise
