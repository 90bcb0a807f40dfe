"""Request counters and latency histograms for every HTTP request, as a plain ASGI middleware
(Starlette's BaseHTTPMiddleware costs a task group and a stream per request; this costs a clock
read and two metric updates)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestMetrics:
    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("lxcloud_http_requests", "HTTP requests by API, method and status",
                                ["api", "method", "status"], registry=registry)
        self.latency = Histogram("lxcloud_http_request_seconds", "HTTP request latency by API",
                                 ["api"], registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path: str = scope.get("path", "")
            api = "ec2" if path.startswith("/ec2") else "rest" if path.startswith("/api/") else "other"
            self.requests.labels(api, scope.get("method", ""), str(status[0])).inc()
            self.latency.labels(api).observe(time.perf_counter() - t0)


def install(app: Any, registry: CollectorRegistry) -> None:
    app.add_middleware(RequestMetrics, registry=registry)
