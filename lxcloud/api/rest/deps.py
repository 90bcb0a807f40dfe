"""Shared FastAPI dependencies: the cloud's services and authentication."""

from __future__ import annotations

from fastapi import Request

from lxcloud.core.caller import Caller
from lxcloud.services.cloud import Cloud


def cloud(request: Request) -> Cloud:
    return request.app.state.cloud  # type: ignore[no-any-return]


def require_auth(request: Request) -> Caller:
    c: Cloud = request.app.state.cloud
    who = c.accounts.verify_token(request.headers.get("authorization"))
    request.state.caller = who
    return who


def caller(request: Request) -> Caller:
    """The authenticated caller (set by require_auth, which every /api/v1 router depends on)."""
    found = getattr(request.state, "caller", None)
    if found is None:
        return require_auth(request)
    return found  # type: ignore[no-any-return]
