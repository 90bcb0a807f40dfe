"""The process's one libnftables context (Debian's python3-nftables, JSON API), behind a lock.

libnftables contexts are not thread-safe and cost a netlink socket and a cache each: every rule
writer (the NAT/forward firewall, the port guard) shares this one.
"""

from __future__ import annotations

import threading
from typing import Any

from lxcloud.core.errors import DriverError

Json = dict[str, Any]
MISSING = "No such file or directory"


class Nft:
    def __init__(self) -> None:
        self._nft: Any = None
        self._lock = threading.Lock()

    def _ctx(self) -> Any:
        if self._nft is None:
            try:
                import nftables  # Debian's python3-nftables, symlinked into the venv
            except ImportError as e:
                raise DriverError("python3-nftables is not available (apt install python3-nftables)"
                                  ) from e
            nft = nftables.Nftables()
            nft.set_json_output(True)
            nft.set_handle_output(True)
            self._nft = nft
        return self._nft

    def run(self, cmds: list[Json], what: str, *, missing_ok: bool = False) -> Json | None:
        """One atomic transaction of JSON commands; its JSON output ({} when none).
        DriverError naming `what` on failure; None instead when `missing_ok` and the table, chain
        or set does not exist."""
        with self._lock:
            rc, out, err = self._ctx().json_cmd({"nftables": cmds})
        if rc != 0:
            if missing_ok and MISSING in (err or ""):
                return None
            raise DriverError(f"nftables: {what} failed (rc {rc})", stderr=err or "")
        return out if isinstance(out, dict) else {}

    def validate(self, cmds: list[Json]) -> bool:
        """Check commands against libnftables' JSON schema (needs jsonschema). Raises if invalid."""
        with self._lock:
            return bool(self._ctx().json_validate({"nftables": cmds}))


NFT = Nft()
