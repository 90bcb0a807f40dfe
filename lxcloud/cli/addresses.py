"""CLI: lxcloud address … (public addresses and their pools) and port-forward …"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from lxcloud.cli.client import ApiError
from lxcloud.cli.common import JSON, api_errors, g, new_app, out, print_json

address_app = new_app(help="Public addresses: allocated to a project, associated 1:1 with an "
                           "instance.")
pool_app = new_app(help="Pools of public addresses on a host interface (admins).")
forward_app = new_app(help="Port forwards: a public address's port to an instance's port.")
address_app.add_typer(pool_app, name="pool")


def _kv(rows: list[tuple[str, Any]], width: int = 12) -> None:
    for k, v in rows:
        out.print(f"{k + ':':{width}} {v if v is not None else ''}", highlight=False)


def _target(a: dict[str, Any]) -> str:
    if not a["associated"]:
        return ""
    return f"{a['instance'] or a['instance_id']} ({a['nic']} {a['private_ip']})"


# --- pools
@pool_app.command("create")
@api_errors
def pool_create(ctx: typer.Context, name: str = typer.Argument(..., help="the pool's name"),
                interface: str = typer.Option(..., "--interface", "-i",
                                              help="the host interface the addresses live on"),
                range_: str = typer.Option(..., "--range", "-r",
                                           help="A-B (two IPv4 addresses), or a CIDR"),
                cidr: str | None = typer.Option(None, "--cidr",
                                                help="the range's network (the interface's "
                                                     "when omitted)"),
                gateway: str | None = typer.Option(None, "--gateway",
                                                   help="an address of the range never handed "
                                                        "out"),
                as_json: bool = JSON) -> None:
    """Create a pool of public addresses (admins)."""
    p = g(ctx).client().post("/api/v1/address-pools", json={
        "name": name, "interface": interface, "range": range_, "cidr": cidr, "gateway": gateway})
    if as_json:
        print_json(p)
        return
    out.print(f"created address pool {p['name']} ({p['range_start']}-{p['range_end']} on "
              f"{p['interface']}, {p['size']} addresses)")


@pool_app.command("list")
@api_errors
def pool_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """List the address pools, with how many of their addresses are allocated."""
    items = g(ctx).client().get("/api/v1/address-pools")
    if as_json:
        print_json(items)
        return
    t = Table("NAME", "INTERFACE", "RANGE", "CIDR", "SIZE", "ALLOCATED")
    for p in items:
        t.add_row(p["name"], p["interface"], f"{p['range_start']}-{p['range_end']}", p["cidr"],
                  str(p["size"]), str(p["allocated"]))
    out.print(t)


@pool_app.command("delete")
@api_errors
def pool_delete(ctx: typer.Context, name: str = typer.Argument(..., help="the pool's name")) -> None:
    """Delete an address pool (refused while any of its addresses is allocated)."""
    g(ctx).client().delete(f"/api/v1/address-pools/{name}")
    out.print(f"deleted address pool {name}")


# --- addresses
@address_app.command("allocate")
@api_errors
def allocate(ctx: typer.Context,
             name: str | None = typer.Option(None, "--name", "-n", help="a name for it"),
             pool: str | None = typer.Option(None, "--pool", "-p",
                                             help="the pool (any with a free address when "
                                                  "omitted)"),
             address: str | None = typer.Option(None, "--address",
                                                help="this address of a pool"),
             as_json: bool = JSON) -> None:
    """Allocate a public address to the project."""
    a = g(ctx).client().post("/api/v1/addresses", json={"name": name, "pool": pool,
                                                        "address": address})
    if as_json:
        print_json(a)
        return
    out.print(f"allocated {a['address']} ({a['id']}" + (f", {a['name']}" if a["name"] else "")
              + ")")


@address_app.command("list")
@api_errors
def address_list(ctx: typer.Context, as_json: bool = JSON,
                 all_projects: bool = typer.Option(False, "--all-projects",
                                                   help="every project's addresses (admins)")
                 ) -> None:
    """List the project's public addresses and what each is associated with."""
    items = g(ctx).client().get("/api/v1/addresses", params={"all_projects": all_projects})
    if as_json:
        print_json(items)
        return
    t = Table("ADDRESS", "ID", "NAME", "POOL", "ASSOCIATED WITH", "FORWARDS")
    for a in items:
        t.add_row(a["address"], a["id"], a["name"] or "", a["pool"], _target(a),
                  str(a["forwards"] or ""))
    out.print(t)


@address_app.command("show")
@api_errors
def address_show(ctx: typer.Context,
                 ref: str = typer.Argument(..., help="the address, its id or its name"),
                 as_json: bool = JSON) -> None:
    """Show one public address."""
    a = g(ctx).client().get(f"/api/v1/addresses/{ref}")
    if as_json:
        print_json(a)
        return
    _kv([("address", a["address"]), ("id", a["id"]), ("name", a["name"]), ("pool", a["pool"]),
         ("interface", a["interface"]), ("associated", _target(a) or "no"),
         ("association", a["association_id"]), ("forwards", a["forwards"]),
         ("created", a["created"])])


