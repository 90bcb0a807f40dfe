"""CLI: lxcloud top (a live table of the instances' usage) and lxcloud metrics NAME, over the
`usage` of GET /api/v1/instances and GET /api/v1/instances/{id}/metrics."""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from typing import Any

import typer

from lxcloud.cli.common import JSON, api_errors, g, human_size, print_json

SORTS = {"cpu": lambda u: -(u or {}).get("cpu_percent", 0),
         "mem": lambda u: -(u or {}).get("memory_bytes", 0),
         "net": lambda u: -net_rate(u),
         "name": None}


def net_rate(u: dict[str, Any] | None) -> float:
    """bits/s in and out over every NIC."""
    if not u:
        return 0.0
    return float(sum((n.get("rx_bps") or 0) + (n.get("tx_bps") or 0)
                     for n in (u.get("nics") or {}).values()))


def bits(n: float) -> str:
    for unit, mult in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("Kbit/s", 1e3)):
        if n >= mult:
            return f"{n / mult:.1f}{unit}"
    return f"{n:.0f}bit/s"


def usage_lines(u: dict[str, Any] | None) -> list[tuple[str, str]]:
    """`show`'s usage rows: (label, text)."""
    if not u:
        return [("usage", "not sampled yet (running instances are, every 10 s)")]
    mem = human_size(u["memory_bytes"]) + (f" of {human_size(u['memory_limit_bytes'])}"
                                           if u.get("memory_limit_bytes") else "")
    rows = [("cpu use", f"{u['cpu_percent']:.1f}% (100% = one CPU), "
                        f"{u['cpu_limit_percent']:.1f}% of its limit"),
            ("mem use", mem + (f", swap {human_size(u['swap_bytes'])}" if u.get("swap_bytes")
                               else "") + (f", {u['oom_kills']} OOM kill(s)"
                                           if u.get("oom_kills") else "")),
            ("pids", f"{u['pids']}" + (f" of {u['pids_limit']}" if u.get("pids_limit") else ""))]
    if u.get("disk_bytes") is not None:
        rows.append(("disk use", human_size(u["disk_bytes"]) + (
            f" of {human_size(u['disk_limit_bytes'])}" if u.get("disk_limit_bytes") else "")))
    for name, n in (u.get("nics") or {}).items():
        rows.append((f"{name} rate", f"in {bits(n['rx_bps'])}, out {bits(n['tx_bps'])} "
                                     f"({human_size(n['rx_bytes'])} in, "
                                     f"{human_size(n['tx_bytes'])} out, "
                                     f"{n['rx_dropped'] + n['tx_dropped']} dropped)"))
    return rows


def table(items: list[dict[str, Any]], sort: str, width: int = 100) -> str:
    key = SORTS[sort]
    rows = sorted(items, key=lambda i: i["name"])
    if key is not None:
        rows = sorted(rows, key=lambda i: key(i.get("usage")))
    head = f"{'INSTANCE':<24} {'STATE':<10} {'CPU%':>6} {'MEMORY':>10} {'LIMIT':>8} " \
           f"{'PIDS':>5} {'NET IN':>11} {'NET OUT':>11}"
    lines = [head[:width]]
    for i in rows:
        u = i.get("usage")
        if u:
            rx = sum(n["rx_bps"] for n in u["nics"].values())
            tx = sum(n["tx_bps"] for n in u["nics"].values())
            lim = human_size(u["memory_limit_bytes"]) if u.get("memory_limit_bytes") else "-"
            cells = (f"{u['cpu_percent']:>6.1f} {human_size(u['memory_bytes']):>10} {lim:>8} "
                     f"{u['pids']:>5} {bits(rx):>11} {bits(tx):>11}")
        else:
            cells = f"{'-':>6} {'-':>10} {'-':>8} {'-':>5} {'-':>11} {'-':>11}"
        lines.append(f"{i['name'][:24]:<24} {i['state']:<10} {cells}"[:width])
    return "\n".join(lines) + "\n"


def register(app: typer.Typer) -> None:
    @app.command()
    @api_errors
    def top(ctx: typer.Context,
            sort: str = typer.Option("cpu", "--sort", help="cpu, mem, net or name"),
            interval: float = typer.Option(2.0, "--interval", help="seconds between refreshes"),
            once: bool = typer.Option(False, "--once", help="print one table and exit "
                                      "(what it does without a terminal)"),
            all_projects: bool = typer.Option(False, "--all-projects",
                                              help="every project's instances (admins)")) -> None:
        """A live table of the instances' usage, refreshed in place like top: state, CPU %
        (100 = one CPU), memory, processes, network rates. q or Ctrl-C quits."""
        if sort not in SORTS:
            raise typer.BadParameter(f"--sort must be one of {', '.join(SORTS)}")
        if interval <= 0:
            raise typer.BadParameter("--interval must be positive")
        c = g(ctx).client()

        def fetch() -> list[dict[str, Any]]:
            return [i for i in c.get("/api/v1/instances", params={"all_projects": all_projects})
                    if i["state"] != "terminated"]
        if once or not sys.stdout.isatty():
            sys.stdout.write(table(fetch(), sort))
            return
        fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        saved = termios.tcgetattr(fd) if fd is not None else None
        try:
            if fd is not None:
                tty.setcbreak(fd)
            sys.stdout.write("\x1b[?25l")          # no cursor while it redraws
            while True:
                cols, rows = os.get_terminal_size()
                items = fetch()
                stamp = time.strftime("%H:%M:%S")
                body = table(items, sort, cols).splitlines()[:max(1, rows - 2)]
                sys.stdout.write("\x1b[H\x1b[2J" + f"lxcloud top  {stamp}  {len(items)} "
                                 f"instance(s), sorted by {sort}  (q quits)\n\n"
                                 + "\n".join(body) + "\n")
                sys.stdout.flush()
                if fd is None:
                    time.sleep(interval)
                    continue
                ready, _, _ = select.select([fd], [], [], interval)
                if ready and os.read(fd, 1) in (b"q", b"Q"):
                    break
        except KeyboardInterrupt:
            pass
        finally:
            sys.stdout.write("\x1b[?25h\n")
            if fd is not None and saved is not None:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    @app.command()
    @api_errors
    def metrics(ctx: typer.Context, name: str,
                since: float | None = typer.Option(None, "--since", help="unix seconds (default: "
                                                   "the last hour)"),
                as_json: bool = JSON) -> None:
        """An instance's usage now and its history (10 s samples for an hour, then minutes)."""
        params = {"since": since} if since is not None else {}
        m = g(ctx).client().get(f"/api/v1/instances/{name}/metrics", params=params)
        if as_json:
            print_json(m)
            return
        for label, text in usage_lines(m["current"]):
            print(f"{label + ':':10} {text}")
        print(f"{'history:':10} {len(m['samples'])} sample(s) every {m['interval']:g} s")
        for s in m["samples"][-10:]:
            print(f"  {time.strftime('%H:%M:%S', time.localtime(s['time']))}  cpu "
                  f"{s['cpu_percent']:6.1f}%  mem {human_size(s['memory_bytes']):>9}")
