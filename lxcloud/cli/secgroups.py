"""CLI: lxcloud secgroup … (groups and their rules) and lxcloud instance secgroups … ."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from lxcloud.cli.common import JSON, api_errors, g, new_app, out, print_json

app = new_app(help="Security groups: stateful firewall rules for the instances in them.")
rule_app = new_app(help="A security group's rules.")
app.add_typer(rule_app, name="rule")
instance_app = new_app(help="An instance's settings.")
instance_groups_app = new_app(help="The security groups an instance is in.")
instance_app.add_typer(instance_groups_app, name="secgroups")


def rule_text(r: dict[str, Any]) -> str:
    """One rule as a line: "ingress tcp 22 from 0.0.0.0/0"."""
    ports = ""
    lo, hi = r.get("port_from"), r.get("port_to")
    if r["protocol"] in ("tcp", "udp") and lo is not None:
        ports = "" if (lo, hi) == (0, 65535) else f" {lo}" if lo == hi else f" {lo}-{hi}"
    elif r["protocol"] == "icmp" and lo not in (None, -1):
        ports = f" type {lo}" + (f" code {hi}" if hi not in (None, -1) else "")
    peer = r.get("cidr") or f"group {r.get('source_group_name') or r.get('source_group')}"
    way = "from" if r["direction"] == "ingress" else "to"
    return f"{r['direction']} {r['protocol']}{ports} {way} {peer}"


def _show(grp: dict[str, Any]) -> None:
    out.print(f"{grp['name']} ({grp['id']})" + (f": {grp['description']}"
                                                 if grp.get("description") else ""),
              highlight=False)
    for r in grp["rules"]:
        out.print(f"  {rule_text(r)}", highlight=False)
    if not grp["rules"]:
        out.print("  (no rules: nothing in, nothing out)")
    out.print(f"instances: {', '.join(grp['instances']) or 'none'}", highlight=False)


@app.command("create")
@api_errors
def create(ctx: typer.Context, name: str = typer.Argument(..., help="the group's name"),
           description: str = typer.Option("", "--description", "-d", help="what the group is for"),
           as_json: bool = JSON) -> None:
    """Create a group (it allows all egress and no ingress until rules are added)."""
    grp = g(ctx).client().post("/api/v1/security-groups",
                               json={"name": name, "description": description})
    if as_json:
        print_json(grp)
        return
    out.print(f"created security group {grp['name']} ({grp['id']})", highlight=False)


@app.command("list")
@api_errors
def list_(ctx: typer.Context, as_json: bool = JSON) -> None:
    """List the project's groups."""
    items = g(ctx).client().get("/api/v1/security-groups")
    if as_json:
        print_json(items)
        return
    t = Table("NAME", "ID", "RULES", "INSTANCES", "DESCRIPTION")
    for grp in items:
        t.add_row(grp["name"], grp["id"], str(len(grp["rules"])), str(len(grp["instances"])),
                  grp["description"])
    out.print(t)


@app.command("show")
@api_errors
def show(ctx: typer.Context, group: str = typer.Argument(..., help="name or id"),
         as_json: bool = JSON) -> None:
    """A group's rules and instances."""
    grp = g(ctx).client().get(f"/api/v1/security-groups/{group}")
    if as_json:
        print_json(grp)
        return
    _show(grp)


@app.command("delete")
@api_errors
def delete(ctx: typer.Context, group: str = typer.Argument(..., help="name or id")) -> None:
    """Delete a group (refused while instances are in it, and for `default`)."""
    g(ctx).client().delete(f"/api/v1/security-groups/{group}")
    out.print(f"deleted security group {group}", highlight=False)


