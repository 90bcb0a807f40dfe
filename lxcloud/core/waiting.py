"""The one way the code waits for something only observable by asking again: a condition, a
deadline, a backoff, and a typed error naming what was awaited.

Where a real event exists (a threading.Event, a pipe, a socket), wait on it instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from lxcloud.core.errors import DriverError

T = TypeVar("T")


def wait_until(cond: Callable[[], T | None], timeout: float, what: str, *, first: float = 0.002,
               most: float = 0.1,
               error: Callable[[str], BaseException] = DriverError) -> T:
    """`cond()`'s first truthy value, checked at once and then with a doubling pause (from `first`
    to `most` seconds); `error` saying "`what` did not happen within `timeout`s" after the deadline.
    `cond` may raise to give up early."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()     # never set: its wait() is the pause between two checks
    delay = first
    while True:
        value = cond()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise error(f"{what} did not happen within {timeout:g}s")
        pause.wait(min(delay, left))
        delay = min(delay * 2, most)
