"""Who is asking: every service call is made on behalf of a caller, scoped to one project."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    user_id: str
    user: str
    project_id: str
    project: str
    role: str = "member"        # admin | member

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# Internal work (reconciler, start-up, tests of the services alone) acts for the default project.
DEFAULT_PROJECT = "default"
SYSTEM = Caller(user_id="system", user="system", project_id="", project=DEFAULT_PROJECT, role="admin")
