"""What every CLI command shares: the client from the global options, output, waiting."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from lxcloud.cli.client import ApiError, Client, discover

# scripts reading a table get whole ids, not ones cut to 80 columns
# markup off: names, messages and aws profile snippets ("[profile x]") are printed as they are
out = (Console(markup=False, highlight=False) if sys.stdout.isatty()
       else Console(width=250, markup=False, highlight=False))
err = Console(stderr=True, markup=False, highlight=False)
F = TypeVar("F", bound=Callable[..., Any])

# The one --json of every command that prints something
JSON = typer.Option(False, "--json", help="print JSON (for scripts) instead of text")


def new_app(**kw: Any) -> typer.Typer:
    """A Typer for the CLI or one of its command groups, with plain help.

    Typer 0.29's rich help panel labels every option with its type, flags too (`--wait <bool>`):
    `rich_utils._print_options_panel` shows `display_type_rich()` for each option, while Typer's
    plain formatter (`TyperOption.get_help_record`) leaves it out for flags. Plain help also
    reads better in a pipe."""
    kw.setdefault("no_args_is_help", True)
    return typer.Typer(rich_markup_mode=None, add_completion=False, **kw)


@dataclass
class Globals:
    data_dir: str | None = None
    url: str | None = None
    token: str | None = None
    _client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            url, token = discover(self.data_dir, self.url, self.token)
            self._client = Client(url, token)
        return self._client


def g(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    if not isinstance(obj, Globals):
        obj = Globals()
        ctx.find_root().obj = obj
    return obj


def api_errors(fn: F) -> F:
    """API errors become one line on stderr and exit code 1 (never a traceback)."""
    @wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except ApiError as e:
            # one line, never wrapped: scripts and tests read it whole
            err.print(f"error: {e.message}", style="red" if err.is_terminal else None,
                      soft_wrap=True)
            raise typer.Exit(1) from None
    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def wait_op(client: Client, op: dict[str, Any], title: str, timeout: float = 900) -> dict[str, Any]:
    """Waits on an operation with a progress bar (plain lines when not on a terminal)."""
    if not err.is_terminal:
        last = [""]

        def plain(o: dict[str, Any]) -> None:
            msg = o.get("message") or ""
            if msg and msg != last[0] and o["status"] == "running":
                err.print(f"{title}: {o['progress']}% {msg}", highlight=False)
                last[0] = msg
        res = client.wait(op["id"], timeout, plain)
    else:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TimeElapsedColumn(), TextColumn("{task.fields[msg]}"), console=err,
                      transient=True) as bar:
            task = bar.add_task(title, total=100, msg="")

            def fancy(o: dict[str, Any]) -> None:
                bar.update(task, completed=o.get("progress", 0), msg=(o.get("message") or "")[:60])
            res = client.wait(op["id"], timeout, fancy)
    if res["status"] == "failure":
        raise ApiError(500, res.get("error_code") or "failure", res.get("error") or "operation failed")
    if res["status"] != "success":
        raise ApiError(0, "timeout", f"operation {res['id']} still {res['status']} after {timeout}s")
    return res


class Transfer:
    """The progress of a download or an upload: a bar on a terminal, else a plain line at each
    tenth (or, of a length not known, a line at the end)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.total: int | None = None
        self.done = 0
        self._tenth = 0
        self._bar: Progress | None = None
        self._task: Any = None
        self._started = False

    def start(self, total: int | None) -> None:
        self.total, self._started = total, True
        if err.is_terminal:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 DownloadColumn(binary_units=True), TransferSpeedColumn(),
                                 TimeElapsedColumn(), console=err, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=total)

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
        elif self.total:
            tenth = min(10, self.done * 10 // self.total)
            if tenth > self._tenth:
                self._tenth = tenth
                err.print(f"{self.title}: {tenth * 10}% ({_size(self.done)} of "
                          f"{_size(self.total)})")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._started and not self.total:
            err.print(f"{self.title}: {_size(self.done)}")


@contextmanager
def transfer(title: str, total: int | None = None) -> Iterator[Transfer]:
    """A Transfer shown while the block runs (started at once when `total` is given)."""
    t = Transfer(title)
    if total is not None:
        t.start(total)
    try:
        yield t
    finally:
        t.close()


def _size(n: int) -> str:
    return human_size(n)


def human_size(n: int) -> str:
    """A size for people: whole in its largest binary unit where it is (64MiB), else to a
    tenth of it (49.9GiB), never 51965044KiB."""
    for unit, mult in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= mult:
            v = n / mult
            return f"{v:.0f}{unit}" if n % mult == 0 else f"{v:.1f}{unit}"
    return f"{n}B"
