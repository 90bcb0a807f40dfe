"""A real browser for the dashboard's tests: Debian's Chromium, headless, driven by Playwright.

Playwright cannot download its own browser here, so it drives /usr/bin/chromium (apt, from the
Makefile). Each test gets a fresh context (no shared storage: the token lives in sessionStorage)
and a `Shots` that saves a screenshot of every page the test looks at under the artifacts
directory ($LXCLOUD_ARTIFACTS, else artifacts/screenshots/ in the checkout), and one more when a
test fails.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("LXCLOUD_ARTIFACTS")
                 or Path(__file__).resolve().parents[2] / "artifacts" / "screenshots")
# laptop screen
VIEWPORT = {"width": 1366, "height": 768}


@dataclass
class Shots:
    """Numbered screenshots of one test, in ARTIFACTS/<test name>/."""

    page: Page
    folder: Path
    taken: list[Path] = field(default_factory=list)

    def __call__(self, what: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{len(self.taken) + 1:02d}-{re.sub(r'[^a-z0-9]+', '-', what.lower())}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


# module-scoped, not session: while Playwright's sync driver is open its asyncio loop counts as
# running in this thread, and pyroute2 (which runs its own loop to open a netlink socket) then
# fails in every later test with "This event loop is already running"
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make deps` installs Debian's chromium")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # as root Chromium refuses to start without --no-sandbox
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                   args=["--no-sandbox", "--disable-dev-shm-usage"])
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    ctx = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    ctx.set_default_timeout(30_000)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            folder = ARTIFACTS / request.node.name
            folder.mkdir(parents=True, exist_ok=True)
            pg.screenshot(path=str(folder / "failed.png"), full_page=True)
        ctx.close()


@pytest.fixture
def shots(page: Page, request: pytest.FixtureRequest) -> Shots:
    return Shots(page, ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name))
