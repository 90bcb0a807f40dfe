"""The dashboard in a real browser (Debian's Chromium through Playwright) against `lxcloud up`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import Shots
from tests.e2e.conftest import Cloud, running_cloud


@pytest.fixture(scope="module")
def dash() -> Iterator[Cloud]:
    with running_cloud("lxcloud-dash-", purge_timeout=120) as c:
        yield c


def admin_token(c: Cloud) -> str:
    return (c.data_dir / "admin.token").read_text().strip()


def log_in(page: Page, c: Cloud, tok: str) -> None:
    page.goto(c.url + "/")
    page.fill("#token", tok)
    page.click("button[type=submit]")


def test_a_wrong_token_is_refused_and_a_right_one_logs_in(dash: Cloud, page: Page,
                                                          shots: Shots) -> None:
    page.goto(dash.url + "/")
    expect(page.locator("[data-page=login]")).to_be_visible()
    shots("login")
    log_in(page, dash, "not-a-token")
    expect(page.locator("#login-error")).to_contain_text("refused")
    expect(page.locator(".shell")).to_have_count(0)
    shots("wrong token")
    log_in(page, dash, admin_token(dash))
    expect(page.locator("[data-page=instances]")).to_be_visible()
    expect(page.locator(".whoami .user")).to_have_text("admin")
    shots("instances")
    # the token lives in this tab's session: a reload stays logged in, logging out forgets it
    page.reload()
    expect(page.locator("[data-page=instances]")).to_be_visible()
    page.click("button.logout")
    expect(page.locator("[data-page=login]")).to_be_visible()
    page.reload()
    expect(page.locator("[data-page=login]")).to_be_visible()
    assert page.errors == []  # type: ignore[attr-defined]
