"""The one way tests wait: on a condition, with a deadline, failing with what was awaited.

Where a real event exists, tests block on it instead (a pre-bound listening socket, `lxcloud up`'s
"ready" line on a pipe, `?wait=` on an operation, `systemctl is-system-running --wait`, select() on
a pty). This helper is for conditions only observable by asking again (an address answering, a
line in a console log): it re-checks with a backoff and never assumes that time alone made
anything true."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from lxcloud.core.waiting import wait_until

T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float, what: str) -> T:
    """`cond()`'s first truthy value; AssertionError naming `what` once `timeout` has passed
    (the code's own wait_until, failing as a test does)."""
    return wait_until(cond, timeout, what, first=0.005, most=0.25, error=AssertionError)