def rule_body(direction: str, protocol: str, port: int | None, port_range: str | None,
              cidr: str | None, source_group: str | None, icmp_type: int | None,
              icmp_code: int | None, description: str) -> dict[str, Any]:
    """The REST body of a rule from the command's flags."""
    lo = hi = port
    if port_range:
        a, sep, b = port_range.partition("-")
        try:
            lo, hi = int(a), int(b if sep else a)
        except ValueError:
            raise typer.BadParameter(f"{port_range!r} is not a range like 1000-2000",
                                     param_hint="--port-range") from None
    if icmp_type is not None:
        lo, hi = icmp_type, -1 if icmp_code is None else icmp_code
        protocol = protocol if protocol != "all" else "icmp"
    return {"direction": direction, "protocol": protocol, "port_from": lo, "port_to": hi,
            "cidr": cidr, "source_group": source_group, "description": description}


DIRECTION = typer.Option(..., "--direction", help="ingress | egress")
PROTOCOL = typer.Option("all", "--protocol", "-p", help="tcp | udp | icmp | all")
PORT = typer.Option(None, "--port", help="one port (tcp, udp)")
PORT_RANGE = typer.Option(None, "--port-range", help="ports FROM-TO (tcp, udp)")
CIDR = typer.Option(None, "--cidr", help="the peer's addresses (default: anywhere)")
SOURCE = typer.Option(None, "--source-group", help="the peer: members of this group")
ICMP_TYPE = typer.Option(None, "--icmp-type", help="ICMP type (icmp; default: any)")
ICMP_CODE = typer.Option(None, "--icmp-code", help="ICMP code (with --icmp-type)")
DESCRIPTION = typer.Option("", "--description", help="what the rule is for")


@rule_app.command("add")
@api_errors
def rule_add(ctx: typer.Context, group: str = typer.Argument(..., help="name or id"),
             direction: str = DIRECTION, protocol: str = PROTOCOL, port: int | None = PORT,
             port_range: str | None = PORT_RANGE, cidr: str | None = CIDR,
             source_group: str | None = SOURCE, icmp_type: int | None = ICMP_TYPE,
             icmp_code: int | None = ICMP_CODE, description: str = DESCRIPTION,
             as_json: bool = JSON) -> None:
    """Allow traffic; running instances in the group see it at once."""
    body = rule_body(direction, protocol, port, port_range, cidr, source_group, icmp_type,
                     icmp_code, description)
    grp = g(ctx).client().post(f"/api/v1/security-groups/{group}/rules", json=body)
    if as_json:
        print_json(grp)
        return
    _show(grp)


@rule_app.command("remove")
@api_errors
def rule_remove(ctx: typer.Context, group: str = typer.Argument(..., help="name or id"),
                direction: str = DIRECTION, protocol: str = PROTOCOL, port: int | None = PORT,
                port_range: str | None = PORT_RANGE, cidr: str | None = CIDR,
                source_group: str | None = SOURCE, icmp_type: int | None = ICMP_TYPE,
                icmp_code: int | None = ICMP_CODE, as_json: bool = JSON) -> None:
    """Remove the rule these flags describe."""
    body = rule_body(direction, protocol, port, port_range, cidr, source_group, icmp_type,
                     icmp_code, "")
    grp = g(ctx).client().request("DELETE", f"/api/v1/security-groups/{group}/rules",
                                  json=body)
    if as_json:
        print_json(grp)
        return
    _show(grp)


@instance_groups_app.command("set")
@api_errors
def instance_set(ctx: typer.Context, name: str = typer.Argument(..., help="instance name or id"),
                 groups: list[str] = typer.Argument(..., help="group names or ids"),
                 as_json: bool = JSON) -> None:
    """The instance's groups become these, at once."""
    items = g(ctx).client().request("PUT", f"/api/v1/instances/{name}/security-groups",
                                    json={"groups": groups})
    if as_json:
        print_json(items)
        return
    out.print(f"{name}: {', '.join(i['name'] for i in items)}", highlight=False)


@instance_groups_app.command("list")
@api_errors
def instance_list(ctx: typer.Context, name: str = typer.Argument(..., help="instance name or id"),
                  as_json: bool = JSON) -> None:
    """The groups the instance is in."""
    items = g(ctx).client().get(f"/api/v1/instances/{name}/security-groups")
    if as_json:
        print_json(items)
        return
    for i in items:
        out.print(f"{i['name']} ({i['id']})", highlight=False)
