"""The one error -> HTTP mapping of the REST API. A user never sees a traceback."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lxcloud.core.errors import LxcloudError

log = logging.getLogger(__name__)


def _body(code: str, message: str, status: int, details: Mapping[str, object] | None = None,
          ) -> JSONResponse:
    return JSONResponse({"error": message, "code": code, "details": dict(details or {})},
                        status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(LxcloudError)
    async def _lxcloud(_: Request, e: LxcloudError) -> JSONResponse:
        details = {k: v for k, v in e.details.items() if isinstance(v, str | int | float | bool)}
        headers = {"WWW-Authenticate": "Bearer"} if e.http_status == 401 else None
        resp = _body(e.code, str(e), e.http_status, details)
        if headers:
            resp.headers.update(headers)
        return resp

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        parts = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return _body("invalid_input", "invalid request: " + "; ".join(parts), 400)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, e: HTTPException) -> JSONResponse:
        return _body("http_error" if e.status_code != 404 else "not_found", str(e.detail),
                     e.status_code)

    @app.exception_handler(Exception)
    async def _any(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _body("internal", f"internal error: {type(e).__name__}", 500)
