"""The controller's HTTP application: REST under /api/v1, health, metrics, docs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from lxcloud import __version__, web
from lxcloud.api.rest import (
    accounts,
    addresses,
    console,
    doctor,
    errors,
    events,
    images,
    instances,
    keypairs,
    metrics,
    middleware,
    networks,
    nics,
    operations,
    security_groups,
    storage,
    system,
)
from lxcloud.api.rest.deps import require_auth
from lxcloud.services.cloud import Cloud

DESCRIPTION = """A private cloud of LXC system containers.

Every REST call (`/api/v1/…`) and `/metrics` needs `Authorization: Bearer TOKEN`; the EC2 API
(`/ec2/`) takes AWS Signature Version 4 instead. Public, because they hold no data: `/healthz`,
this description (`/openapi.json`) and its pages (`/docs`, `/redoc`, their files under
`/docs/assets/`), which a browser opens without a token and which load nothing from outside the
cloud, and the web dashboard (`/`, its files under `/static/`), whose calls carry the user's token."""

# Swagger UI and ReDoc as files of a pinned package (fastapi-offline), not from a CDN: a private
# cloud often cannot reach one
DOCS_ASSETS = "/docs/assets"


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

    app = FastAPI(title="lxcloud", version=__version__, lifespan=lifespan, description=DESCRIPTION,
                  docs_url=None, redoc_url=None)
    _install_docs(app)
    app.state.cloud = c
    registry = CollectorRegistry()
    registry.register(system.CloudCollector(c))  # type: ignore[arg-type]
    app.state.metrics = registry
    middleware.install(app, registry)
    errors.install(app)
    auth = [Depends(require_auth)]
    for r in (instances.router, images.router, operations.router, accounts.router, storage.pools,
              storage.volumes, storage.snapshots, storage.exports, networks.router, nics.router,
              security_groups.router, security_groups.instance_router, metrics.router,
              keypairs.router):
        app.include_router(r, dependencies=auth)
    for r in (addresses.addresses, addresses.pools, addresses.forwards):
        app.include_router(r, dependencies=auth)
    app.include_router(doctor.router, dependencies=auth)
    app.include_router(system.router, dependencies=auth)
    app.include_router(system.public)
    app.include_router(console.router)
    app.include_router(events.router)  # its own auth: a header or ?token=
    from lxcloud.api.ec2.app import router as ec2

    app.include_router(ec2)
    web.install(app)
    return app


def _install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc over /openapi.json, every file they load served from here."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")),
              name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        # validatorUrl: Swagger UI would otherwise send the description's URL to swagger.io
        return get_swagger_ui_html(openapi_url=openapi_url, title="lxcloud API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title="lxcloud API",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)
