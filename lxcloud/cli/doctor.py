"""CLI: lxcloud doctor, the host's networking preflight (through GET /api/v1/doctor)."""

from __future__ import annotations

import typer
from rich.table import Table

from lxcloud.cli.common import JSON, api_errors, g, out, print_json

STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def register(app: typer.Typer) -> None:
    @app.command()
    @api_errors
    def doctor(ctx: typer.Context, as_json: bool = JSON) -> None:
        """Check what on the host breaks container networking (forwarding, other firewalls,
        routes, br_netfilter, kernel features, dnsmasq, lxc) and say how to fix each.
        Exit code 1 when a check fails (an admin's command)."""
        report = g(ctx).client().get("/api/v1/doctor")
        if as_json:
            print_json(report)
        else:
            t = Table("STATUS", "CHECK", "WHAT", "FIX")
            for c in report["checks"]:
                t.add_row(c["status"].upper(), c["name"], c["message"], c["fix"],
                          style=STYLE.get(c["status"]) if out.is_terminal else None)
            out.print(t)
            fails = sum(c["status"] == "fail" for c in report["checks"])
            warns = sum(c["status"] == "warn" for c in report["checks"])
            out.print(f"{report['status']}: {fails} failed, {warns} warning(s), "
                      f"{len(report['checks']) - fails - warns} ok")
        if report["status"] == "fail":
            raise typer.Exit(1)
