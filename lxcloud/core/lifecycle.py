"""The instance lifecycle: one explicit table of allowed transitions, enforced in one place."""

from __future__ import annotations

from enum import StrEnum

from lxcloud.core.errors import InvalidState


class State(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FROZEN = "frozen"
    REBOOTING = "rebooting"
    ERROR = "error"
    TERMINATED = "terminated"


class Action(StrEnum):
    CREATED = "created"      # pending -> running (launch finished)
    START = "start"
    STOP = "stop"
    STOPPED = "stopped"      # stopping -> stopped (stop finished)
    REBOOT = "reboot"
    REBOOTED = "rebooted"    # rebooting -> running
    SUSPEND = "suspend"
    RESUME = "resume"
    FAIL = "fail"            # any -> error
    TERMINATE = "terminate"  # any -> terminated


S = State
# (from, action) -> to. Transient states (pending, stopping, rebooting) are left by their
# completion action. `fail` and `terminate` are allowed from every non-terminated state.
TRANSITIONS: dict[tuple[State, Action], State] = {
    (S.PENDING, Action.CREATED): S.RUNNING,
    (S.PENDING, Action.STOPPED): S.STOPPED,
    (S.RUNNING, Action.STOP): S.STOPPING,
    (S.STOPPING, Action.STOPPED): S.STOPPED,
    (S.STOPPED, Action.START): S.PENDING,
    (S.ERROR, Action.START): S.PENDING,
    (S.RUNNING, Action.REBOOT): S.REBOOTING,
    (S.REBOOTING, Action.REBOOTED): S.RUNNING,
    (S.RUNNING, Action.SUSPEND): S.FROZEN,
    (S.FROZEN, Action.RESUME): S.RUNNING,
    (S.FROZEN, Action.STOP): S.STOPPING,
    (S.ERROR, Action.STOP): S.STOPPING,
}
for _s in State:
    if _s is not S.TERMINATED:
        TRANSITIONS[(_s, Action.FAIL)] = S.ERROR
        TRANSITIONS[(_s, Action.TERMINATE)] = S.TERMINATED

STABLE = frozenset({S.RUNNING, S.STOPPED, S.FROZEN, S.ERROR, S.TERMINATED})


def next_state(current: State | str, action: Action | str) -> State:
    """The state `action` leads to from `current`; InvalidState naming both if not allowed."""
    cur, act = State(current), Action(action)
    try:
        return TRANSITIONS[(cur, act)]
    except KeyError:
        raise InvalidState(
            f"cannot {act.value} an instance that is {cur.value}", state=cur.value, action=act.value
        ) from None


def allowed_actions(current: State | str) -> list[str]:
    cur = State(current)
    return sorted({a.value for (s, a) in TRANSITIONS if s is cur})


# What the host is seen doing -> the state a record converges to (the reconciler's table).
# Host states are plain strings here, so that core imports no driver.
OBSERVED: dict[str, State] = {
    "running": S.RUNNING, "stopped": S.STOPPED, "frozen": S.FROZEN, "missing": S.ERROR,
}


def observe(current: State | str, host_state: str | None) -> State:
    """The state a record takes when its host shows `host_state` (None: host unreachable).
    A terminated record never comes back (InvalidState)."""
    cur = State(current)
    if cur is S.TERMINATED:
        raise InvalidState("a terminated instance is not reconciled", state=cur.value)
    return OBSERVED.get(str(host_state), S.ERROR) if host_state is not None else S.ERROR
