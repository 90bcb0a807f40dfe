"""CLI: lxcloud events — what happened, or (--follow) what happens, through GET /api/v1/events."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from lxcloud.cli.common import JSON, api_errors, g, print_json


def line(e: dict[str, Any]) -> str:
    t = e["time"].replace("T", " ")[:19]
    who = e.get("instance_name") or e.get("instance") or e.get("operation") or "-"
    return f"{e['id']:>6}  {t}  {e['type']:<20} {who:<18} {e.get('message', '')}"


def register(app: typer.Typer) -> None:
    @app.command()
    @api_errors
    def events(ctx: typer.Context,
               follow: bool = typer.Option(False, "--follow", "-f",
                                           help="keep printing events as they happen (Ctrl-C ends)"),
               instance: str | None = typer.Option(None, "--instance", help="an instance's name or id"),
               type: str | None = typer.Option(None, "--type",
                                               help="an event type or a prefix (instance.)"),
               project: str | None = typer.Option(None, "--project", help="a project (admins)"),
               since: int | None = typer.Option(None, "--since", help="only events after this id"),
               limit: int = typer.Option(100, "--limit", help="how many (without --follow)"),
               as_json: bool = JSON) -> None:
        """The cloud's events: lifecycle changes, operations, OOM kills, limits hit, the
        reconciler's corrections. Your project's only (admins: every project's)."""
        params: dict[str, Any] = {k: v for k, v in (("instance", instance), ("type", type),
                                                     ("project", project)) if v is not None}
        client = g(ctx).client()
        if not follow:
            got = client.get("/api/v1/events", params={**params, "limit": limit,
                                                       **({"since": since} if since is not None
                                                          else {})})
            if as_json:
                print_json(got)
            else:
                for e in got:
                    print(line(e))
            return
        try:
            for e in client.events(params, last_id=since):
                sys.stdout.write((json.dumps(e) if as_json else line(e)) + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
