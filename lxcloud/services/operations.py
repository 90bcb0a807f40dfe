"""Operations: every long action is a row (id, kind, target, status, progress, error) and a job.

One operation at a time per target: the lock is a row of the `locks` table, taken in the same
transaction that records the operation (and whatever the action changes), released in the one
that records its end. Operations and locks name the controller that runs them, so that a
controller starting up fails only the operations it was running when it stopped, never another
controller's. Jobs run on a thread pool; waiters are woken the moment an operation finishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lxcloud.core.caller import SYSTEM, Caller
from lxcloud.core.errors import Busy, LxcloudError, NotFound
from lxcloud.core.ids import new_id
from lxcloud.core.models import Operation
from lxcloud.core.waiting import wait_until
from lxcloud.db.engine import Database
from lxcloud.db.tables import LockRow, OperationRow, table, utcnow

log = logging.getLogger(__name__)

Progress = Callable[[int, str], None]
Job = Callable[[Progress], dict[str, Any] | None]
# what a job's success changes besides the operation's row, written in the same transaction
Commit = Callable[[Session], None]
# progress is kept in memory and written to the row at most this often (seconds)
PROGRESS_WRITE_INTERVAL = 0.5
ENDED_KEPT = 1000

# The statements every operation runs, built once and bound with parameters (a statement built
# per call costs several times its execution)
_OPS, _LOCKS = table(OperationRow), table(LockRow)
_HOLDER = select(_LOCKS.c.operation_id).where(_LOCKS.c.target == bindparam("target"))
_TAKE_LOCK = _LOCKS.insert()
_RECORD = _OPS.insert()
_BY_ID = select(_OPS).where(_OPS.c.id == bindparam("op_id"))
_SET = _OPS.update().where(_OPS.c.id == bindparam("op_id"))
_UNLOCK = _LOCKS.delete().where(_LOCKS.c.target == bindparam("target"),
                                _LOCKS.c.operation_id == bindparam("op_id"))


def _to_model(r: Any) -> Operation:
    return Operation(id=r.id, kind=r.kind, target=r.target, status=r.status, progress=r.progress,
                     message=r.message, error=r.error, error_code=r.error_code, created=r.created,
                     updated=r.updated, result=dict(r.result or {}), project_id=r.project_id,
                     owner=r.owner)


class Operations:
    def __init__(self, db: Database, owner: str = "local", workers: int = 8) -> None:
        self.db = db
        self.owner = owner
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="op")
        self._events: dict[str, threading.Event] = {}
        # live progress of this controller's running operations: id -> (percent, message)
        self._progress: dict[str, tuple[int, str]] = {}
        # this controller's operations as they ended, the latest first out (a waiter registered
        # after the end finds it here, without a read)
        self._ended: OrderedDict[str, Operation] = OrderedDict()
        self._mu = threading.Lock()
        self.on_finish: list[Callable[[Operation], None]] = []
        self.on_start: list[Callable[[Operation], None]] = []

    # --- records
    def begin(self, s: Session, kind: str, target: str, *, project_id: str | None = None,
              new: bool = False) -> Operation:
        """In the caller's transaction: take `target`'s lock (Busy naming the operation that holds
        it) and record a pending operation of this controller. Both vanish if the transaction
        rolls back; `submit` runs it once the transaction has committed. `new`: the target was
        made in this transaction (nothing can hold it: its lock is not looked up first)."""
        conn = s.connection()
        holder = None if new else conn.execute(_HOLDER, {"target": target}).scalar()
        if holder is not None:
            raise Busy(f"{target} is busy running operation {holder}", operation=holder,
                       target=target)
        now = utcnow()
        row = dict(id=new_id("operation"), kind=kind, target=target, status="pending", progress=0,
                   message="queued", error=None, error_code=None, result={}, owner=self.owner,
                   project_id=project_id, created=now, updated=now)
        try:   # Core inserts: two known rows, no unit of work
            conn.execute(_TAKE_LOCK, {"target": target, "operation_id": row["id"],
                                      "owner": self.owner, "created": now})
        except IntegrityError:   # another transaction took the lock between our read and write
            raise Busy(f"{target} is busy running another operation", target=target) from None
        conn.execute(_RECORD, row)
        return _to_model(SimpleNamespace(**row))

    def create(self, kind: str, target: str, *, project_id: str | None = None) -> Operation:
        """`begin` in a transaction of its own."""
        with self.db.session() as s:
            return self.begin(s, kind, target, project_id=project_id)

    def get(self, op_id: str, *, caller: Caller = SYSTEM) -> Operation:
        """By id; another project's operation is "not found" (admins see every one)."""
        with self.db.reader() as s:
            row = s.connection().execute(_BY_ID, {"op_id": op_id}).first()
        if row is None or not self._sees(caller, row.project_id):
            raise NotFound(f"operation {op_id} not found", resource="operation")
        return self._live(_to_model(row))

    def list(self, limit: int = 100, *, caller: Caller = SYSTEM) -> list[Operation]:
        with self.db.reader() as s:
            q = select(OperationRow).order_by(OperationRow.created.desc()).limit(limit)
            if not (caller is SYSTEM or caller.is_admin):
                q = q.where(OperationRow.project_id == caller.project_id)
            return [self._live(_to_model(r)) for r in s.scalars(q)]

    @staticmethod
    def _sees(caller: Caller, project_id: str | None) -> bool:
        return caller is SYSTEM or caller.is_admin or project_id == caller.project_id

    def _live(self, op: Operation) -> Operation:
        """The operation with this controller's freshest progress (the row lags behind it)."""
        if not op.done:
            with self._mu:
                live = self._progress.get(op.id)
            if live is not None:
                op.status = "running"
                op.progress, op.message = live
        return op

    def wait(self, op_id: str, timeout: float, *, caller: Caller = SYSTEM) -> Operation:
        """The operation once done, or as it is after `timeout` seconds."""
        op = self.get(op_id, caller=caller)
        if op.done or timeout <= 0:
            return op
        with self._mu:
            ev = self._events.setdefault(op_id, threading.Event())
        op = self.get(op_id, caller=caller)   # it may have finished before the event existed
        if not op.done:
            if op.owner == self.owner:
                ev.wait(timeout)
            else:      # another controller's: only its row tells
                try:
                    wait_until(lambda: self.get(op_id).done, timeout, f"operation {op_id}",
                               first=0.05, most=1.0)
                except LxcloudError:
                    pass
            op = self.get(op_id, caller=caller)
        return op

    def ended(self, op_id: str, *, caller: Caller = SYSTEM) -> Operation | None:
        """The operation as it ended, if this controller ran it lately (memory only); None when
        it has not ended, is not known here, or is another project's."""
        with self._mu:
            op = self._ended.get(op_id)
        return op if op is not None and self._sees(caller, op.project_id) else None

    def counts(self) -> dict[str, int]:
        """How many operations there are by status."""
        with self.db.reader() as s:
            return dict(s.execute(select(OperationRow.status, func.count())   # type: ignore[arg-type]
                                  .group_by(OperationRow.status)).all())

    # --- locks
    def busy(self, target: str) -> str | None:
        """The operation holding `target`'s lock, None when it is free."""
        with self.db.reader() as s:
            row = s.get(LockRow, target)
            return row.operation_id if row is not None else None

    def wait_free(self, target: str, timeout: float) -> None:
        """Returns once no operation holds `target` (Busy after `timeout`)."""
        holder = self.busy(target)
        if holder is None:
            return
        deadline = time.monotonic() + timeout
        while holder is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Busy(f"{target} is busy running operation {holder}", operation=holder,
                           target=target)
            self.wait(holder, left)
            holder = self.busy(target)

    # --- running
    def submit(self, op: Operation, job: Job, *,
               on_error: Callable[[LxcloudError], None] | None = None,
               commit: Commit | None = None) -> None:
        """Run `job(progress)` in the pool (the transaction that began `op` has committed); the
        row follows it and the target's lock is released when it ends. `commit(session)`, when
        given, writes what the job's success changes in the transaction that records it (so
        that a record and its operation never disagree); if it raises, the job has failed."""
        self.pool.submit(self._run, op, job, on_error, commit)

    def _update(self, s: Session, op_id: str, **values: Any) -> None:
        values.setdefault("updated", utcnow())
        # Core, not an ORM update: nothing loaded to keep in sync
        s.connection().execute(_SET, {"op_id": op_id, **values})

    def _run(self, op: Operation, job: Job, on_error: Callable[[LxcloudError], None] | None,
             commit: Commit | None) -> None:
        started = time.perf_counter()
        last_write = [started]
        with self._mu:
            self._progress[op.id] = (0, "running")
        for cb in self.on_start:
            try:
                cb(op)
            except Exception:
                log.exception("on_start callback failed")

        def progress(pct: int, message: str) -> None:
            value = (max(0, min(100, pct)), message[:500])
            with self._mu:
                self._progress[op.id] = value
            now = time.perf_counter()
            if now - last_write[0] < PROGRESS_WRITE_INTERVAL:
                return    # a short operation never pays a write per step
            last_write[0] = now
            try:
                with self.db.session() as s:
                    self._update(s, op.id, status="running", progress=value[0], message=value[1])
            except Exception:
                log.exception("progress update of %s failed", op.id)

        done = op
        try:
            result = job(progress) or {}
            now = utcnow()
            with self.db.session() as s:
                if commit is not None:
                    commit(s)
                self._update(s, op.id, status="success", progress=100, message="done",
                             result=result, updated=now)
                self._unlock(s, op)
            done = replace(op, status="success", progress=100, message="done", result=result,
                           updated=now)
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
            now = utcnow()
            try:
                with self.db.session() as s:
                    self._update(s, op.id, status="failure", message="failed", error=str(err),
                                 error_code=err.code, updated=now)
                    self._unlock(s, op)
            except Exception:
                log.exception("could not record failure of %s", op.id)
            done = replace(op, status="failure", message="failed", error=str(err),
                           error_code=err.code, updated=now)
        finally:
            with self._mu:
                self._progress.pop(op.id, None)
                ev = self._events.pop(op.id, None)
                self._ended[op.id] = done
                while len(self._ended) > ENDED_KEPT:
                    self._ended.popitem(last=False)
            if ev is not None:
                ev.set()
            for cb in self.on_finish:
                try:
                    cb(done)
                except Exception:
                    log.exception("on_finish callback failed")

    @staticmethod
    def _unlock(s: Session, op: Operation) -> None:
        s.connection().execute(_UNLOCK, {"target": op.target, "op_id": op.id})

    def fail_interrupted(self) -> int:
        """At start-up: this controller's operations left unfinished by its previous run are
        marked failed and their locks released. Other controllers' are left alone (rows from
        before operations had owners count as this controller's)."""
        with self.db.session() as s:
            mine = or_(OperationRow.owner == self.owner, OperationRow.owner.is_(None))
            res = s.execute(update(OperationRow)
                            .where(OperationRow.status.in_(("pending", "running")), mine)
                            .values(status="failure", error="interrupted by a controller restart",
                                    error_code="interrupted", updated=utcnow()))
            s.execute(delete(LockRow).where(LockRow.owner == self.owner))
            return int(res.rowcount or 0)  # type: ignore[attr-defined]

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)
