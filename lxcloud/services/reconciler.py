"""The reconciler: the database says what should be, the host says what is; converge them.

Runs at start-up and periodically. A restart neither kills a container nor loses a record:
a container that vanished is marked `error`, one that stopped by itself is marked `stopped`,
an unknown one (on the host, not in the database) is reported, never touched. A running instance
whose own init halted it (seen by the periodic pass, not at start-up, when the host itself may have
been down) is handed to `on_halt`, which applies its shutdown behaviour.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, update

from lxcloud.core.host import HostState
from lxcloud.core.lifecycle import State, observe
from lxcloud.db.engine import Database
from lxcloud.db.tables import InstanceRow, LockRow
from lxcloud.node.protocol import NodeClient
from lxcloud.services.operations import Operations

log = logging.getLogger(__name__)

# the state reason of an instance whose own init halted it
SELF_SHUTDOWN = "instance-initiated shutdown"

_EXPECTED = {State.RUNNING: HostState.RUNNING, State.STOPPED: HostState.STOPPED,
             State.FROZEN: HostState.FROZEN}


@dataclass
class ReconcileReport:
    checked: int = 0
    changed: dict[str, str] = field(default_factory=dict)     # instance id -> new state
    unknown: list[str] = field(default_factory=list)           # containers not in the database


class Reconciler:
    def __init__(self, db: Database, ops: Operations, node: NodeClient) -> None:
        self.db = db
        self.ops = ops
        self.node = node
        self.last = ReconcileReport()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # called with the id of a running instance that halted itself, once it is recorded stopped
        self.on_halt: Callable[[str], object] | None = None
        # told of every correction: (instance row after it, from, to, reason, bypassed_orm)
        self.on_correct: list[Callable[..., object]] = []

    def run_once(self, startup: bool = False) -> ReconcileReport:
        rep = ReconcileReport()
        try:
            self.node.heal()
        except Exception:
            log.exception("host %s: could not restore its services", self.node.name)
        on_host = set(self.node.list_instances())
        with self.db.reader() as s:
            rows = list(s.execute(select(InstanceRow.id, InstanceRow.state)
                                  .where(InstanceRow.node == self.node.name)))
            locked = set(s.scalars(select(LockRow.target)))
        known = {iid for iid, _ in rows}
        rep.unknown = sorted(on_host - known)
        for iid in rep.unknown:
            log.warning("unknown container %s on host %s (not in the database; left alone)",
                        iid, self.node.name)
        for iid, state in rows:
            if state == State.TERMINATED:
                continue
            if iid in locked:
                continue    # an operation owns it right now
            rep.checked += 1
            host = self.node.state(iid) if iid in on_host else HostState.MISSING
            new = self._converge(iid, State(state), host, startup)
            if new is not None:
                rep.changed[iid] = new
        self.last = rep
        return rep

    def _converge(self, iid: str, state: State, host: HostState, startup: bool) -> str | None:
        if host == HostState.MISSING:
            if state == State.ERROR:
                return None
            if state == State.PENDING and not startup:
                return None
            return self._set(iid, observe(state, host.value), "the container vanished from its host")
        if state in _EXPECTED and _EXPECTED[state] == host:
            return None
        if state == State.RUNNING and host == HostState.STOPPED and not startup:
            return self._halted(iid)
        if state in (State.PENDING, State.STOPPING, State.REBOOTING) and not startup:
            return None    # transient: its operation will settle it
        target = observe(state, host.value)
        if state == State.ERROR and not startup:
            return None
        reason = "reconciled with the host" + (" after a restart" if startup else "")
        return self._set(iid, target, reason)

    def _set(self, iid: str, state: State, reason: str) -> str:
        with self.db.session() as s:
            r = s.get(InstanceRow, iid)
            if r is not None:
                log.info("reconcile %s: %s -> %s (%s)", iid, r.state, state, reason)
                old = str(r.state)
                r.state = state
                r.state_reason = reason
        if r is not None:
            self._corrected(r, old, str(state), reason)
        return str(state)

    def _corrected(self, r: InstanceRow, old: str, new: str, reason: str,
                   bypassed_orm: bool = False) -> None:
        for cb in self.on_correct:
            try:
                cb(r, old, new, reason, bypassed_orm=bypassed_orm)
            except Exception:
                log.exception("correction callback failed")

    def _halted(self, iid: str) -> str | None:
        """A running instance stopped by itself: recorded stopped only if its record still says
        running (an operation that just ended wins), then handed to on_halt."""
        target = observe(State.RUNNING, HostState.STOPPED.value)
        with self.db.session() as s:
            hit = s.execute(update(InstanceRow)
                            .where(InstanceRow.id == iid, InstanceRow.state == State.RUNNING)
                            .values(state=target, state_reason=SELF_SHUTDOWN))
            if not hit.rowcount:  # type: ignore[attr-defined]
                return None
            r = s.get(InstanceRow, iid)
        log.info("reconcile %s: running -> %s (%s)", iid, target, SELF_SHUTDOWN)
        if r is not None:
            self._corrected(r, str(State.RUNNING), str(target), SELF_SHUTDOWN, bypassed_orm=True)
        if self.on_halt is not None:
            try:
                self.on_halt(iid)
            except Exception:
                log.exception("instance %s halted itself; applying its shutdown behaviour failed",
                              iid)
        return str(target)

    def start(self, interval: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.run_once()
                except Exception:
                    log.exception("reconcile failed")

        self._thread = threading.Thread(target=loop, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
