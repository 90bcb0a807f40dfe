"""CLI: lxcloud network … (a project's networks, and the shared ones)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from lxcloud.cli.common import JSON, api_errors, g, new_app, out, print_json

network_app = new_app(help="Networks: subnets instances join (NAT, routed, isolated, macvlan).")


def _mode(nat: bool, routed: bool, isolated: bool) -> str | None:
    chosen = [m for m, on in (("nat", nat), ("routed", routed), ("isolated", isolated)) if on]
    if len(chosen) > 1:
        raise typer.BadParameter("choose one of --nat, --routed, --isolated")
    return chosen[0] if chosen else None


def _kv(rows: list[tuple[str, Any]], width: int = 12) -> None:
    for k, v in rows:
        out.print(f"{k + ':':{width}} {v if v is not None else ''}", highlight=False)


@network_app.command("create")
@api_errors
def network_create(
        ctx: typer.Context, name: str = typer.Argument(..., help="the network's name"),
        subnet: str = typer.Option(..., "--subnet", help="its IPv4 subnet, e.g. 10.20.0.0/24"),
        nat: bool = typer.Option(False, "--nat", help="egress NAT through the host (the default)"),
        routed: bool = typer.Option(False, "--routed", help="routed without NAT"),
        isolated: bool = typer.Option(False, "--isolated", help="reaches nothing outside"),
        dns_domain: str = typer.Option("", "--dns-domain",
                                       help="instances resolve as NAME.DOMAIN (default lxcloud)"),
        gateway: str | None = typer.Option(None, "--gateway",
                                           help="the host's address on it (default: the first)"),
        dhcp_range: str | None = typer.Option(None, "--dhcp-range",
                                              help="A-B: the addresses instances get"),
        driver: str = typer.Option("bridge", "--driver", help="bridge | macvlan"),
        parent: str = typer.Option("", "--parent",
                                   help="macvlan: the host interface whose segment it joins"),
        mode: str = typer.Option("", "--mode", help="macvlan: private | bridge | vepa"),
        shared: bool = typer.Option(False, "--shared",
                                    help="admins: every project may use it"),
        allow_host: list[str] = typer.Option([], "--allow-host",
                                             help="tcp/PORT or udp/PORT instances may reach on "
                                                  "the host (repeatable)"),
        as_json: bool = JSON) -> None:
    """Create a network of your project."""
    body = {"name": name, "subnet": subnet, "mode": _mode(nat, routed, isolated) or "nat",
            "dns_domain": dns_domain, "gateway": gateway, "dhcp_range": dhcp_range,
            "driver": driver, "parent": parent, "macvlan_mode": mode, "shared": shared,
            "host_ports": allow_host}
    n = g(ctx).client().post("/api/v1/networks", json=body)
    if as_json:
        print_json(n)
        return
    how = n["mode"] if n["driver"] == "bridge" else f"macvlan {n['macvlan_mode']} on {n['parent']}"
    out.print(f"created network {n['name']} ({n['subnet']}, {how}, gateway {n['gateway']})")


@network_app.command("list")
@api_errors
def network_list(ctx: typer.Context, as_json: bool = JSON,
                 all_projects: bool = typer.Option(False, "--all-projects",
                                                   help="every project's networks (admins)")
                 ) -> None:
    """List the networks you may use."""
    items = g(ctx).client().get("/api/v1/networks", params={"all_projects": all_projects})
    if as_json:
        print_json(items)
        return
    t = Table("NAME", "ID", "SUBNET", "GATEWAY", "MODE", "DRIVER", "DOMAIN", "PROJECT")
    for n in items:
        t.add_row(n["name"], n["id"], n["subnet"], n["gateway"], n["mode"], n["driver"],
                  n["dns_domain"] or "lxcloud", n["project"] or ("shared" if n["shared"] else ""))
    out.print(t)


@network_app.command("show")
@api_errors
def network_show(ctx: typer.Context, name: str = typer.Argument(..., help="name or id"),
                 as_json: bool = JSON) -> None:
    """Show one network and the instances on it."""
    n = g(ctx).client().get(f"/api/v1/networks/{name}")
    if as_json:
        print_json(n)
        return
    rows: list[tuple[str, Any]] = [
        ("name", n["name"]), ("id", n["id"]), ("subnet", n["subnet"]), ("gateway", n["gateway"]),
        ("mode", n["mode"]), ("driver", n["driver"])]
    if n["driver"] == "macvlan":
        rows += [("parent", n["parent"]), ("macvlan", n["macvlan_mode"])]
    else:
        rows += [("bridge", n["bridge"])]
    rows += [("domain", n["dns_domain"] or "lxcloud"), ("dhcp range", n["dhcp_range"] or "all"),
             ("host ports", ", ".join(n["host_ports"]) or "DHCP, DNS, metadata only"),
             ("project", n["project"] or ("shared" if n["shared"] else "")),
             ("instances", ", ".join(n["instances"] or []) or "none")]
    _kv(rows)


@network_app.command("set")
@api_errors
def network_set(
        ctx: typer.Context, name: str = typer.Argument(..., help="name or id"),
        nat: bool = typer.Option(False, "--nat", help="egress NAT through the host"),
        routed: bool = typer.Option(False, "--routed", help="routed without NAT"),
        isolated: bool = typer.Option(False, "--isolated", help="reaches nothing outside"),
        dns_domain: str | None = typer.Option(None, "--dns-domain", help="its DNS domain"),
        dhcp_range: str | None = typer.Option(None, "--dhcp-range", help='A-B ("" clears it)'),
        allow_host: list[str] | None = typer.Option(None, "--allow-host",
                                                    help="tcp/PORT or udp/PORT (repeatable; "
                                                         "replaces the list)"),
        as_json: bool = JSON) -> None:
    """Change a network: its mode, domain, DHCP range or allowed host ports (applied at once)."""
    body: dict[str, Any] = {"mode": _mode(nat, routed, isolated), "dns_domain": dns_domain,
                            "dhcp_range": dhcp_range, "host_ports": allow_host}
    n = g(ctx).client().patch(f"/api/v1/networks/{name}",
                              json={k: v for k, v in body.items() if v is not None})
    if as_json:
        print_json(n)
        return
    out.print(f"network {n['name']}: {n['mode']}, domain {n['dns_domain'] or 'lxcloud'}")


@network_app.command("delete")
@api_errors
def network_delete(ctx: typer.Context, name: str = typer.Argument(..., help="name or id")) -> None:
    """Delete a network (refused while instances use it)."""
    g(ctx).client().delete(f"/api/v1/networks/{name}")
    out.print(f"deleted network {name}")
