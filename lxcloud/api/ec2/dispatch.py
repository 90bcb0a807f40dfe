"""The EC2 action table: each action module registers its handlers here with @action.

Kept apart from the endpoint (app.py), which imports the action modules, so that nothing imports
in a loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxcloud.api.ec2.params import Params
from lxcloud.core.caller import Caller
from lxcloud.services.cloud import Cloud


@dataclass(frozen=True)
class Ctx:
    cloud: Cloud
    caller: Caller
    action: str


Handler = Callable[[Ctx, Params], dict[str, Any]]
ACTIONS: dict[str, Handler] = {}


def action(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ACTIONS[name] = fn
        return fn
    return register
