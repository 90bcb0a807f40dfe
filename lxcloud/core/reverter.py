"""An undo stack for multi-step work: on failure every step already done is undone, in reverse."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


class Reverter:
    """with Reverter() as r: do(); r.add(undo) ... r.success()  — undo runs unless success()."""

    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[[], object]]] = []

    def add(self, undo: Callable[[], object], what: str = "") -> None:
        self._undo.append((what, undo))

    def success(self) -> None:
        self._undo.clear()

    def revert(self) -> None:
        while self._undo:
            what, fn = self._undo.pop()
            try:
                fn()
            except Exception:  # an undo must not hide the original failure
                log.exception("undo step %r failed", what)

    def __enter__(self) -> Reverter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if et is not None:
            self.revert()
