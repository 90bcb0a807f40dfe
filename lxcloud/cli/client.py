"""The CLI's REST client: finds the cloud (LXCLOUD_URL/LXCLOUD_TOKEN or the data dir) and
turns API errors into one clear line. Speaks REST only; never imports services."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from lxcloud.config import data_dir_from_env


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def discover(data_dir: str | None = None, url: str | None = None,
             token: str | None = None) -> tuple[str, str]:
    """URL and token: explicit values, then LXCLOUD_URL/LXCLOUD_TOKEN, then the local data dir."""
    dd = data_dir_from_env(data_dir)
    url = url or os.environ.get("LXCLOUD_URL")
    token = token or os.environ.get("LXCLOUD_TOKEN")
    if not url:
        f = dd / "api.url"
        url = f.read_text().strip() if f.exists() else "http://127.0.0.1:8080"
    if not token:
        f = dd / "admin.token"
        try:
            token = f.read_text().strip()
        except OSError:
            token = ""
    return url.rstrip("/"), token


class Client:
    def __init__(self, url: str, token: str, timeout: float = 60) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
        self.token = token

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.ConnectError:
            raise ApiError(0, "unreachable", f"cannot reach lxcloud at {self.url} "
                           "(is `lxcloud up` running? set LXCLOUD_URL or --data-dir)") from None
        except httpx.TimeoutException:
            raise ApiError(0, "timeout", f"lxcloud at {self.url} did not answer in time") from None
        if r.status_code >= 400:
            raise _error(r)
        if r.status_code == 204 or not r.content:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

    def events(self, params: dict[str, Any], last_id: int | None = None) -> Iterator[dict[str, Any]]:
        """Follows GET /api/v1/events (server-sent events), one decoded event at a time; when the
        stream drops (the server restarts), reconnects with Last-Event-ID until interrupted."""
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = str(last_id)
            try:
                with self.http.stream("GET", "/api/v1/events", params={**params, "follow": "true"},
                                      headers=headers, timeout=httpx.Timeout(10, read=60)) as r:
                    if r.status_code >= 400:
                        r.read()
                        raise _error(r)
                    data: list[str] = []
                    for line in r.iter_lines():
                        if line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif not line and data:
                            ev = json.loads("\n".join(data))
                            data = []
                            last_id = int(ev["id"])
                            yield ev
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass
            time.sleep(1)   # not synchronisation: the pause between two reconnection attempts

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def patch(self, path: str, **kw: Any) -> Any:
        return self.request("PATCH", path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        return self.request("PUT", path, **kw)

    def wait(self, op_id: str, timeout: float = 600, on_progress: Any = None) -> dict[str, Any]:
        """Long-polls the operation until done; calls on_progress(op) as it moves."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            op: dict[str, Any] = self.get(f"/api/v1/operations/{op_id}",
                                          params={"wait": max(0.0, min(1.0, left))})
            if on_progress is not None:
                on_progress(op)
            if op["status"] in ("success", "failure") or left <= 0:
                return op

    def upload(self, path: str, file: Path, params: dict[str, str],
               on_chunk: Callable[[int], None] | None = None,
               content_type: str = "application/octet-stream") -> Any:
        """POSTs the file as the raw body, streamed a MiB at a time (on_chunk(bytes) after each)."""
        def chunks() -> Any:
            with open(file, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        return
                    yield b
                    if on_chunk is not None:
                        on_chunk(len(b))
        return self.request("POST", path, params=params, content=chunks(),
                            headers={"Content-Type": content_type,
                                     "Content-Length": str(file.stat().st_size)},
                            timeout=httpx.Timeout(600))

    def download(self, path: str, dest: Path,
                 on_start: Callable[[int | None], None] | None = None,
                 on_chunk: Callable[[int], None] | None = None) -> int:
        """GETs `path` streamed into `dest` (on_start(length) once, on_chunk(bytes) as it comes);
        the bytes written. A failed download leaves no `dest`: it is written under another name
        and renamed once whole."""
        part = dest.with_name(f".{dest.name}.part")
        try:
            with self.http.stream("GET", path, timeout=httpx.Timeout(60, read=600)) as r:
                if r.status_code >= 400:
                    r.read()
                    raise _error(r)
                length = r.headers.get("content-length")
                if on_start is not None:
                    on_start(int(length) if length and length.isdigit() else None)
                n = 0
                with open(part, "wb") as f:
                    for b in r.iter_bytes(1 << 20):
                        f.write(b)
                        n += len(b)
                        if on_chunk is not None:
                            on_chunk(len(b))
            part.replace(dest)
            return n
        except httpx.ConnectError:
            raise ApiError(0, "unreachable", f"cannot reach lxcloud at {self.url}") from None
        except httpx.TimeoutException:
            raise ApiError(0, "timeout", f"lxcloud at {self.url} did not answer in time") from None
        except OSError as e:
            raise ApiError(0, "io", f"cannot write {dest}: {e.strerror or e}") from None
        finally:
            part.unlink(missing_ok=True)


def _error(r: httpx.Response) -> ApiError:
    """The REST error of an answer: its message and code (or its text)."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return ApiError(r.status_code, str(body.get("code", "error")), str(body["error"]))
    return ApiError(r.status_code, "error", r.text or r.reason_phrase)
