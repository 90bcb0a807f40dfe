"""The interactive console client: the terminal in raw mode, bridged to the console websocket.
Ctrl-a q detaches (handled here, so the instance never sees it)."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import tty

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from lxcloud.cli.client import ApiError

DETACH = b"\x01"  # Ctrl-a, then q


def attach(url: str, token: str, name: str) -> int:
    ws_url = url.replace("http://", "ws://").replace("https://", "wss://")
    try:
        ws = connect(f"{ws_url}/api/v1/instances/{name}/console/ws",
                     additional_headers={"Authorization": f"Bearer {token}"})
    except (OSError, InvalidHandshake) as e:
        raise ApiError(0, "console", f"cannot attach to the console of {name}: {e}") from None
    sys.stderr.write(f"Connected to the console of {name}. Detach with Ctrl-a q.\r\n")
    sys.stderr.flush()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    done = threading.Event()

    def pump_out() -> None:
        try:
            for msg in ws:
                data = msg if isinstance(msg, bytes) else msg.encode()
                os.write(sys.stdout.fileno(), data)
        except ConnectionClosed:
            pass
        finally:
            done.set()

    t = threading.Thread(target=pump_out, daemon=True)
    t.start()
    try:
        if saved is not None:
            tty.setraw(fd)
        pending_escape = False
        while not done.is_set():
            r, _, _ = select.select([fd], [], [], 0.2)
            if not r:
                continue
            data = os.read(fd, 1024)
            if not data:
                break
            if pending_escape:
                pending_escape = False
                if data[:1] in (b"q", b"Q"):
                    break
                data = DETACH + data
            if data.endswith(DETACH):
                pending_escape = True
                data = data[:-1]
            idx = data.find(DETACH + b"q")
            if idx >= 0:
                if idx:
                    ws.send(data[:idx])
                break
            if data:
                ws.send(data)
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        with contextlib.suppress(Exception):
            ws.close()
        t.join(timeout=2)
    sys.stderr.write("\r\nDetached.\r\n")
    return 0
