"""CLI: lxcloud copy, export and import of whole instances."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

import typer

from lxcloud.cli.client import ApiError
from lxcloud.cli.common import JSON, api_errors, g, human_size, out, print_json, transfer, wait_op


def _who(i: dict[str, Any]) -> str:
    return i["id"] if i["name"] == i["id"] else f"{i['name']} ({i['id']})"


def register(app: typer.Typer) -> None:
    @app.command()
    @api_errors
    def copy(ctx: typer.Context, src: str = typer.Argument(..., help="instance name or id"),
             new: str | None = typer.Argument(None, help="the copy's name (its id when omitted)"),
             snapshot: str | None = typer.Option(None, "--snapshot",
                                                 help="copy this snapshot of it, not its root now"),
             start: bool = typer.Option(False, "--start", help="start the copy"),
             as_json: bool = JSON) -> None:
        """Clone an instance with a new identity (name, address, MAC, machine-id, ssh host keys)."""
        c = g(ctx).client()
        res = c.post(f"/api/v1/instances/{src}/copy",
                     json={"name": new, "snapshot": snapshot, "start": start})
        wait_op(c, res["operation"], f"copying {src}")
        i = c.get(f"/api/v1/instances/{res['instance']['id']}")
        if as_json:
            print_json(i)
        else:
            out.print(f"copied {src} to {_who(i)}, {i['state']} at {i['ipv4']}")

    @app.command()
    @api_errors
    def export(ctx: typer.Context, name: str = typer.Argument(..., help="instance name or id"),
               file: Path = typer.Argument(..., dir_okay=False, help="the archive to write")
               ) -> None:
        """Save a whole instance (root, snapshots, config) as one archive FILE."""
        if not file.absolute().parent.is_dir():
            raise ApiError(0, "invalid_input", f"no directory {file.absolute().parent} to write "
                           f"{file.name} in")
        c = g(ctx).client()
        op = wait_op(c, c.post(f"/api/v1/instances/{name}/export")["operation"],
                     f"exporting {name}")
        xid = op["result"]["export_id"]
        try:
            with transfer(f"downloading {file.name}") as t:
                n = c.download(f"/api/v1/exports/{xid}", file, on_start=t.start,
                               on_chunk=t.advance)
        finally:     # the cloud keeps no copy once it is ours (or failed)
            with suppress(ApiError):
                c.delete(f"/api/v1/exports/{xid}")
        out.print(f"exported {name} to {file} ({human_size(n)})")

    @app.command("import")
    @api_errors
    def import_(ctx: typer.Context,
                file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                            help="an archive made by `lxcloud export`"),
                name: str | None = typer.Option(None, "--name", "-n",
                                                help="the instance's name (default: the "
                                                     "exported one's)"),
                as_json: bool = JSON) -> None:
        """Make a stopped instance, with its snapshots, from an exported archive."""
        c = g(ctx).client()
        size = file.stat().st_size
        with transfer(f"uploading {file.name}", size) as t:
            res = c.upload("/api/v1/instances/import", file, {"name": name} if name else {},
                           on_chunk=t.advance, content_type="application/x-tar")
        op = wait_op(c, res["operation"], f"importing {file.name}")
        i = c.get(f"/api/v1/instances/{res['instance']['id']}")
        if as_json:
            print_json(i)
        else:
            snaps = len(op["result"].get("snapshots") or [])
            out.print(f"imported {_who(i)}, {i['state']}, with {snaps} snapshot(s)")
