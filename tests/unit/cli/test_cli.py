"""The CLI's own text: help for every option (flags not labelled <bool>), one --json, console
logs without terminal control sequences, an unnamed launch said once."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from lxcloud.cli.main import app
from lxcloud.cli.terminal import strip_terminal
from tests.unit.cli.conftest import Run
from tests.unit.fakes import FakeNode


def commands() -> list[tuple[list[str], Any]]:
    """Every command of the CLI with the words that reach it: (["image", "build"], cmd)."""
    found: list[tuple[list[str], Any]] = []

    def walk(path: list[str], cmd: Any) -> None:
        found.append((path, cmd))
        if isinstance(cmd, TyperGroup):
            for name, sub in cmd.commands.items():
                walk([*path, name], sub)
    walk([], typer.main.get_command(app))
    return found


def test_every_command_is_walked() -> None:
    paths = {" ".join(p) for p, _ in commands()}
    assert {"launch", "logs", "purge", "image build", "user credentials", "project list"} <= paths
    jsons = [c for _, c in commands() if any("--json" in p.opts for p in c.params
                                              if isinstance(p, TyperOption))]
    assert len(jsons) >= 12     # the options are seen where they are


@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=lambda p: " ".join(p) or "lxcloud")
def test_help_labels_no_flag_with_a_type_and_every_option_has_help(path: list[str]) -> None:
    cmd = dict((tuple(p), c) for p, c in commands())[tuple(path)]
    res = CliRunner().invoke(app, [*path, "--help"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.output
    options = [p for p in cmd.params if isinstance(p, TyperOption)]
    for param in options:
        assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"
        assert param.opts[0] in res.output
        if "--json" in param.opts:
            line = next(ln for ln in res.output.splitlines() if ln.strip().startswith("--json"))
            assert line.split(None, 1) == ["--json", "print JSON (for scripts) instead of text"]


def test_a_flag_is_shown_as_a_flag() -> None:
    res = CliRunner().invoke(app, ["launch", "--help"])
    assert "╭" not in res.output     # plain help: no rich panels
    line = next(ln for ln in res.output.splitlines() if ln.strip().startswith("--wait"))
    assert line.split(None, 1) == ["--wait", "wait until it runs"]


@pytest.mark.parametrize("raw, plain", [
    (b"\x1b[0;1;32m  OK  \x1b[0m] Started ssh.service\r\n", "  OK  ] Started ssh.service\n"),
    (b"Debian GNU/Linux 12 web\r\r\n\r\nweb login: ", "Debian GNU/Linux 12 web\n\nweb login: "),
    (b"\x1b]0;root@web: ~\x07root@web:~# ", "root@web:~# "),                     # OSC title, BEL
    (b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),                        # OSC to ST
    (b"\x1b[?2004h\x1b[H\x1b[2J\x1b[3Jclear\x1b[?25l", "clear"),                 # modes, cursor
    (b"\x1b(B\x1b)0\x1b=\x1b>\x1b7\x1b8\x1bc\x1bMx", "x"),                      # charset, keypad
    (b"\x1bP1$r0m\x1b\\dcs", "dcs"),                                           # DCS string
    (b"a\tb\x07c\x08d\x00e\x7f", "a\tbcde"),                                   # C0 but \t \n
    (b"50%\r100%\n", "50%\n100%\n"),                                           # lone CR
    ("caf\u00e9 \u00bb\u00b5s\u00ab \u2713\n".encode(), "caf\u00e9 \u00bb\u00b5s\u00ab \u2713\n"),  # text
])
def test_strip_terminal(raw: bytes, plain: str) -> None:
    assert strip_terminal(raw.decode()) == plain


SYSTEMD_LOG = (b"\x1b[0;1;39mWelcome to \x1b[0m\x1b[0;1;31mDebian GNU/Linux 12\x1b[0m!\r\n"
               b"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mgetty.target\x1b[0m.\r\n")


def test_logs_plain_unless_raw(run: Run, image: Any, node: FakeNode,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("launch", "bb", "web", "--wait").exit_code == 0
    monkeypatch.setattr(node, "console_log", lambda iid: SYSTEMD_LOG)
    res = run("logs", "web")
    assert res.exit_code == 0
    assert res.stdout == "Welcome to Debian GNU/Linux 12!\n[  OK  ] Reached target getty.target.\n"
    assert run("logs", "web", "--raw").stdout_bytes == SYSTEMD_LOG


def test_unnamed_launch_says_its_id_once(run: Run, image: Any) -> None:
    res = run("launch", "bb")
    assert res.exit_code == 0, res.output
    iid = res.stdout.split()[1].rstrip(",")
    assert iid.startswith("i-") and res.stdout.count(iid) == 1, res.stdout
    res = run("launch", "bb", "--wait")
    iid = res.stdout.split()[0]
    assert res.stdout.count(iid) == 1 and " is running at " in res.stdout, res.stdout
    named = run("launch", "bb", "app").stdout
    assert named.startswith("launching app (i-"), named
