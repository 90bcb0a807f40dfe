"""One lazily opened pyroute2 netlink socket, for the drivers that keep one (bridge, public NAT)."""

from __future__ import annotations

import threading
from typing import Any


def iproute() -> Any:
    """A new IPRoute socket (imported late: importing pyroute2 costs ~100 ms)."""
    from pyroute2 import IPRoute
    return IPRoute()


class NetlinkSocket:
    """Holds one netlink socket, opened on first use, under a reentrant lock the holder's calls
    take too (pyroute2's sockets are not for concurrent use)."""

    def __init__(self) -> None:
        self._ipr: Any = None
        self._lock = threading.RLock()

    def _nl(self) -> Any:
        if self._ipr is None:
            self._ipr = iproute()
        return self._ipr

    def close(self) -> None:
        """Close the netlink socket (reopened on next use)."""
        with self._lock:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None
