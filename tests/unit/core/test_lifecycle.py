"""The lifecycle table: every allowed transition, and invalid ones refused with the state named."""

from __future__ import annotations

import pytest

from lxcloud.core.errors import InvalidState
from lxcloud.core.lifecycle import Action, State, allowed_actions, next_state


@pytest.mark.parametrize("cur,action,to", [
    ("pending", "created", "running"), ("running", "stop", "stopping"),
    ("stopping", "stopped", "stopped"), ("stopped", "start", "pending"),
    ("running", "suspend", "frozen"), ("frozen", "resume", "running"),
    ("running", "reboot", "rebooting"), ("rebooting", "rebooted", "running"),
    ("running", "fail", "error"), ("stopped", "terminate", "terminated"),
    ("error", "start", "pending"), ("frozen", "stop", "stopping"),
])
def test_allowed(cur: str, action: str, to: str) -> None:
    assert next_state(cur, action) == State(to)


@pytest.mark.parametrize("cur,action", [
    ("running", "start"), ("stopped", "stop"), ("stopped", "suspend"), ("frozen", "suspend"),
    ("running", "resume"), ("stopped", "reboot"), ("pending", "stop"), ("terminated", "start"),
    ("terminated", "terminate"), ("terminated", "fail"),
])
def test_refused_names_the_state(cur: str, action: str) -> None:
    with pytest.raises(InvalidState) as ei:
        next_state(cur, action)
    assert cur in str(ei.value)
    assert ei.value.details["state"] == cur
    assert ei.value.http_status == 409


def test_every_live_state_can_fail_and_terminate() -> None:
    for s in State:
        if s is State.TERMINATED:
            assert allowed_actions(s) == []
        else:
            assert {"fail", "terminate"} <= set(allowed_actions(s))
    assert Action("start") is Action.START


@pytest.mark.parametrize("cur,host,to", [
    ("running", "stopped", "stopped"), ("stopped", "running", "running"),
    ("pending", "running", "running"), ("running", "missing", "error"),
    ("frozen", "running", "running"), ("running", None, "error"), ("error", "running", "running"),
])
def test_observed_host_states(cur: str, host: str | None, to: str) -> None:
    from lxcloud.core.lifecycle import observe

    assert observe(cur, host) == State(to)


def test_terminated_is_never_reconciled() -> None:
    from lxcloud.core.lifecycle import observe

    with pytest.raises(InvalidState):
        observe("terminated", "running")
