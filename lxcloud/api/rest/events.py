"""REST: the events, as a JSON list or followed as server-sent events.

`GET /api/v1/events` lists them oldest first. With `follow=true` (or `Accept:
text/event-stream`) the answer is a stream: the events after `since` (or `Last-Event-ID`, which a
browser's EventSource sends when it reconnects), then each one as it happens, and a `: ping`
comment every 15 s. A browser's EventSource cannot send a header, so the token may also come as
`?token=`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from lxcloud.core.caller import Caller
from lxcloud.core.errors import InvalidInput
from lxcloud.services.cloud import Cloud
from lxcloud.services.events import Event, EventFilter

router = APIRouter(prefix="/api/v1/events", tags=["events"])

PING_EVERY = 15.0
POLL = 1.0          # how often a stream looks whether its client or the server went away


async def _caller(request: Request, token: str | None) -> Caller:
    c: Cloud = request.app.state.cloud
    header = request.headers.get("authorization") or (f"Bearer {token}" if token else None)
    who = c.accounts.known_token(header)
    if who is None:
        who = await run_in_threadpool(c.accounts.verify_token, header)
    request.state.caller = who
    return who


@router.get("", response_model=None)
async def events(request: Request,
                 project: str | None = Query(None, description="a project's name or id (admins)"),
                 instance: str | None = Query(None, description="an instance's name or id"),
                 type: str | None = Query(None, description="a type, or a prefix: `instance.`"),
                 since: int | None = Query(None, ge=0, description="only events after this id"),
                 limit: int = Query(100, ge=1, le=1000),
                 follow: bool = Query(False, description="stream them (server-sent events)"),
                 token: str | None = Query(None, description="the token, for a browser's "
                                           "EventSource (else the Authorization header)"),
                 ) -> Any:
    c: Cloud = request.app.state.cloud
    who = await _caller(request, token)
    flt = await run_in_threadpool(c.events.filter, who, project=project, instance=instance,
                                  type=type)
    stream = follow or "text/event-stream" in request.headers.get("accept", "")
    if not stream:
        got = await run_in_threadpool(c.events.list, flt, since=since, limit=limit,
                                      newest=since is None)
        return [e.to_dict() for e in got]
    last = request.headers.get("last-event-id")
    if last is not None:
        try:
            since = int(last)
        except ValueError:
            raise InvalidInput("Last-Event-ID must be an event id") from None
    return StreamingResponse(_stream(request, c, flt, since), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _frame(e: Event) -> bytes:
    return f"id: {e.id}\nevent: {e.type}\ndata: {json.dumps(e.to_dict())}\n\n".encode()


async def _stream(request: Request, c: Cloud, flt: EventFilter,
                  since: int | None) -> AsyncIterator[bytes]:
    # subscribe first, then read the backlog: nothing published in between is missed, and what
    # both give is sent once (ids only grow)
    sub = c.events.subscribe(flt)
    try:
        sent = -1 if since is None else since
        yield b"retry: 2000\n\n"
        if since is not None:
            while True:
                backlog = await run_in_threadpool(c.events.list, flt, since=sent, limit=1000)
                for e in backlog:
                    yield _frame(e)
                    sent = e.id
                if len(backlog) < 1000:
                    break
        quiet = 0.0
        while not _closing(request):
            got = await run_in_threadpool(sub.get, POLL)  # type: ignore[arg-type]
            if sub.lost:    # too slow: what it missed is in the table
                sub.lost = False
                for e2 in await run_in_threadpool(c.events.list, flt, since=sent, limit=1000):
                    yield _frame(e2)
                    sent = e2.id
                continue
            if got is None:
                quiet += POLL
                if quiet >= PING_EVERY:
                    quiet = 0.0
                    yield b": ping\n\n"
                if await request.is_disconnected():
                    break
                continue
            quiet = 0.0
            if got.id > sent:
                yield _frame(got)
                sent = got.id
    finally:
        sub.close()


def _closing(request: Request) -> bool:
    """The server is shutting down: an open stream ends so that it can."""
    server = getattr(request.app.state, "server", None)
    return bool(server is not None and server.should_exit)
