"""Events: what happened in the cloud — lifecycle changes, operations, OOM kills, limits hit,
the reconciler's corrections — as one ordered, bounded log, readable and followable per project.

`publish` never slows or fails its caller: an event gets its id (monotonic, the stream's cursor)
and goes to the subscribers at once; a writer thread stores the queued ones in batches, and prunes
the table to the newest `keep` rows. Readers of the table (`list`) first wait for what is queued,
so a list right after a publish sees it.

Instance lifecycle events come from one place: the database sessions. Every committed change of an
instance row's `state` (made by any service, through the ORM) is an `instance.state` event, a new
row `instance.created`, a change to terminated also `instance.deleted`. Writes that bypass the ORM
publish their own (the reconciler's halted-from-inside update).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, event, func, insert, inspect, or_, select
from sqlalchemy.orm import Session

from lxcloud.core.caller import SYSTEM, Caller
from lxcloud.core.errors import Forbidden, InvalidInput
from lxcloud.core.lifecycle import State
from lxcloud.core.models import Operation
from lxcloud.db.engine import Database
from lxcloud.db.tables import EventRow, InstanceRow, utcnow

log = logging.getLogger(__name__)

TYPES = ("instance.created", "instance.state", "instance.deleted", "operation.started",
         "operation.finished", "instance.oom", "instance.limit", "reconciler.corrected")
MAX_LIST = 1000
FLUSH_INTERVAL = 0.2          # seconds between the writer's batches
PRUNE_EVERY = 1000            # events written between two prunes
NAMES_KEPT = 10_000           # instance names remembered for operations' events


@dataclass(frozen=True)
class Event:
    id: int
    time: datetime
    type: str
    project_id: str | None = None
    instance_id: str | None = None
    instance_name: str | None = None
    operation_id: str | None = None
    node: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time.isoformat().replace("+00:00", "Z"),
                "type": self.type, "project": self.project_id, "instance": self.instance_id,
                "instance_name": self.instance_name, "operation": self.operation_id,
                "node": self.node, "message": self.message, "data": self.data}

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "type": self.type, "project_id": self.project_id,
                "instance_id": self.instance_id, "instance_name": self.instance_name,
                "operation_id": self.operation_id, "node": self.node, "message": self.message,
                "data": self.data}


@dataclass(frozen=True)
class EventFilter:
    """Who asks (their project only, unless admin) and what they want."""

    caller: Caller = SYSTEM
    project: str | None = None      # a project id (admins)
    instance: str | None = None     # an instance id
    type: str | None = None         # a type or a prefix ("instance.")

    def __post_init__(self) -> None:
        if self.type is not None and not any(t.startswith(self.type) for t in TYPES):
            raise InvalidInput(f"unknown event type {self.type!r}: one of {', '.join(TYPES)} "
                               "or a prefix of them")

    def matches(self, e: Event) -> bool:
        c = self.caller
        if not (c is SYSTEM or c.is_admin) and e.project_id != c.project_id:
            return False
        return ((self.project is None or e.project_id == self.project)
                and (self.instance is None or e.instance_id == self.instance)
                and (self.type is None or e.type.startswith(self.type)))

    def where(self, q: Any) -> Any:
        c = self.caller
        if not (c is SYSTEM or c.is_admin):
            q = q.where(EventRow.project_id == c.project_id)
        if self.project is not None:
            q = q.where(EventRow.project_id == self.project)
        if self.instance is not None:
            q = q.where(EventRow.instance_id == self.instance)
        if self.type is not None:
            q = q.where(or_(EventRow.type == self.type, EventRow.type.startswith(self.type)))
        return q


_NOTED = "lxcloud_events"


def note(s: Session, type_: str, iid: str, name: str | None, project_id: str | None,
         data: dict[str, Any]) -> None:
    """An instance event published when `s` commits (and forgotten if it rolls back): for the
    writes the sessions' hook cannot see (Core statements)."""
    s.info.setdefault(_NOTED, []).append((type_, iid, name, project_id, data))


def note_state(s: Session, iid: str, name: str | None, project_id: str | None, old: str,
               new: str, reason: str = "") -> None:
    if old != new:
        note(s, "instance.state", iid, name, project_id, {"from": old, "to": new,
                                                          "reason": reason})
        if new == State.TERMINATED:
            note(s, "instance.deleted", iid, name, project_id, {})


