"""CLI: instances (launch, list, show, lifecycle, delete, exec, console, logs)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from lxcloud.cli.common import JSON, api_errors, err, g, out, print_json, wait_op
from lxcloud.cli.terminal import strip_terminal
from lxcloud.core.units import format_rate


def _fmt_mem(n: Any) -> str:
    from lxcloud.core.units import format_size

    return format_size(int(n)) if isinstance(n, int) else str(n)


def register(app: typer.Typer) -> None:
    @app.command()
    @api_errors
    def launch(ctx: typer.Context, image: str = typer.Argument(..., help="image name or id"),
               name: str | None = typer.Argument(None, help="instance name (default: its id)"),
               type_: str | None = typer.Option(None, "--type", "-t", help="instance type"),
               memory: str | None = typer.Option(None, help="memory limit, e.g. 256MiB"),
               cpus: float | None = typer.Option(None, help="vCPUs"),
               pids: int | None = typer.Option(None, help="max processes"),
               disk: str | None = typer.Option(None, "--disk",
                                               help="the root disk's limit, e.g. 1GiB"),
               pool: str | None = typer.Option(None, "--pool",
                                               help="the root disk's pool (the default pool "
                                                    "when omitted)"),
               network: list[str] = typer.Option([], "--network",
                                                  help="a network to join, one NIC each, in "
                                                       "order (repeatable; default: the "
                                                       "cloud's default network)"),
               ip: list[str] = typer.Option([], "--ip",
                                            help="a fixed address, for the --network at the "
                                                 "same place (repeatable)"),
               ingress: str | None = typer.Option(None, "--ingress",
                                                  help="bandwidth towards each NIC, e.g. 10Mbit"),
               egress: str | None = typer.Option(None, "--egress",
                                                 help="bandwidth from each NIC, e.g. 10Mbit"),
               user_data: Path | None = typer.Option(None, "--user-data", help="user data file"),
               secgroup: list[str] | None = typer.Option(None, "--secgroup",
                                                         help="a security group (repeatable; "
                                                              "the project's default when "
                                                              "omitted)"),
               wait: bool = typer.Option(False, "--wait", help="wait until it runs"),
               as_json: bool = JSON) -> None:
        """Launch an instance of IMAGE (named NAME, else after its id)."""
        c = g(ctx).client()
        limits = {k: v for k, v in {"memory": memory, "cpus": cpus, "pids": pids,
                                    "disk": disk}.items() if v is not None}
        body: dict[str, Any] = {"image": image, "name": name, "instance_type": type_,
                                "limits": limits or None, "pool": pool}
        body.update({k: v for k, v in (("ingress", ingress), ("egress", egress)) if v is not None})
        if len(ip) > max(len(network), 1):
            raise typer.BadParameter("more --ip than --network: one address per network")
        if network or ip:
            nets: list[str | None] = list(network) or [None]
            body["nics"] = [{"network": n, "ip": ip[i] if i < len(ip) else None}
                            for i, n in enumerate(nets)]
        if secgroup:
            body["security_groups"] = secgroup
        if user_data is not None:
            body["user_data"] = user_data.read_text()
        res = c.post("/api/v1/instances", json=body)
        inst = res["instance"]
        if wait:
            wait_op(c, res["operation"], f"launching {inst['name']}")
            inst = c.get(f"/api/v1/instances/{inst['id']}")
        # an instance launched without a name is named after its id: say it once
        who = inst["id"] if inst["name"] == inst["id"] else f"{inst['name']} ({inst['id']})"
        if as_json:
            print_json(inst)
        elif wait:
            out.print(f"{who} is {inst['state']} at {inst['ipv4']}")
        else:
            out.print(f"launching {who}, operation {res['operation']['id']}")

    @app.command("list")
    @api_errors
    def list_(ctx: typer.Context, as_json: bool = JSON,
              all_: bool = typer.Option(False, "--all", help="include terminated"),
              all_projects: bool = typer.Option(False, "--all-projects",
                                                help="every project's instances (admins)")) -> None:
        """List instances."""
        items = g(ctx).client().get("/api/v1/instances",
                                    params={"all": all_, "all_projects": all_projects})
        if as_json:
            print_json(items)
            return
        t = Table("NAME", "ID", "STATE", "IMAGE", "TYPE", "IPV4", "PROJECT", "NODE")
        for i in items:
            t.add_row(i["name"], i["id"], i["state"], i["image"] or i["image_id"],
                      i["instance_type"], i["ipv4"] or "", i.get("project") or "", i["node"] or "")
        out.print(t)

    @app.command()
    @api_errors
    def show(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
        """Show one instance."""
        i = g(ctx).client().get(f"/api/v1/instances/{name}")
        if as_json:
            print_json(i)
            return
        lim = i.get("limits") or {}
        for k, v in [("name", i["name"]), ("id", i["id"]), ("state", i["state"]),
                     ("reason", i.get("state_reason") or ""), ("image", i["image"]),
                     ("type", i["instance_type"]), ("ipv4", i["ipv4"]), ("node", i["node"]),
                     ("project", i.get("project")),
                     ("cpus", lim.get("cpus")), ("memory", _fmt_mem(lim.get("memory"))),
                     ("pids", lim.get("pids")), ("disk", _fmt_mem(lim.get("disk"))),
                     ("created", i["created"])]:
            out.print(f"{k + ':':10} {v if v is not None else ''}", highlight=False)
        for n in i.get("nics") or []:
            extra = "".join(f", {k} {format_rate(n[k])}" for k in ("ingress", "egress") if n.get(k))
            groups = ", ".join(n.get("security_groups") or [])
            out.print(f"{'nic:':10} {n['name']} on {n['network']}, {n['ipv4'] or 'no address'}, "
                      f"{n['mac']}{extra}" + (f", groups {groups}" if groups else ""),
                      highlight=False)
        for d in i.get("disks") or []:
            what = "root" if d["name"] == "root" else f"volume {d['name']}"
            out.print(f"{'disk:':10} {what} on pool {d['pool']}, {_fmt_mem(d['size'])}"
                      + (f", at {d['path']}" if d["name"] != "root" else ""), highlight=False)
        if i["state"] in ("running", "frozen"):
            from lxcloud.cli.top import usage_lines

            for label, text in usage_lines(i.get("usage")):
                out.print(f"{label + ':':10} {text}", highlight=False)

    def _action(ctx: typer.Context, name: str, action: str, wait: bool, **body: Any) -> None:
        c = g(ctx).client()
        res = c.post(f"/api/v1/instances/{name}/actions/{action}", json=body)
        if wait:
            wait_op(c, res["operation"], f"{action} {res['instance']['name']}")
            i = c.get(f"/api/v1/instances/{res['instance']['id']}")
            out.print(f"{i['name']} is {i['state']}")
        else:
            out.print(f"{action} {res['instance']['name']}: operation {res['operation']['id']}")

    nowait = typer.Option(False, "--no-wait", help="return at once")

    @app.command()
    @api_errors
    def start(ctx: typer.Context, name: str, no_wait: bool = nowait) -> None:
        """Start a stopped instance."""
        _action(ctx, name, "start", not no_wait)

    @app.command()
    @api_errors
    def stop(ctx: typer.Context, name: str,
             force: bool = typer.Option(False, "--force", "-f", help="kill it at once"),
             timeout: float = typer.Option(30, help="seconds before a clean stop turns into a kill"),
             no_wait: bool = nowait) -> None:
        """Stop an instance (cleanly; --force kills it)."""
        _action(ctx, name, "stop", not no_wait, force=force, timeout=timeout)

    @app.command()
    @api_errors
    def restart(ctx: typer.Context, name: str, no_wait: bool = nowait) -> None:
        """Reboot an instance."""
        _action(ctx, name, "reboot", not no_wait)

    @app.command()
    @api_errors
    def suspend(ctx: typer.Context, name: str, no_wait: bool = nowait) -> None:
        """Freeze every process of an instance."""
        _action(ctx, name, "suspend", not no_wait)

    @app.command()
    @api_errors
    def resume(ctx: typer.Context, name: str, no_wait: bool = nowait) -> None:
        """Thaw a suspended instance."""
        _action(ctx, name, "resume", not no_wait)

    @app.command()
    @api_errors
    def delete(ctx: typer.Context, name: str,
               force: bool = typer.Option(False, "--force", "-f",
                                          help="stop it first if it runs"),
               no_wait: bool = nowait) -> None:
        """Delete an instance (--force stops a running one first)."""
        c = g(ctx).client()
        res = c.delete(f"/api/v1/instances/{name}", params={"force": force})
        if not no_wait:
            wait_op(c, res["operation"], f"deleting {res['instance']['name']}")
        out.print(f"deleted {res['instance']['name']}")

    @app.command()
    @api_errors
    def resize(ctx: typer.Context, name: str = typer.Argument(..., help="instance name or id"),
               disk: str = typer.Option(..., "--disk", help="the root disk's new limit, e.g. 2GiB")
               ) -> None:
        """Change an instance's root disk limit (stopped; running where the pool can)."""
        c = g(ctx).client()
        res = c.post(f"/api/v1/instances/{name}/resize", json={"disk": disk})
        wait_op(c, res["operation"], f"resizing {res['instance']['name']}")
        i = c.get(f"/api/v1/instances/{res['instance']['id']}")
        out.print(f"{i['name']}'s disk is now {_fmt_mem(i['limits']['disk'])}")

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    @api_errors
    def exec(ctx: typer.Context, name: str, command: list[str] = typer.Argument(None),
             timeout: float = typer.Option(600, help="seconds before the command is killed")
             ) -> None:
        """Run a command inside: lxcloud exec NAME -- CMD ARGS… (its exit code is passed through)."""
        argv = list(command or []) + list(ctx.args)
        if not argv:
            err.print("error: no command given (lxcloud exec NAME -- CMD …)")
            raise typer.Exit(2)
        stdin = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
        res = g(ctx).client().post(f"/api/v1/instances/{name}/exec",
                                   json={"argv": argv, "stdin": stdin, "timeout": timeout},
                                   timeout=timeout + 30)
        sys.stdout.write(res["stdout"])
        sys.stderr.write(res["stderr"])
        if res.get("timed_out"):
            err.print(f"error: timed out after {timeout}s")
        raise typer.Exit(res["exit_code"])

    @app.command()
    @api_errors
    def logs(ctx: typer.Context, name: str,
             raw: bool = typer.Option(False, "--raw", help="as recorded, terminal control "
                                                          "sequences and CRs included")) -> None:
        """Print the instance's console log (as plain text unless --raw)."""
        text = g(ctx).client().get(f"/api/v1/instances/{name}/console") or ""
        sys.stdout.write(text if raw else strip_terminal(text))

    @app.command()
    @api_errors
    def console(ctx: typer.Context, name: str) -> None:
        """Attach to the instance's console (detach with Ctrl-a q)."""
        from lxcloud.cli.console import attach

        c = g(ctx).client()
        inst = c.get(f"/api/v1/instances/{name}")   # a clear error for a wrong name
        if inst["state"] != "running":
            err.print(f"error: {inst['name']} is {inst['state']}: start it first")
            raise typer.Exit(1)
        raise typer.Exit(attach(c.url, c.token, name))
