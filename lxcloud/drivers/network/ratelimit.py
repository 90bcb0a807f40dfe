"""Per-NIC bandwidth limits with tc on the instance's host-side port (a veth), through pyroute2.

Seen from the host, the instance's directions are reversed: what the instance receives leaves the
host port (its egress), what it sends enters the host port (its ingress).

- ingress (into the instance): a TBF qdisc at the root of the host port.
- egress (out of the instance): the host port's ingress qdisc redirects every frame (a u32 match-all
  filter with a mirred action) to an ifb device of the port's own, whose root is a TBF. This kernel
  has no police action (STACK.md), so shaping on an ifb is the way to limit what a port receives;
  it also queues instead of dropping, which TCP prefers.

The ifb is named after the port (`ifb_name`) and carries the port's name in its alias, so a sweep
can remove those whose port is gone (a container killed without its stop hook) and only those: a
port of another cloud has another name. A limit is set on the container side of nothing: root
inside the instance cannot lift it.

The same code runs as LXC's network hook (`lxc.net.N.script.up/down`, `hook_command`), so a limit
comes back at every start of the container, a reboot from inside included, with nothing to call.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxcloud.core.errors import DriverError, InvalidInput
from lxcloud.core.units import parse_rate

log = logging.getLogger(__name__)

ALIAS = "lxcloud-rate "          # IFLA_IFALIAS of our ifb devices: ALIAS + the port's name
INGRESS_PARENT = 0xFFFF0000      # the ingress qdisc's handle ffff:
ROOT_HANDLE = 0x10000            # 1:
TC_ROOT = 0xFFFFFFFF             # parent "root"
TC_INGRESS = 0xFFFFFFF1          # parent "ingress"
ETH_P_ALL = 0x0003
LATENCY = "50ms"                 # how long a packet may wait in a TBF before it is dropped
MIN_BURST = 32 * 1024            # bytes: several MTU-sized frames, whatever the rate
_ENOENT, _EEXIST, _ENODEV, _EINVAL = 2, 17, 19, 22


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


class RateLimiter:
    """Sets, reads and removes the limits of host ports. One netlink socket per call: a limit is
    set once per start or change, never on a hot path."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns      # where the ports are (the compute driver's network namespace)

    # --- the contract
    def apply(self, port: str, rates: Rates) -> None:
        """`port` limited to `rates` (0 in a direction removes that limit). Idempotent; a change
        on a running instance takes effect at once. DriverError when `port` does not exist."""
        if rates.ingress < 0 or rates.egress < 0:
            raise InvalidInput("a rate limit must not be negative")
        ipr = _iproute(self.netns)
        try:
            idx = self._index(ipr, port)
            if idx is None:
                raise DriverError(f"cannot limit {port}: no such interface")
            if rates.ingress:
                self._tbf(ipr, idx, rates.ingress)
            else:
                self._del_root(ipr, idx)
            if rates.egress:
                ifb = self._ensure_ifb(ipr, port)
                self._tbf(ipr, ifb, rates.egress)
                self._redirect(ipr, idx, ifb)
            else:
                self._del_ingress(ipr, idx)
                self._del_link(ipr, ifb_name(port))
        except DriverError:
            raise
        except Exception as e:   # pyroute2's NetlinkError and friends
            raise DriverError(f"tc on {port}: {e}") from e
        finally:
            ipr.close()

    def remove(self, port: str) -> None:
        """No limit left on `port`, its ifb gone. Missing port: only the ifb is removed."""
        ipr = _iproute(self.netns)
        try:
            idx = self._index(ipr, port)
            if idx is not None:
                self._del_root(ipr, idx)
                self._del_ingress(ipr, idx)
            self._del_link(ipr, ifb_name(port))
        except Exception as e:
            raise DriverError(f"tc on {port}: {e}") from e
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
    def _tbf(ipr: Any, idx: int, rate: int) -> None:
        ipr.tc("replace", "tbf", idx, handle=ROOT_HANDLE, rate=f"{rate}bit", burst=burst(rate),
               latency=LATENCY)

    @staticmethod
    def _tbf_rate(ipr: Any, idx: int) -> int:
        for q in ipr.get_qdiscs(idx):
            if q.get_attr("TCA_KIND") == "tbf" and q["parent"] == TC_ROOT:
                parms = q.get_nested("TCA_OPTIONS", "TCA_TBF_PARMS")
                rate64 = q.get_nested("TCA_OPTIONS", "TCA_TBF_RATE64")
                bytes_s = rate64 or (parms or {}).get("rate", 0)
                return int(bytes_s) * 8
        return 0

    def _ensure_ifb(self, ipr: Any, port: str) -> int:
        name = ifb_name(port)
        idx = self._index(ipr, name)
        if idx is None:
            try:
                ipr.link("add", ifname=name, kind="ifb")
            except Exception as e:
                if _code(e) != _EEXIST:
                    raise
            idx = self._index(ipr, name)
            if idx is None:
                raise DriverError(f"ifb {name} vanished right after creation")
        else:
            kind = ipr.get_links(idx)[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
            if kind != "ifb":
                raise DriverError(f"interface {name} exists but is a {kind or 'plain'} link, "
                                  "not an ifb")
        ipr.link("set", index=idx, ifalias=ALIAS + port, state="up")
        return idx

    @staticmethod
    def _redirects(ipr: Any, idx: int) -> bool:
        return any(f.get_attr("TCA_KIND") == "u32" and f.get_nested("TCA_OPTIONS", "TCA_U32_ACT")
                   for f in ipr.get_filters(idx, parent=INGRESS_PARENT))

    def _redirect(self, ipr: Any, idx: int, ifb: int) -> None:
        try:
            ipr.tc("add", "ingress", idx, INGRESS_PARENT)
        except Exception as e:
            if _code(e) != _EEXIST:
                raise
        if self._redirects(ipr, idx):
            return
        ipr.tc("add-filter", "u32", idx, parent=INGRESS_PARENT, protocol=ETH_P_ALL,
               keys=["0x0/0x0+0"], target=ROOT_HANDLE + 1,
               action={"kind": "mirred", "direction": "egress", "action": "redirect",
                       "ifindex": ifb})

    @staticmethod
    def _del_root(ipr: Any, idx: int) -> None:
        if not any(q.get_attr("TCA_KIND") == "tbf" and q["parent"] == TC_ROOT
                   for q in ipr.get_qdiscs(idx)):
            return
        try:
            ipr.tc("del", index=idx, handle=ROOT_HANDLE, parent=TC_ROOT)
        except Exception as e:
            if _code(e) not in (_ENOENT, _EINVAL):
                raise

    @staticmethod
    def _del_ingress(ipr: Any, idx: int) -> None:
        try:
            ipr.tc("del", index=idx, handle=INGRESS_PARENT, parent=TC_INGRESS)
        except Exception as e:
            if _code(e) not in (_ENOENT, _EINVAL):
                raise

    def _del_link(self, ipr: Any, name: str) -> None:
        idx = self._index(ipr, name)
        if idx is None:
            return
        try:
            ipr.link("del", index=idx)
        except Exception as e:
            if _code(e) != _ENODEV:
                raise


# --- LXC's network hook
def hook_command(rates: Rates, action: str) -> str:
    """The `lxc.net.N.script.up` (action "up") or `.down` value that sets or clears `rates` on
    the NIC's host port. liblxc runs it through sh with `NAME net ACTION veth LINK PORT` appended."""
    top = str(Path(__file__).resolve().parents[3])      # the dir holding the lxcloud package
    argv = ["env", f"PYTHONPATH={top}", sys.executable, "-m", "lxcloud.drivers.network.ratelimit",
            action, "--ingress", str(rates.ingress), "--egress", str(rates.egress), "--"]
    cmd = " ".join(shlex.quote(a) for a in argv)
    if any(c in cmd for c in "\n\r"):
        raise InvalidInput("newline in the rate limit hook's path")
    return cmd


def main(argv: Sequence[str]) -> int:
    """up|down --ingress N --egress N -- [NAME net up|down veth LINK] PORT"""
    if len(argv) < 7 or argv[0] not in ("up", "down") or argv[5] != "--":
        sys.stderr.write("usage: up|down --ingress N --egress N -- ... PORT\n")
        return 2
    port = argv[-1]
    try:
        rates = Rates(parse_rate(int(argv[2])), parse_rate(int(argv[4])))
        limiter = RateLimiter()
        if argv[0] == "up":
            limiter.apply(port, rates)
        else:
            limiter.remove(port)
    except (DriverError, InvalidInput, ValueError) as e:
        sys.stderr.write(f"lxcloud rate limit on {port}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1:]))
