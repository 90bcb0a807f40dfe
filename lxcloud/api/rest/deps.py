"""Shared FastAPI dependencies: the cloud's services and authentication.

They are coroutines: a plain `def` dependency costs every request a trip to the thread pool and
back, and these only read memory (a token verified once is known from then on; only a token not
seen before is checked against the database, in the thread pool).
"""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from lxcloud.core.caller import Caller
from lxcloud.services.cloud import Cloud


async def cloud(request: Request) -> Cloud:
    return request.app.state.cloud  # type: ignore[no-any-return]


async def require_auth(request: Request) -> Caller:
    c: Cloud = request.app.state.cloud
    header = request.headers.get("authorization")
    who = c.accounts.known_token(header)
    if who is None:
        who = await run_in_threadpool(c.accounts.verify_token, header)
    request.state.caller = who
    return who


async def caller(request: Request) -> Caller:
    """The authenticated caller (set by require_auth, which every /api/v1 router depends on)."""
    found = getattr(request.state, "caller", None)
    if found is None:
        return await require_auth(request)
    return found  # type: ignore[no-any-return]
