"""The one way tests wait: on a condition, with a deadline, failing with what was awaited.

Where a real event exists, tests block on it instead (a pre-bound listening socket, `lxcloud up`'s
"ready" line on a pipe, `?wait=` on an operation, `systemctl is-system-running --wait`, select() on
a pty). This helper is for conditions only observable by asking again (an address answering, a
line in a console log): it re-checks with a backoff and never assumes that time alone made
anything true."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float, what: str) -> T:
    """`cond()`'s first truthy value; AssertionError naming `what` once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()     # never set: its wait() is the backoff between two checks
    delay = 0.005
    while True:
        value = cond()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        pause.wait(min(delay, left))
        delay = min(delay * 2, 0.25)
