"""CLI: lxcloud doctor, the host's networking preflight (through GET /api/v1/doctor)."""

from __future__ import annotations

import sys

import typer

from lxcloud.cli.common import JSON, api_errors, g, print_json


def register(app: typer.Typer) -> None:
    @app.command()
    @api_errors
    def doctor(ctx: typer.Context, as_json: bool = JSON) -> None:
        """Check what on the host breaks container networking (forwarding, other firewalls,
        routes, br_netfilter, kernel features, dnsmasq, lxc) and say how to fix each.
        Exit code 1 when a check fails (an admin's command)."""
        from lxcloud.node.doctor import render  # the report's text form, pure

        report = g(ctx).client().get("/api/v1/doctor")
        if as_json:
            print_json(report)
        else:
            sys.stdout.write(render(report))
        if report["status"] == "fail":
            raise typer.Exit(1)
