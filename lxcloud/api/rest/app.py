"""The controller's HTTP application: REST under /api/v1, health, metrics, docs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from lxcloud import __version__
from lxcloud.api.rest import (
    accounts,
    console,
    errors,
    images,
    instances,
    middleware,
    operations,
    system,
)
from lxcloud.api.rest.deps import require_auth
from lxcloud.services.cloud import Cloud


def create_app(c: Cloud) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # blocking handlers (exec, waits on hosts) must not starve each other
        anyio.to_thread.current_default_thread_limiter().total_tokens = 200
        waiters = operations.Waiters(asyncio.get_running_loop())
        app.state.waiters = waiters
        c.ops.on_finish.append(waiters.finished)
        try:
            yield
        finally:
            c.ops.on_finish.remove(waiters.finished)

    app = FastAPI(title="lxcloud", version=__version__, lifespan=lifespan,
                  description="A private cloud of LXC system containers. Every call but /healthz "
                              "needs `Authorization: Bearer TOKEN`.")
    app.state.cloud = c
    registry = CollectorRegistry()
    registry.register(system.CloudCollector(c))  # type: ignore[arg-type]
    app.state.metrics = registry
    middleware.install(app, registry)
    errors.install(app)
    auth = [Depends(require_auth)]
    for r in (instances.router, images.router, operations.router, accounts.router):
        app.include_router(r, dependencies=auth)
    app.include_router(system.router, dependencies=auth)
    app.include_router(system.public)
    app.include_router(console.router)
    from lxcloud.api.ec2.app import router as ec2

    app.include_router(ec2)
    return app
