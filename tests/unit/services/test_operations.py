"""Operations: locks held in the database, owners, and a start-up that fails only its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxcloud.core.errors import Busy, DriverError, NotFound
from lxcloud.db.engine import Database
from lxcloud.db.tables import LockRow
from lxcloud.services.operations import Operations, Progress


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    d.create_all()
    yield d
    d.close()


@pytest.fixture
def ops(db: Database) -> Iterator[Operations]:
    o = Operations(db, owner="ctl-a", workers=2)
    yield o
    o.shutdown()


def test_the_lock_is_a_row_taken_with_the_operation_and_released_at_its_end(
        db: Database, ops: Operations) -> None:
    gate = threading.Event()
    op = ops.create("launch", "i-1", project_id="proj-1")
    assert ops.busy("i-1") == op.id
    with db.reader() as s:
        assert s.get(LockRow, "i-1").owner == "ctl-a"   # type: ignore[union-attr]
    # a second controller over the same database sees the lock too
    other = Operations(db, owner="ctl-b", workers=1)
    try:
        with pytest.raises(Busy, match=op.id):
            other.create("stop", "i-1")
    finally:
        other.shutdown()
    started = threading.Event()

    def job(progress: Progress) -> dict[str, int]:
        progress(50, "half way")
        started.set()
        gate.wait(10)
        return {"ok": 1}

    ops.submit(op, job)
    assert started.wait(10)
    running = ops.get(op.id)   # the live progress, before any row write
    assert (running.status, running.progress, running.message) == ("running", 50, "half way")
    gate.set()
    done = ops.wait(op.id, 10)
    assert done.status == "success" and done.result == {"ok": 1} and done.owner == "ctl-a"
    assert ops.busy("i-1") is None
    ops.create("stop", "i-1")        # free again


def test_a_failed_job_is_recorded_and_frees_the_lock(ops: Operations) -> None:
    op = ops.create("launch", "i-2")

    def boom(progress: object) -> None:
        raise DriverError("disk on fire")

    seen: list[str] = []
    ops.submit(op, boom, on_error=lambda e: seen.append(str(e)))
    done = ops.wait(op.id, 10)
    assert (done.status, done.error_code, done.error) == ("failure", "driver_error", "disk on fire")
    assert seen == ["disk on fire"] and ops.busy("i-2") is None


def test_startup_fails_only_this_controllers_interrupted_operations(db: Database) -> None:
    a = Operations(db, owner="ctl-a", workers=1)
    b = Operations(db, owner="ctl-b", workers=1)
    try:
        mine = a.create("launch", "i-a")
        theirs = b.create("launch", "i-b")
        # ctl-a restarts: its pending operation is failed and its lock released; ctl-b's stay
        assert Operations(db, owner="ctl-a").fail_interrupted() == 1
        assert a.get(mine.id).status == "failure" and a.get(mine.id).error_code == "interrupted"
        assert a.busy("i-a") is None
        assert b.get(theirs.id).status == "pending" and b.busy("i-b") == theirs.id
    finally:
        a.shutdown()
        b.shutdown()


def test_a_member_sees_its_projects_operations_only(ops: Operations) -> None:
    from lxcloud.core.caller import Caller

    op = ops.create("launch", "i-3", project_id="proj-1")
    alice = Caller(user_id="u1", user="alice", project_id="proj-1", project="one")
    eve = Caller(user_id="u2", user="eve", project_id="proj-2", project="two")
    assert ops.get(op.id, caller=alice).id == op.id
    with pytest.raises(NotFound):
        ops.get(op.id, caller=eve)
    assert [o.id for o in ops.list(caller=eve)] == []
    assert [o.id for o in ops.list(caller=alice)] == [op.id]
