"""REST: the interactive console, a websocket bridged to a pty running the driver's console command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import signal

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

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
        _, argv = c.instances.console_command(ref, caller=who)
    except LxcloudError as e:
        await ws.close(code=4000 + min(e.http_status, 999) % 1000, reason=str(e)[:120])
        return
    await ws.accept()
    pid, fd = pty.fork()
    if pid == 0:  # child: becomes the console client on the pty
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    loop = asyncio.get_running_loop()
    out: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        out.put_nowait(data)
        if not data:
            loop.remove_reader(fd)

    loop.add_reader(fd, readable)

    async def pump_out() -> None:
        while True:
            data = await out.get()
            if not data:
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
                os.write(fd, data)
    except (WebSocketDisconnect, OSError):
        pass
    finally:
        sender.cancel()
        loop.remove_reader(fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(OSError):
            os.close(fd)
        await asyncio.get_running_loop().run_in_executor(None, _reap, pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
