"""Stand-in instances for network driver tests: network namespaces whose veth ports sit on a bridge."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=30)


@contextmanager
def bridged_namespaces(bridge: str, net: str, ns: Sequence[str], ports: Sequence[str]
                       ) -> Iterator[None]:
    """Bridge `bridge` with address `net`.1/24; namespace ns[i] has eth0 = `net`.(10+i)/24, the
    peer of host port ports[i] on the bridge. All removed on exit, even on failure."""
    try:
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{net}.1/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        for i, (name, port) in enumerate(zip(ns, ports, strict=True)):
            sh("ip", "netns", "add", name)
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name)
            sh("ip", "link", "set", port, "master", bridge, "up")
            sh("ip", "netns", "exec", name, "ip", "addr", "add", f"{net}.{10 + i}/24", "dev", "eth0")
            sh("ip", "netns", "exec", name, "ip", "link", "set", "eth0", "up")
            sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield
    finally:
        for name, port in zip(ns, ports, strict=True):
            sh("ip", "link", "del", port, check=False)
            sh("ip", "netns", "del", name, check=False)
        sh("ip", "link", "del", bridge, check=False)