class Subscription:
    """Events as they are published, filtered. A subscriber too slow to keep up loses none: when
    its queue overflows, `lost` is set and it re-reads the table from its last id."""

    def __init__(self, bus: Events, flt: EventFilter, size: int = 1000) -> None:
        self.bus = bus
        self.filter = flt
        self.q: queue.Queue[Event] = queue.Queue(size)
        self.lost = False

    def offer(self, e: Event) -> None:
        if self.filter.matches(e):
            try:
                self.q.put_nowait(e)
            except queue.Full:
                self.lost = True

    def get(self, timeout: float) -> Event | None:
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.bus.unsubscribe(self)


class Events:
    def __init__(self, db: Database, node: str | None = None, keep: int = 100_000) -> None:
        self.db = db
        self.node = node
        self.keep = keep
        self._mu = threading.Lock()
        self._write_mu = threading.Lock()    # one batch stored at a time, in id order
        self._next: int | None = None
        self._pending: list[Event] = []
        self._since_prune = 0
        self._subs: list[Subscription] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        # instance id -> name, from the instance events published (an operation's event names
        # its instance; only ids it has not seen are looked up), bounded
        self._names: OrderedDict[str, str] = OrderedDict()
        self._watch(db)

    # set by the Cloud: a reference (name or id) -> id, seen as the caller (NotFound otherwise)
    instance_of: Any = None
    project_of: Any = None

    def filter(self, caller: Caller, *, project: str | None = None, instance: str | None = None,
               type: str | None = None) -> EventFilter:
        """What `caller` may ask for: its own project's events (admins: any project's)."""
        pid = None
        if project:
            if not (caller is SYSTEM or caller.is_admin) and project not in (caller.project,
                                                                              caller.project_id):
                raise Forbidden("only an admin reads another project's events")
            pid = self.project_of(project) if self.project_of else project
        iid = self.instance_of(instance, caller) if instance and self.instance_of else instance
        return EventFilter(caller=caller, project=pid, instance=iid, type=type or None)

    # --- publishing
    def publish(self, type: str, *, project_id: str | None, instance_id: str | None = None,
                instance_name: str | None = None, operation_id: str | None = None,
                message: str = "", data: dict[str, Any] | None = None,
                node: str | None = None) -> Event | None:
        try:
            with self._mu:
                if self._next is None:
                    self._next = self._last_id() + 1
                e = Event(id=self._next, time=utcnow(), type=type, project_id=project_id,
                          instance_id=instance_id, instance_name=instance_name,
                          operation_id=operation_id, node=node or self.node, message=message,
                          data=dict(data or {}))
                self._next += 1
                self._pending.append(e)
                if instance_id and instance_name:
                    self._remember(instance_id, instance_name)
                subs = list(self._subs)
            self._ensure_writer()
            self._wake.set()
            for s in subs:
                s.offer(e)
            return e
        except Exception:
            log.exception("publishing a %s event failed", type)
            return None

    def _last_id(self) -> int:
        with self.db.reader() as s:
            return int(s.scalar(select(func.max(EventRow.id))) or 0)

    # --- reading
    def list(self, flt: EventFilter, *, since: int | None = None, limit: int = 100,
             newest: bool = False) -> list[Event]:
        """Oldest first; `since`: only events after that id; `newest`: the last `limit` ones."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST}")
        self.flush()
        with self.db.reader() as s:
            q = flt.where(select(EventRow))
            if since is not None:
                q = q.where(EventRow.id > since)
            q = q.order_by(EventRow.id.desc() if newest else EventRow.id).limit(limit)
            rows = [_event(r) for r in s.scalars(q)]
        return rows[::-1] if newest else rows

    def subscribe(self, flt: EventFilter) -> Subscription:
        sub = Subscription(self, flt)
        with self._mu:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._mu:
            if sub in self._subs:
                self._subs.remove(sub)

    # --- storing
    def _ensure_writer(self) -> None:
        if self._writer is None and not self._stop.is_set():
            with self._mu:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_loop, name="events",
                                                    daemon=True)
                    self._writer.start()

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Stores what is queued (callers wait for a write another thread is doing)."""
        with self._write_mu:
            self._flush()

    def _flush(self) -> None:
        with self._mu:
            batch, self._pending = self._pending, []
        if batch:
            try:
                with self.db.session() as s:
                    s.execute(insert(EventRow), [e.row() for e in batch])
                    self._since_prune += len(batch)
                    if self._since_prune >= PRUNE_EVERY:
                        self._since_prune = 0
                        s.execute(delete(EventRow).where(EventRow.id <= batch[-1].id - self.keep))
            except Exception:
                log.exception("storing %d event(s) failed", len(batch))

    def prune(self) -> int:
        """Keeps the newest `keep` events; returns how many went."""
        self.flush()
        with self.db.session() as s:
            top = s.scalar(select(func.max(EventRow.id))) or 0
            res = s.execute(delete(EventRow).where(EventRow.id <= top - self.keep))
            return int(res.rowcount or 0)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(5)
        self.flush()

    # --- what other services tell
    def operation_started(self, op: Operation) -> None:
        self._operation("operation.started", op, "started")

    def operation_finished(self, op: Operation) -> None:
        text = "succeeded" if op.status == "success" else "failed"
        self._operation("operation.finished", op, text + (f": {op.error}" if op.error else ""))

    def _operation(self, type_: str, op: Operation, outcome: str) -> None:
        iid = op.target if op.target.startswith("i-") else None
        name = self._name_of(iid) if iid else None
        self.publish(type_, project_id=op.project_id, operation_id=op.id,
                     message=f"{op.kind} {name or op.target} {outcome}", instance_id=iid,
                     instance_name=name, data={"kind": op.kind, "target": op.target,
                                               "status": op.status, "error": op.error})

    def _remember(self, instance_id: str, name: str) -> None:
        """Under self._mu."""
        self._names[instance_id] = name
        self._names.move_to_end(instance_id)
        while len(self._names) > NAMES_KEPT:
            self._names.popitem(last=False)

    def _name_of(self, instance_id: str) -> str | None:
        with self._mu:
            name = self._names.get(instance_id)
        if name is not None:
            return name
        try:
            with self.db.reader() as s:
                name = s.scalar(select(InstanceRow.name).where(InstanceRow.id == instance_id))
        except Exception:
            log.debug("the name of %s", instance_id, exc_info=True)
            return None
        if name is not None:
            with self._mu:
                self._remember(instance_id, name)
        return name

    def corrected(self, r: InstanceRow, old: str, new: str, reason: str, *,
                  bypassed_orm: bool = False) -> None:
        """A reconciler correction; `bypassed_orm`: its write was a Core update, which the
        sessions' hook does not see, so its state change is published here."""
        if bypassed_orm:
            self.instance_event("instance.state", r.id, r.name, r.project_id,
                                {"from": old, "to": new, "reason": reason})
        self.publish("reconciler.corrected", project_id=r.project_id, instance_id=r.id,
                     instance_name=r.name, message=f"{r.name}: {old} -> {new} ({reason})",
                     data={"from": old, "to": new, "reason": reason})

    # --- instance lifecycle, from the sessions
    def _watch(self, db: Database) -> None:
        event.listen(db.sessions, "after_flush", self._collect)
        event.listen(db.sessions, "after_commit", self._commit)
        event.listen(db.sessions, "after_rollback", self._rollback)

    def _collect(self, s: Session, _ctx: Any) -> None:
        for obj in s.new:
            if isinstance(obj, InstanceRow):
                note(s, "instance.created", obj.id, obj.name, obj.project_id,
                     {"state": str(obj.state)})
        for obj in s.dirty:
            if not isinstance(obj, InstanceRow):
                continue
            hist = inspect(obj).attrs.state.history
            if hist.added and hist.deleted:
                note_state(s, obj.id, obj.name, obj.project_id, str(hist.deleted[0]),
                           str(hist.added[0]), obj.state_reason or "")

    def _commit(self, s: Session) -> None:
        for type_, iid, name, project_id, data in s.info.pop(_NOTED, ()):
            self.instance_event(type_, iid, name, project_id, data)

    @staticmethod
    def _rollback(s: Session) -> None:
        s.info.pop(_NOTED, None)

    def instance_event(self, type_: str, iid: str, name: str | None, project_id: str | None,
                       data: dict[str, Any], message: str = "") -> None:
        if not message:
            message = {"instance.created": f"{name} created",
                       "instance.deleted": f"{name} deleted",
                       "instance.state": f"{name} {data.get('from')} -> {data.get('to')}"
                       }.get(type_, "")
        self.publish(type_, project_id=project_id, instance_id=iid, instance_name=name,
                     message=message, data=data)


def _event(r: EventRow) -> Event:
    return Event(id=r.id, time=r.time, type=r.type, project_id=r.project_id,
                 instance_id=r.instance_id, instance_name=r.instance_name,
                 operation_id=r.operation_id, node=r.node, message=r.message, data=r.data or {})

