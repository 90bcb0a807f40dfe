"""REST: the interactive console, a websocket bridged to the console stream the node opens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from collections.abc import Callable

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from lxcloud.core.caller import Caller
from lxcloud.core.errors import LxcloudError
from lxcloud.node.protocol import ConsoleStream
from lxcloud.services.cloud import Cloud

router = APIRouter()


@router.websocket("/api/v1/instances/{ref}/console/ws")
async def console_ws(ws: WebSocket, ref: str) -> None:
    c: Cloud = ws.app.state.cloud
    await _bridge(ws, lambda who: c.instances.open_console(ref, caller=who)[1])


@router.websocket("/api/v1/instances/{ref}/exec/ws")
async def exec_ws(ws: WebSocket, ref: str) -> None:
    """An interactive exec: `command` (a shell command line, split like a shell's words; the
    login shell by default) run inside the instance on a terminal. The socket closes when the
    program exits, its exit code in the close reason."""
    c: Cloud = ws.app.state.cloud
    line = ws.query_params.get("command") or "/bin/sh -l"
    try:
        argv = shlex.split(line)
    except ValueError as e:
        await ws.close(code=4400, reason=f"bad command: {e}"[:120])
        return
    await _bridge(ws, lambda who: c.instances.open_exec(ref, argv, caller=who)[1], exits=True)


async def _bridge(ws: WebSocket, opener: Callable[[Caller], ConsoleStream], *,
                  exits: bool = False) -> None:
    """A websocket bridged to a terminal stream: binary frames are the terminal's bytes both
    ways, a text frame {"resize": [cols, rows]} resizes it. Refusals close with 4000 + the HTTP
    status; `exits`: the stream is a program's, whose exit code closes the socket."""
    c: Cloud = ws.app.state.cloud
    try:
        who = c.accounts.verify_token(
            ws.headers.get("authorization") or
            (f"Bearer {ws.query_params['token']}" if "token" in ws.query_params else None))
        stream = await run_in_threadpool(opener, who)
        size = _size(ws.query_params.get("cols"), ws.query_params.get("rows"))
        if size is not None:
            await run_in_threadpool(stream.resize, *size)
    except LxcloudError as e:
        await ws.close(code=4000 + min(e.http_status, 999) % 1000, reason=str(e)[:120])
        return
    await ws.accept()

    async def pump_out() -> None:
        while True:
            data = await run_in_threadpool(stream.read)
            if not data:
                reason = ""
                if exits:
                    await run_in_threadpool(stream.close)
                    reason = f"exit {getattr(stream, 'exit_code', None)}"
                with contextlib.suppress(Exception):
                    await ws.close(code=1000, reason=reason)
                return
            await ws.send_bytes(data)

    sender = asyncio.create_task(pump_out())
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            text = msg.get("text")
            if text is not None and await control(stream, text):
                continue
            data = msg.get("bytes") or (text or "").encode()
            if data:
                await run_in_threadpool(stream.write, data)
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass
    finally:
        # closing the stream ends the reader blocked in its thread (EOF), then the sender task
        await run_in_threadpool(stream.close)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


def _size(cols: object, rows: object) -> tuple[int, int] | None:
    """(cols, rows) of a terminal, or None when they are not two positive integers."""
    try:
        c, r = int(cols), int(rows)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return (c, r) if c > 0 and r > 0 else None


async def control(stream: ConsoleStream, text: str) -> bool:
    """A text frame `{"resize": [cols, rows]}` resizes the terminal (True: it was one; any other
    text is terminal input)."""
    if not text.startswith("{"):
        return False
    try:
        msg = json.loads(text)
    except ValueError:
        return False
    if not isinstance(msg, dict) or "resize" not in msg:
        return False
    size = msg["resize"]
    if isinstance(size, list) and len(size) == 2:
        got = _size(*size)
        if got is not None:
            await run_in_threadpool(stream.resize, *got)
    return True
