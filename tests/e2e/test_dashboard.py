"""The dashboard in a real browser (Debian's Chromium through Playwright) against `lxcloud up`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import Shots
from tests.e2e.conftest import Cloud, run_readme, running_cloud
from tests.e2e.test_readme_walkthrough import blocks


@pytest.fixture(scope="module")
def dash() -> Iterator[Cloud]:
    # samples every 2 s: the CPU graph moves within the test's patience
    with running_cloud("lxcloud-dash-", config={"metrics_interval": 2}, purge_timeout=120) as c:
        c.cli("image", "build", "busybox")
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


def term_text(page: Page, var: str) -> str:
    """What the xterm.js terminal `window[var]` shows (its buffer, as text)."""
    return str(page.evaluate(f"""() => {{
        const t = window.{var}; if (!t) return "";
        const b = t.buffer.active; const out = [];
        for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
        return out.join("\\n"); }}"""))


def type_in(page: Page, selector: str, text: str) -> None:
    page.locator(f"{selector} .xterm-helper-textarea").focus()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_launch_watch_console_shell_cpu_stop_delete(dash: Cloud, page: Page, shots: Shots) -> None:
    log_in(page, dash, admin_token(dash))
    expect(page.locator("[data-page=instances]")).to_be_visible()
    page.get_by_role("button", name="Launch instance").click()
    form = page.locator("dialog[data-dialog=launch]")
    expect(form).to_be_visible()
    form.locator("[name=name]").fill("web1")
    form.locator("[name=image]").select_option("busybox")
    form.locator("[name=memory]").fill("64MiB")
    shots("launch form")
    form.get_by_role("button", name="Launch").click()
    row = page.locator("tr[data-name=web1]")
    expect(row.locator(".state")).to_have_text("running", timeout=120_000)
    shots("running in the list")

    row.get_by_role("link", name="web1").click()
    expect(page.locator("[data-page=instance]")).to_be_visible()
    expect(page.locator(".page-header h1")).to_have_text("web1")
    shots("instance page")

    # the console: a real terminal over the console websocket
    page.locator("[data-tab=console]").click()
    expect(page.locator("[data-panel=console] .lx-term")).to_have_attribute(
        "data-status", "connected", timeout=30_000)
    type_in(page, "[data-panel=console]", "")
    type_in(page, "[data-panel=console]", "echo lx$((6*7))")
    page.wait_for_function("""() => { const t = window.lxcloudTerm; if (!t) return false;
        const b = t.buffer.active;
        for (let i = 0; i < b.length; i++) if (b.getLine(i).translateToString(true) === "lx42")
            return true; return false; }""", timeout=30_000)
    assert "lx42" in term_text(page, "lxcloudTerm")
    shots("console")

    # the shell tab: an interactive exec
    page.locator("[data-tab=shell]").click()
    expect(page.locator("[data-panel=shell] .lx-term")).to_have_attribute(
        "data-status", "connected", timeout=30_000)
    page.wait_for_function("() => window.lxcloudShell && window.lxcloudShell.buffer.active"
                           ".getLine(window.lxcloudShell.buffer.active.cursorY)"
                           ".translateToString(true).includes('#')", timeout=30_000)
    type_in(page, "[data-panel=shell]", "echo sh$((6*7)); hostname")
    page.wait_for_function("""() => { const t = window.lxcloudShell; const b = t.buffer.active;
        for (let i = 0; i < b.length; i++) if (b.getLine(i).translateToString(true) === "sh42")
            return true; return false; }""", timeout=30_000)
    assert "web1" in term_text(page, "lxcloudShell")
    shots("shell")

    # a CPU hog started through the exec tab moves the CPU graph
    page.locator("[data-tab=exec]").click()
    page.fill("[data-panel=exec] input[name=command]",
              "(setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &); echo started")
    page.locator("[data-panel=exec]").get_by_role("button", name="Run").click()
    expect(page.locator("pre.exec-output")).to_contain_text("started")
    page.locator("[data-tab=overview]").click()
    page.wait_for_function("() => { const g = document.querySelector('figure[data-graph=cpu]');"
                           " return g && Number(g.dataset.last) > 50; }", timeout=90_000)
    shots("cpu graph under load")
    page.locator("[data-tab=activity]").click()
    expect(page.locator("[data-panel=activity]")).to_contain_text("instance.state")
    shots("operations and events")

    # stop, with its confirmation
    page.locator(".page-header button[data-action=stop]").click()
    dialog = page.locator("dialog.confirm")
    expect(dialog).to_be_visible()
    shots("stop confirmation")
    dialog.get_by_role("button", name="Stop").click()
    expect(page.locator(".page-header .state")).to_have_text("stopped", timeout=60_000)
    shots("stopped")
    # delete, with its confirmation: back to the list, without it
    page.locator(".page-header button[data-action=delete]").click()
    page.locator("dialog.confirm").get_by_role("button", name="Delete").click()
    expect(page.locator("[data-page=instances]")).to_be_visible(timeout=60_000)
    expect(page.locator("tr[data-name=web1]")).to_have_count(0, timeout=30_000)
    shots("deleted")
    assert page.errors == []  # type: ignore[attr-defined]


def test_another_projects_instance_is_not_visible(dash: Cloud, page: Page, shots: Shots) -> None:
    dash.cli("launch", "busybox", "secret1", "--memory", "64MiB", "--wait")
    dash.cli("project", "create", "blue")
    bob = dash.json("user", "create", "bob", "--project", "blue")
    assert isinstance(bob, dict)
    log_in(page, dash, bob["token"])
    expect(page.locator(".whoami .project")).to_have_text("blue")
    expect(page.locator("[data-page=instances]")).to_contain_text("No instances")
    expect(page.locator("tr[data-name=secret1]")).to_have_count(0)
    shots("bob sees none")
    page.goto(dash.url + "/#/instances/secret1")
    expect(page.locator("[data-page=instance] .form-error")).to_contain_text("no instance")
    shots("bob cannot open it")
    dash.cli("delete", "secret1", "--force")


PAGES = ("images", "key-pairs", "operations", "nodes", "events", "volumes", "snapshots",
         "networks", "security-groups", "addresses")


def test_every_page_renders_its_list(dash: Cloud, page: Page, shots: Shots) -> None:
    log_in(page, dash, admin_token(dash))
    expect(page.locator("[data-page=instances]")).to_be_visible()
    for name in PAGES:
        page.locator(f"nav a[data-nav={name}]").click()
        root = page.locator(f"[data-page={name}]")
        expect(root).to_be_visible()
        expect(root.locator(".count")).not_to_have_text("loading…")
        expect(root.locator(".form-error")).to_be_hidden()
        shots(name)
    # what the pages show is the API's: the image built for these tests, the default network,
    # the node with its usage, the events of the other tests
    page.locator("nav a[data-nav=images]").click()
    expect(page.locator("[data-page=images] tr[data-name=busybox]")).to_be_visible()
    page.locator("nav a[data-nav=networks]").click()
    expect(page.locator("[data-page=networks] tr[data-name=default]")).to_be_visible()
    page.locator("nav a[data-nav=nodes]").click()
    expect(page.locator("[data-page=nodes] tr[data-name=local]")).to_contain_text("of 200%",
                                                                                timeout=30_000)
    # a key pair made here: its private key is shown once, then it is listed
    page.locator("nav a[data-nav=key-pairs]").click()
    page.get_by_role("button", name="Create key pair").click()
    dialog = page.locator("dialog[data-dialog=create-key-pairs]")
    dialog.locator("[name=name]").fill("laptop")
    dialog.get_by_role("button", name="Create").click()
    expect(page.locator("dialog.modal pre")).to_contain_text("PRIVATE KEY")
    shots("private key shown once")
    page.keyboard.press("Escape")
    expect(page.locator("[data-page=key-pairs] tr[data-name=laptop]")).to_be_visible()
    assert page.errors == []  # type: ignore[attr-defined]


def test_readme_dashboard_block_runs_as_written(dash: Cloud, home: Path) -> None:
    script = blocks("sh", "## Dashboard")[0]
    sh = run_readme(script, dash, home, timeout=60)
    said = f"exit {sh.returncode}\n{sh.stdout}\n{sh.stderr}"
    assert sh.returncode == 0, said
    assert sh.stdout.splitlines() == ["<title>lxcloud</title>", "401"], said
