"""Resource ids, shaped like EC2's: a prefix and 17 hex digits."""

from __future__ import annotations

import re
import secrets

PREFIXES = {
    "instance": "i", "image": "ami", "volume": "vol", "snapshot": "snap", "security_group": "sg",
    "address": "eipalloc", "key_pair": "key", "reservation": "r", "operation": "op", "network": "net",
    "node": "node", "project": "proj", "user": "user", "pool": "pool", "export": "exp",
    "address_pool": "apool", "association": "eipassoc", "port_forward": "pf",
    "security_group_rule": "sgr",
}
_ID_RE = re.compile(r"^([a-z]+)-([0-9a-f]{17})$")
NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}-{secrets.token_hex(9)[:17]}"


def is_id(value: str, kind: str | None = None) -> bool:
    m = _ID_RE.match(value)
    if not m:
        return False
    return kind is None or m.group(1) == PREFIXES[kind]


def valid_name(name: str) -> bool:
    """Instance names double as hostnames: a letter, then letters, digits and dashes (≤ 63)."""
    return bool(NAME_RE.match(name)) and not name.endswith("-") and not is_id(name)
