"""The outside world for tests of public addresses: a veth pair standing in for the host's public
interface, its far end in a network namespace that has no route to any instance network (so a
reply only comes back through NAT), and a tiny TCP/UDP server answering each connection with
"<who> <peer address>", so a test sees both whom it reached and as whom it came."""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from lxcloud.core.ipam import NetworkPlan
from tests.subnets import free_subnet

SERVER = r"""
import socket, sys, threading
who, port = sys.argv[1], int(sys.argv[2])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port)); t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
def udp():
    while True:
        data, peer = u.recvfrom(100)
        u.sendto(f"{who} {peer[0]}".encode(), peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, peer = t.accept()
    c.sendall(f"{who} {peer[0]}".encode()); c.close()
"""

CLIENT = r"""
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    if proto == "tcp":
        c = socket.create_connection((host, port), timeout=1.5)
        print(c.recv(100).decode())
    else:
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(1.5)
        c.sendto(b"x", (host, port)); print(c.recv(100).decode())
except OSError as e:
    print(f"error {e}")
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def addresses(ifname: str) -> list[str]:
    """The IPv4 addresses on a host interface, as "A/len", sorted."""
    out = json.loads(sh("ip", "-j", "addr", "show", "dev", ifname).stdout)[0]
    return sorted(f"{a['local']}/{a['prefixlen']}" for a in out["addr_info"]
                  if a["family"] == "inet")


@dataclass
class Outside:
    ns: str                 # the outside world's namespace
    ip: str                 # its address
    interface: str          # the host's "public interface"
    host_ip: str            # the host's own address on it
    prefix: int
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def public(self, n: int) -> str:
        """The n-th address of the range a pool may use (.100 + n of the segment)."""
        net = ipaddress.IPv4Network(f"{self.host_ip}/{self.prefix}", strict=False)
        return str(net.network_address + 100 + n)

    @property
    def range(self) -> str:
        return f"{self.public(0)}-{self.public(10)}"

    def serve(self, ns: str | None, who: str, port: int) -> None:
        """The answering server in `ns` (None: the host), listening once this returns."""
        pre = ["ip", "netns", "exec", ns] if ns else []
        p = subprocess.Popen([*pre, sys.executable, "-c", SERVER, who, str(port)],
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    def ask(self, host: str, port: int, proto: str = "tcp", ns: str | None = "") -> str:
        """What host:port answers, asked from the outside ("") or from namespace `ns` (None:
        the host); "error …" when nothing answers."""
        ns = self.ns if ns == "" else ns
        pre = ["ip", "netns", "exec", ns] if ns else []
        return sh(*pre, sys.executable, "-c", CLIENT, host, str(port), proto).stdout.strip()

    def ping(self, ip: str, ns: str | None = "") -> bool:
        ns = self.ns if ns == "" else ns
        pre = ["ip", "netns", "exec", ns] if ns else []
        return sh(*pre, "busybox", "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


@contextmanager
def outside_world() -> Iterator[Outside]:
    """An Outside (with its server "outside" on port 7001), removed afterwards whatever happens."""
    tag = secrets.token_hex(3)
    plan = NetworkPlan.from_cidr(free_subnet())
    net = ipaddress.IPv4Network(plan.cidr)
    world = Outside(ns=f"lxtpo{tag}", ip=str(net.network_address + 254),
                    interface=f"lxtpu{tag}", host_ip=plan.gateway, prefix=plan.prefix)
    try:
        sh("ip", "netns", "add", world.ns)
        sh("ip", "link", "add", world.interface, "type", "veth", "peer", "name", "eth0",
           "netns", world.ns)
        sh("ip", "addr", "add", f"{world.host_ip}/{plan.prefix}", "dev", world.interface)
        sh("ip", "link", "set", world.interface, "up")
        ox = ["ip", "netns", "exec", world.ns]
        sh(*ox, "ip", "link", "set", "lo", "up")
        sh(*ox, "ip", "addr", "add", f"{world.ip}/{plan.prefix}", "dev", "eth0")
        sh(*ox, "ip", "link", "set", "eth0", "up")
        world.serve(world.ns, "outside", 7001)
        yield world
    finally:
        for p in world.procs:
            p.kill()
            p.wait()
        sh("ip", "netns", "del", world.ns, check=False)
        sh("ip", "link", "del", world.interface, check=False)
