"""CLI: lxcloud nic … (an instance's network interfaces: hot attach, detach, bandwidth)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from lxcloud.cli.client import Client
from lxcloud.cli.common import JSON, api_errors, g, new_app, out, print_json, wait_op
from lxcloud.core.units import format_rate

nic_app = new_app(help="NICs: an instance's network interfaces, attached and detached while it "
                       "runs or is stopped, and their bandwidth limits.")


def rate(bits: int) -> str:
    """bits/s as the CLI shows a limit ("10Mbit"; "-" for none)."""
    return format_rate(bits) or "-"


def _done(c: Client, res: dict[str, Any], title: str, as_json: bool) -> dict[str, Any]:
    """Waits on the operation of a NIC answer; the instance's NICs as they are then."""
    wait_op(c, res["operation"], title)
    nics: list[dict[str, Any]] = c.get(f"/api/v1/instances/{res['instance']['id']}/nics")
    if as_json:
        print_json(nics)
    return {n["name"]: n for n in nics}


@nic_app.command("list")
@api_errors
def nic_list(ctx: typer.Context, instance: str = typer.Argument(..., help="instance name or id"),
             as_json: bool = JSON) -> None:
    """The NICs of INSTANCE."""
    nics = g(ctx).client().get(f"/api/v1/instances/{instance}/nics")
    if as_json:
        print_json(nics)
        return
    t = Table(box=None)
    for col in ("NAME", "NETWORK", "IPV4", "MAC", "DRIVER", "INGRESS", "EGRESS", "ID"):
        t.add_column(col)
    for n in nics:
        t.add_row(n["name"], n["network"], n["ipv4"] or "-", n["mac"], n["driver"],
                  rate(n["ingress"]), rate(n["egress"]), n["id"])
    out.print(t)


@nic_app.command("attach")
@api_errors
def nic_attach(ctx: typer.Context, instance: str = typer.Argument(..., help="instance name or id"),
               network: str = typer.Option(..., "--network", help="the network it joins"),
               ip: str | None = typer.Option(None, "--ip",
                                             help="a fixed address (default: the next free one)"),
               no_ip: bool = typer.Option(False, "--no-ip",
                                          help="no address: it comes up unconfigured"),
               as_json: bool = JSON) -> None:
    """A new NIC on NETWORK for INSTANCE (running: at once; stopped: at its next start)."""
    c = g(ctx).client()
    res = c.post(f"/api/v1/instances/{instance}/nics",
                 json={"network": network, "ip": ip, "no_ip": no_ip})
    name = res["nic"]["name"]
    nic = _done(c, res, f"attaching {name} to {instance}", as_json).get(name)
    if not as_json and nic is not None:
        out.print(f"{instance}: {name} on {nic['network']} at {nic['ipv4'] or 'no address'} "
                  f"({nic['mac']})")


@nic_app.command("detach")
@api_errors
def nic_detach(ctx: typer.Context, instance: str = typer.Argument(..., help="instance name or id"),
               nic: str = typer.Argument(..., help="the NIC: eth1, or its eni- id")) -> None:
    """Remove NIC from INSTANCE (never its primary interface, eth0)."""
    c = g(ctx).client()
    res = c.delete(f"/api/v1/instances/{instance}/nics/{nic}")
    _done(c, res, f"detaching {nic} from {instance}", False)
    out.print(f"{instance}: {nic} detached")


@nic_app.command("set")
@api_errors
def nic_set(ctx: typer.Context, instance: str = typer.Argument(..., help="instance name or id"),
            nic: str = typer.Argument(..., help="the NIC: eth0, eth1 …"),
            ingress: str | None = typer.Option(None, "--ingress",
                                               help="towards the instance, e.g. 10Mbit (0: none)"),
            egress: str | None = typer.Option(None, "--egress",
                                              help="from the instance, e.g. 10Mbit (0: none)"),
            as_json: bool = JSON) -> None:
    """Change the bandwidth limits of NIC (at once on a running instance)."""
    c = g(ctx).client()
    res = c.patch(f"/api/v1/instances/{instance}/nics/{nic}",
                  json={"ingress": ingress, "egress": egress})
    n = _done(c, res, f"limiting {nic} of {instance}", as_json).get(nic)
    if not as_json and n is not None:
        out.print(f"{instance}: {nic} ingress {rate(n['ingress'])}, egress {rate(n['egress'])}")
