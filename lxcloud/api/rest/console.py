"""REST: the interactive console, a websocket bridged to the console stream the node opens."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from lxcloud.core.errors import LxcloudError
from lxcloud.services.cloud import Cloud

router = APIRouter()


@router.websocket("/api/v1/instances/{ref}/console/ws")
async def console_ws(ws: WebSocket, ref: str) -> None:
    c: Cloud = ws.app.state.cloud
    try:
        who = c.accounts.verify_token(
            ws.headers.get("authorization") or
            (f"Bearer {ws.query_params['token']}" if "token" in ws.query_params else None))
        _, stream = await run_in_threadpool(c.instances.open_console, ref, caller=who)
    except LxcloudError as e:
        await ws.close(code=4000 + min(e.http_status, 999) % 1000, reason=str(e)[:120])
        return
    await ws.accept()

    async def pump_out() -> None:
        while True:
            data = await run_in_threadpool(stream.read)
            if not data:
                with contextlib.suppress(Exception):
                    await ws.close()
                return
            await ws.send_bytes(data)

    sender = asyncio.create_task(pump_out())
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            data = msg.get("bytes") or (msg.get("text") or "").encode()
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
