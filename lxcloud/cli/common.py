"""What every CLI command shares: the client from the global options, output, waiting."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

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
            err.print(f"error: {e.message}", style="red" if err.is_terminal else None)
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
