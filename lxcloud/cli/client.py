"""The CLI's REST client: finds the cloud (LXCLOUD_URL/LXCLOUD_TOKEN or the data dir) and
turns API errors into one clear line. Speaks REST only; never imports services."""

from __future__ import annotations

import os
import time
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
            try:
                body = r.json()
                raise ApiError(r.status_code, body.get("code", "error"), body.get("error", r.text))
            except ValueError:
                raise ApiError(r.status_code, "error", r.text or r.reason_phrase) from None
        if r.status_code == 204 or not r.content:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

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

    def upload(self, path: str, file: Path, params: dict[str, str]) -> Any:
        def chunks() -> Any:
            with open(file, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        return
                    yield b
        return self.request("POST", path, params=params, content=chunks(),
                            headers={"Content-Type": "application/octet-stream"},
                            timeout=httpx.Timeout(600))