@address_app.command("associate")
@api_errors
def associate(ctx: typer.Context,
              ref: str = typer.Argument(..., help="the address, its id or its name"),
              instance: str = typer.Argument(..., help="instance name or id"),
              private_ip: str | None = typer.Option(None, "--private-ip",
                                                    help="which of its NICs' addresses (the "
                                                         "first NIC's when omitted)"),
              reassociate: bool = typer.Option(False, "--allow-reassociation",
                                               help="take it from another instance"),
              as_json: bool = JSON) -> None:
    """Associate a public address 1:1 with an instance (inbound to it, outbound from it)."""
    a = g(ctx).client().post(f"/api/v1/addresses/{ref}/associate", json={
        "instance": instance, "private_ip": private_ip, "allow_reassociation": reassociate})
    if as_json:
        print_json(a)
        return
    out.print(f"associated {a['address']} with {_target(a)}")


@address_app.command("disassociate")
@api_errors
def disassociate(ctx: typer.Context,
                 ref: str = typer.Argument(..., help="the address, its id or its name")) -> None:
    """Disassociate a public address (it stays allocated)."""
    a = g(ctx).client().post(f"/api/v1/addresses/{ref}/disassociate")
    out.print(f"disassociated {a['address']}")


@address_app.command("release")
@api_errors
def release(ctx: typer.Context,
            ref: str = typer.Argument(..., help="the address, its id or its name")) -> None:
    """Give a public address back to its pool (refused while associated: disassociate first)."""
    g(ctx).client().delete(f"/api/v1/addresses/{ref}")
    out.print(f"released {ref}")


# --- port forwards
@forward_app.command("add")
@api_errors
def forward_add(ctx: typer.Context,
                address: str = typer.Argument(..., help="the public address, its id or name "
                                                        "(admins: or one of the host's own)"),
                port: int = typer.Argument(..., help="the public port"),
                instance: str = typer.Argument(..., help="instance name or id"),
                target_port: int | None = typer.Option(None, "--target-port", "-t",
                                                       help="the instance's port (the same "
                                                            "when omitted)"),
                protocol: str = typer.Option("tcp", "--protocol", help="tcp | udp"),
                private_ip: str | None = typer.Option(None, "--private-ip",
                                                      help="which of its NICs' addresses"),
                as_json: bool = JSON) -> None:
    """Forward a public address's port to an instance's port."""
    f = g(ctx).client().post("/api/v1/port-forwards", json={
        "address": address, "port": port, "instance": instance, "target_port": target_port,
        "protocol": protocol, "private_ip": private_ip})
    if as_json:
        print_json(f)
        return
    out.print(f"forwarding {_forward(f)} ({f['id']})")


def _forward(f: dict[str, Any]) -> str:
    return (f"{f['address']}:{f['port']}/{f['protocol']} -> {f['instance'] or f['instance_id']}"
            f":{f['target_port']}")


@forward_app.command("list")
@api_errors
def forward_list(ctx: typer.Context,
                 address: str | None = typer.Option(None, "--address",
                                                    help="only those of this address"),
                 instance: str | None = typer.Option(None, "--instance",
                                                     help="only those to this instance"),
                 as_json: bool = JSON) -> None:
    """List port forwards."""
    items = g(ctx).client().get("/api/v1/port-forwards",
                                params={k: v for k, v in (("address", address),
                                                          ("instance", instance)) if v})
    if as_json:
        print_json(items)
        return
    t = Table("ID", "ADDRESS", "PORT", "PROTOCOL", "INSTANCE", "PRIVATE IP", "TARGET PORT")
    for f in items:
        t.add_row(f["id"], f["address"], str(f["port"]), f["protocol"],
                  f["instance"] or f["instance_id"], f["private_ip"] or "", str(f["target_port"]))
    out.print(t)


@forward_app.command("remove")
@api_errors
def forward_remove(ctx: typer.Context,
                   forward: str = typer.Argument(..., help="the forward's id, or "
                                                           "ADDRESS:PORT[/PROTOCOL]")) -> None:
    """Remove a port forward."""
    c = g(ctx).client()
    fid = forward
    if not forward.startswith("pf-"):
        addr, _, rest = forward.rpartition(":")
        port, _, proto = rest.partition("/")
        found = [f for f in c.get("/api/v1/port-forwards")
                 if addr in (f["address"], f["address_id"]) and str(f["port"]) == port
                 and f["protocol"] == (proto or "tcp")]
        if not found:
            raise ApiError(404, "not_found", f"no port forward {forward}")
        fid = found[0]["id"]
    c.delete(f"/api/v1/port-forwards/{fid}")
    out.print(f"removed port forward {forward}")
