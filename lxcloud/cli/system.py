"""CLI: up (the all-in-one cloud), instance types, nodes, operations."""

from __future__ import annotations

import typer
from rich.table import Table

from lxcloud.cli.common import JSON, api_errors, g, out, print_json
from lxcloud.core.units import format_size


def register(app: typer.Typer) -> None:
    @app.command()
    def up(ctx: typer.Context,
           listen: str | None = typer.Option(None, "--listen", help="HOST:PORT (127.0.0.1:8080)"),
           database_url: str | None = typer.Option(
               None, "--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)"),
           network: str | None = typer.Option(None, "--network",
                                              help="CIDR of the default network on first start"),
           verbose: bool = typer.Option(False, "--verbose", "-v",
                                        help="debug logs and every HTTP request")) -> None:
        """Run the all-in-one cloud (controller + local node) in the foreground."""
        from lxcloud.controller import run_all_in_one

        raise typer.Exit(run_all_in_one(g(ctx).data_dir, listen=listen, database_url=database_url,
                                        network=network, verbose=verbose))

    @app.command()
    def purge(ctx: typer.Context,
              yes: bool = typer.Option(False, "--yes", help="do not ask")) -> None:
        """Remove every container, network, rule and file of this cloud (its data dir).
        Refused while its `lxcloud up` runs: stop that first."""
        from lxcloud.controller import purge as do_purge

        if not yes and not typer.confirm("Delete every instance, image and record of this cloud?"):
            raise typer.Exit(1)
        raise typer.Exit(do_purge(g(ctx).data_dir))

    @app.command("types")
    @api_errors
    def types_(ctx: typer.Context, as_json: bool = JSON) -> None:
        """List instance types."""
        items = g(ctx).client().get("/api/v1/instance-types")
        if as_json:
            print_json(items)
            return
        t = Table("NAME", "VCPUS", "MEMORY", "PIDS", "DISK")
        for i in items:
            t.add_row(i["name"] + (" (default)" if i.get("default") else ""), str(i["vcpus"]),
                      format_size(i["memory"]), str(i["pids"]), format_size(i["disk"]))
        out.print(t)

    @app.command()
    @api_errors
    def nodes(ctx: typer.Context, as_json: bool = JSON) -> None:
        """List nodes (hosts)."""
        items = g(ctx).client().get("/api/v1/nodes")
        if as_json:
            print_json(items)
            return
        t = Table("NAME", "ID", "STATUS", "INSTANCES", "ADDRESS")
        for i in items:
            t.add_row(i["name"], i["id"], i["status"], str(i["instances"]), i["address"])
        out.print(t)

    @app.command()
    @api_errors
    def operation(ctx: typer.Context,
                  op_id: str = typer.Argument(None, help="operation id (default: the latest)"),
                  as_json: bool = JSON) -> None:
        """Show an operation (or the latest ones)."""
        c = g(ctx).client()
        items = [c.get(f"/api/v1/operations/{op_id}")] if op_id else c.get("/api/v1/operations")
        if as_json:
            print_json(items[0] if op_id else items)
            return
        t = Table("ID", "KIND", "TARGET", "STATUS", "PROGRESS", "ERROR")
        for o in items:
            t.add_row(o["id"], o["kind"], o["target"], o["status"], f"{o['progress']}%",
                      o.get("error") or "")
        out.print(t)
