"""Parsing and printing of sizes ("256MiB", "1G", "512M", bytes as int)."""

from __future__ import annotations

import re

from lxcloud.core.errors import InvalidInput

_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1000, "kib": 1024,
    "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1024**4, "tb": 1000**4, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: str | int, what: str = "size") -> int:
    """Bytes in `value`; InvalidInput naming `what` when it is not a size."""
    if isinstance(value, int):
        if value < 0:
            raise InvalidInput(f"{what} must not be negative")
        return value
    m = _SIZE_RE.match(str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise InvalidInput(f"{what}: {value!r} is not a size (try 256MiB, 1GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_size(n: int) -> str:
    for unit, mult in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    for unit, mult in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= mult:
            return f"{n / mult:.1f}{unit}"
    return f"{n}B"


# Bandwidth in bits per second, decimal as tc and network gear count it (1Mbit = 10**6 bit/s).
_RATE_UNITS = {"": 1, "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)(?:/s)?\s*$")
MAX_RATE = 100 * 10**9     # 100Gbit: beyond any interface here, and tc's 64-bit rate


def parse_rate(value: str | int | None, what: str = "rate") -> int:
    """Bits per second in `value` ("10Mbit", "512kbit", "1Gbit/s", "800bit/s", an int of
    bit/s); 0 or None: no limit. InvalidInput naming `what` when it is not a rate."""
    if value is None:
        return 0
    if isinstance(value, int):
        n = value
    else:
        m = _RATE_RE.match(str(value))
        if not m or m.group(2).lower() not in _RATE_UNITS:
            raise InvalidInput(f"{what}: {value!r} is not a rate (try 10Mbit, 512Kbit, 1Gbit)")
        n = int(float(m.group(1)) * _RATE_UNITS[m.group(2).lower()])
    if n < 0 or n > MAX_RATE:
        raise InvalidInput(f"{what} must be between 0 (no limit) and 100Gbit")
    if 0 < n < 8000:
        raise InvalidInput(f"{what}: {value!r} is below the smallest limit (8Kbit)")
    return n


def format_rate(n: int) -> str:
    """"10Mbit" for 10**7; "" for 0 (no limit)."""
    if n <= 0:
        return ""
    for unit, mult in (("Gbit", 10**9), ("Mbit", 10**6), ("Kbit", 10**3)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return f"{n}bit"
