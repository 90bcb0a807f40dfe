"""Operations: every long action is a row (id, kind, target, status, progress, error) and a job.

Jobs run on a thread pool; waiters are woken the moment an operation finishes (no polling).
A per-target lock keeps two operations off one resource at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select, update

from lxcloud.core.errors import Busy, LxcloudError, NotFound
from lxcloud.core.ids import new_id
from lxcloud.core.models import Operation
from lxcloud.db.engine import Database
from lxcloud.db.tables import OperationRow, utcnow

log = logging.getLogger(__name__)

Progress = Callable[[int, str], None]
Job = Callable[[Progress], dict[str, Any] | None]


def _to_model(r: OperationRow) -> Operation:
    return Operation(id=r.id, kind=r.kind, target=r.target, status=r.status, progress=r.progress,
                     message=r.message, error=r.error, error_code=r.error_code, created=r.created,
                     updated=r.updated, result=dict(r.result or {}))


class Operations:
    def __init__(self, db: Database, workers: int = 8) -> None:
        self.db = db
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="op")
        self._events: dict[str, threading.Event] = {}
        self._locks: dict[str, str] = {}          # target -> operation id holding it
        self._mu = threading.Lock()
        self.on_finish: list[Callable[[Operation], None]] = []

    # --- records
    def create(self, kind: str, target: str, *, session: Any = None,
               op_id: str | None = None) -> Operation:
        """A pending operation row. Pass `session` to create it in the caller's transaction."""
        row = OperationRow(id=op_id or new_id("operation"), kind=kind, target=target, status="pending",
                           progress=0, message="queued", result={})
        if session is not None:
            session.add(row)
            session.flush()
            return _to_model(row)
        with self.db.session() as s:
            s.add(row)
            s.flush()
            return _to_model(row)

    def get(self, op_id: str) -> Operation:
        with self.db.reader() as s:
            row = s.get(OperationRow, op_id)
            if row is None:
                raise NotFound(f"operation {op_id} not found", resource="operation")
            return _to_model(row)

    def list(self, limit: int = 100) -> list[Operation]:
        with self.db.reader() as s:
            rows = s.scalars(select(OperationRow).order_by(OperationRow.created.desc()).limit(limit))
            return [_to_model(r) for r in rows]

    def wait(self, op_id: str, timeout: float) -> Operation:
        """The operation once done, or as it is after `timeout` seconds."""
        op = self.get(op_id)
        if op.done or timeout <= 0:
            return op
        with self._mu:
            ev = self._events.get(op_id)
        if ev is not None:
            ev.wait(timeout)
        return self.get(op_id)

    def _update(self, op_id: str, **values: Any) -> None:
        with self.db.session() as s:
            s.execute(update(OperationRow).where(OperationRow.id == op_id).values(updated=utcnow(),
                                                                                  **values))

    # --- locks
    def lock(self, target: str, op_id: str) -> None:
        with self._mu:
            holder = self._locks.get(target)
            if holder is not None and holder != op_id:
                raise Busy(f"{target} is busy running operation {holder}", operation=holder)
            self._locks[target] = op_id

    def unlock(self, target: str, op_id: str) -> None:
        with self._mu:
            if self._locks.get(target) == op_id:
                del self._locks[target]

    def busy(self, target: str) -> str | None:
        with self._mu:
            return self._locks.get(target)

    # --- running
    def submit(self, op: Operation, job: Job, *, on_error: Callable[[LxcloudError], None] | None = None,
               lock: bool = True) -> None:
        """Run `job(progress)` in the pool; the operation's row follows it. The target lock
        (taken beforehand with `reserve`) is released when the job ends."""
        with self._mu:
            self._events.setdefault(op.id, threading.Event())
        self.pool.submit(self._run, op, job, on_error, lock)

    def reserve(self, target: str) -> str:
        """Take `target`'s lock for a new operation id (Busy if held); pass the id to create()."""
        op_id = new_id("operation")
        self.lock(target, op_id)
        with self._mu:
            self._events[op_id] = threading.Event()
        return op_id

    def reserve_after(self, target: str, timeout: float) -> str:
        """Like reserve, but first waits (up to `timeout`) for an operation holding the target."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.reserve(target)
            except Busy:
                holder = self.busy(target)
                left = deadline - time.monotonic()
                if holder is None:
                    continue
                if left <= 0:
                    raise
                with self._mu:
                    ev = self._events.get(holder)
                if ev is not None:
                    ev.wait(min(left, 1.0))

    def release(self, target: str, op_id: str) -> None:
        """Give back a reservation whose operation was never submitted."""
        self.unlock(target, op_id)
        with self._mu:
            ev = self._events.pop(op_id, None)
        if ev is not None:
            ev.set()

    def _run(self, op: Operation, job: Job, on_error: Callable[[LxcloudError], None] | None,
             lock: bool) -> None:
        def progress(pct: int, message: str) -> None:
            try:
                self._update(op.id, progress=max(0, min(100, pct)), message=message[:500])
            except Exception:
                log.exception("progress update of %s failed", op.id)

        try:
            self._update(op.id, status="running", message="running")
            result = job(progress) or {}
            self._update(op.id, status="success", progress=100, message="done", result=result)
        except Exception as e:  # every failure is recorded on the operation, none escapes
            err = e if isinstance(e, LxcloudError) else LxcloudError(f"internal error: {e}")
            if not isinstance(e, LxcloudError):
                log.exception("operation %s (%s %s) failed", op.id, op.kind, op.target)
            else:
                log.warning("operation %s (%s %s) failed: %s", op.id, op.kind, op.target, e)
            if on_error is not None:
                try:
                    on_error(err)
                except Exception:
                    log.exception("error handler of %s failed", op.id)
            try:
                self._update(op.id, status="failure", message="failed", error=str(err),
                             error_code=err.code)
            except Exception:
                log.exception("could not record failure of %s", op.id)
        finally:
            if lock:
                self.unlock(op.target, op.id)
            with self._mu:
                ev = self._events.pop(op.id, None)
            if ev is not None:
                ev.set()
            for cb in self.on_finish:
                try:
                    cb(self.get(op.id))
                except Exception:
                    log.exception("on_finish callback failed")

    def fail_interrupted(self) -> int:
        """At start-up: operations a previous process left unfinished are marked failed."""
        with self.db.session() as s:
            res = s.execute(update(OperationRow)
                            .where(OperationRow.status.in_(("pending", "running")))
                            .values(status="failure", error="interrupted by a controller restart",
                                    error_code="interrupted", updated=utcnow()))
            return int(res.rowcount or 0)  # type: ignore[attr-defined]

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)
