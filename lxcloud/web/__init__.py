"""The web dashboard: its built assets (lxcloud/web/static, made by `make web` from web/) served at `/`.

index.html is never cached (it names the assets with a content hash: a new build is seen at once);
the assets under /static/ are cached for a year. None of it holds data, so none of it needs a token:
the dashboard's calls to /api/v1 carry the user's token.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
LONG_CACHE = "public, max-age=31536000, immutable"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lxcloud: dashboard not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>The dashboard is not built</h1>
<p>This controller has no dashboard assets in <code>{path}</code>.
Build them from the source tree with <code>make web</code> (or <code>make up</code>, which does it),
then reload this page.</p>
<p>The API works without them: <a href="/docs">/docs</a>.</p>
</body></html>
"""


class _Assets(StaticFiles):
    """The built assets, with a long cache lifetime (their URLs change with their content)."""

    async def check_config(self) -> None:
        # not built yet: a 404 per file (and `/` says how to build), not a 500
        if self.directory is not None and Path(self.directory).is_dir():
            await super().check_config()

    async def get_response(self, path: str, scope: Scope) -> Response:
        resp = await super().get_response(path, scope)
        if resp.status_code in (200, 304):
            resp.headers["Cache-Control"] = LONG_CACHE
        return resp


def built(static: Path = STATIC) -> bool:
    return (static / "index.html").is_file()


def install(app: FastAPI, static: Path = STATIC) -> None:
    """`/` serves index.html (or a page saying how to build it), `/static/…` the assets."""

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = static / "index.html"
        if not page.is_file():
            return HTMLResponse(NOT_BUILT.format(path=static), status_code=503,
                                headers={"Cache-Control": "no-store"})
        return FileResponse(page, media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.mount("/static", _Assets(directory=str(static), check_dir=False), name="dashboard-static")
