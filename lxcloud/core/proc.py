"""The one subprocess helper: runs a command and raises DriverError with its stderr."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from lxcloud.core.errors import DriverError


def run(argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = 60,
        check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run argv (never through a shell). check=True: a non-zero exit raises DriverError."""
    try:
        cp = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise DriverError(f"{argv[0]} is not installed", command=list(argv)) from None
    except subprocess.TimeoutExpired as e:
        raise DriverError(f"{argv[0]} timed out after {timeout}s", command=list(argv),
                          stderr=(e.stderr or b"").decode(errors="replace")) from None
    if check and cp.returncode != 0:
        raise DriverError(f"{' '.join(argv[:3])} failed (exit {cp.returncode})", command=list(argv),
                          stderr=cp.stderr.decode(errors="replace"))
    return cp
