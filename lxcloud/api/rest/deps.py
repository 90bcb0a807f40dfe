"""Shared FastAPI dependencies: the cloud's services and authentication."""

from __future__ import annotations

from fastapi import Request

from lxcloud.services.cloud import Cloud


def cloud(request: Request) -> Cloud:
    return request.app.state.cloud  # type: ignore[no-any-return]


def require_auth(request: Request) -> str:
    c: Cloud = request.app.state.cloud
    return c.auth.verify(request.headers.get("authorization"))
