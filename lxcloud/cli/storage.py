"""CLI: lxcloud pool …, volume … (with volume snapshots) and snapshot … (of instances)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from lxcloud.cli.client import ApiError, Client
from lxcloud.cli.common import JSON, api_errors, g, human_size, new_app, out, print_json, wait_op

pool_app = new_app(help="Storage pools (where instance roots and volumes live).")
volume_app = new_app(help="Volumes: disks of their own that attach to instances.")
volume_snapshot_app = new_app(help="Snapshots of a volume.")
snapshot_app = new_app(help="Snapshots of an instance's root disk.")
volume_app.add_typer(volume_snapshot_app, name="snapshot")


def _size(n: Any) -> str:
    return human_size(n) if isinstance(n, int) else ""


def _kv(rows: list[tuple[str, Any]], width: int = 12) -> None:
    for k, v in rows:
        out.print(f"{k + ':':{width}} {v if v is not None else ''}", highlight=False)


# --- pools
# what `pool show` says a pool's driver can do, from its declared capabilities
CAN = [("quota", "enforce disk limits"), ("quota_visible", "show them inside"),
       ("online_resize", "resize running disks"), ("snapshots", "snapshots"),
       ("cow_snapshots", "copy-on-write snapshots"), ("volumes", "volumes"),
       ("remote", "be seen by every host")]


def _quota(p: dict[str, Any]) -> str:
    if p.get("quota") is None:
        return "unknown"
    return "yes" if p["quota"] else "no"


@pool_app.command("create")
@api_errors
def pool_create(ctx: typer.Context, name: str = typer.Argument(..., help="the pool's name"),
                driver: str = typer.Option(..., "--driver", "-d", help="dir | btrfs | shared"),
                source: str = typer.Option("", "--source",
                                           help="an existing directory (dir, shared) or block "
                                                "device (btrfs)"),
                size: str | None = typer.Option(None, "--size",
                                                help="a loop-backed pool of this size, e.g. 20GiB"),
                as_json: bool = JSON) -> None:
    """Create a pool (admins)."""
    p = g(ctx).client().post("/api/v1/pools", json={"name": name, "driver": driver,
                                                    "source": source, "size": size or 0})
    if as_json:
        print_json(p)
        return
    out.print(f"created pool {p['name']} ({p['driver']}, {_size(p['capacity']) or 'size unknown'}"
              f", quota {_quota(p)})")
    if p.get("quota") is False and p.get("quota_note"):
        out.print(f"note: {p['quota_note']}")


@pool_app.command("list")
@api_errors
def pool_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """List pools with their capacity, use and what is on them."""
    items = g(ctx).client().get("/api/v1/pools")
    if as_json:
        print_json(items)
        return
    t = Table("NAME", "DRIVER", "CAPACITY", "USED", "FREE", "QUOTA", "INSTANCES", "VOLUMES",
              "DEFAULT")
    for p in items:
        t.add_row(p["name"], p["driver"], _size(p["capacity"]), _size(p["used"]), _size(p["free"]),
                  _quota(p), str(p["instances"]), str(p["volumes"]), "yes" if p["default"] else "")
    out.print(t)


@pool_app.command("show")
@api_errors
def pool_show(ctx: typer.Context, name: str = typer.Argument(..., help="the pool's name"),
              as_json: bool = JSON) -> None:
    """Show one pool: capacity, used, free, instances and volumes on it, its quota capability."""
    p = g(ctx).client().get(f"/api/v1/pools/{name}")
    if as_json:
        print_json(p)
        return
    caps = p.get("caps") or {}
    _kv([("name", p["name"]), ("id", p["id"]), ("driver", p["driver"]),
         ("source", p["source"]), ("path", p["path"]), ("default", "yes" if p["default"] else "no"),
         ("capacity", _size(p["capacity"])), ("used", _size(p["used"])),
         ("free", _size(p["free"])), ("quota", _quota(p)), ("quota note", p.get("quota_note")),
         ("can", ", ".join(what for key, what in CAN if caps.get(key)) or "nothing declared"),
         ("instances", p["instances"]), ("volumes", p["volumes"]), ("created", p["created"])])


@pool_app.command("delete")
@api_errors
def pool_delete(ctx: typer.Context, name: str = typer.Argument(..., help="the pool's name")) -> None:
    """Delete a pool (refused while instances or volumes are on it, and for the default one)."""
    g(ctx).client().delete(f"/api/v1/pools/{name}")
    out.print(f"deleted pool {name}")


# --- volumes
def _volume_line(v: dict[str, Any]) -> str:
    return f"{v['name']} ({v['id']}, {_size(v['size'])} on {v['pool']}, {v['state']})"


def _attached(v: dict[str, Any]) -> str:
    return ", ".join(f"{a['instance'] or a['instance_id']}:{a['path']}" for a in v["attachments"])


def _volume_op(c: Client, res: dict[str, Any], title: str) -> dict[str, Any]:
    """Waits on the operation of a volume answer; the volume as it is then."""
    wait_op(c, res["operation"], title)
    vol: dict[str, Any] = c.get(f"/api/v1/volumes/{res['volume']['id']}")
    return vol


def _volume_snapshot(c: Client, ref: str) -> str:
    """The id of a volume snapshot given as its id or as VOLUME/SNAPSHOT."""
    if "/" not in ref:
        return ref
    vol, snap = ref.split("/", 1)
    return _find_snapshot(c, vol, snap)["id"]


def _find_snapshot(c: Client, volume: str, snap: str) -> dict[str, Any]:
    snaps: list[dict[str, Any]] = c.get(f"/api/v1/volumes/{volume}/snapshots")
    for s in snaps:
        if snap in (s["name"], s["id"]):
            return s
    raise ApiError(404, "not_found", f"volume {volume} has no snapshot {snap!r}")


@volume_app.command("create")
@api_errors
def volume_create(ctx: typer.Context, name: str = typer.Argument(..., help="the volume's name"),
                  size: str | None = typer.Option(None, "--size", "-s",
                                                  help="e.g. 1GiB (a snapshot's size when "
                                                       "--from-snapshot is given)"),
                  pool: str | None = typer.Option(None, "--pool", "-p",
                                                  help="the pool (the default pool when omitted)"),
                  shared: bool = typer.Option(False, "--shared",
                                              help="may attach to several instances at once"),
                  from_snapshot: str | None = typer.Option(
                      None, "--from-snapshot", help="holding this snapshot's data: its id, or "
                                                    "VOLUME/SNAPSHOT"),
                  as_json: bool = JSON) -> None:
    """Create a volume with a quota of its own (empty, or a copy of a volume snapshot)."""
    c = g(ctx).client()
    snap_id = _volume_snapshot(c, from_snapshot) if from_snapshot else None
    res = c.post("/api/v1/volumes", json={"name": name, "size": size, "pool": pool,
                                          "shared": shared, "snapshot_id": snap_id})
    vol = _volume_op(c, res, f"creating volume {name}")
    if as_json:
        print_json(vol)
    else:
        out.print(f"created volume {_volume_line(vol)}")


@volume_app.command("list")
@api_errors
def volume_list(ctx: typer.Context, as_json: bool = JSON,
                all_projects: bool = typer.Option(False, "--all-projects",
                                                  help="every project's volumes (admins)")) -> None:
    """List volumes."""
    items = g(ctx).client().get("/api/v1/volumes", params={"all_projects": all_projects})
    if as_json:
        print_json(items)
        return
    t = Table("NAME", "ID", "SIZE", "POOL", "STATE", "SHARED", "ATTACHED TO")
    for v in items:
        t.add_row(v["name"], v["id"], _size(v["size"]), v["pool"], v["state"],
                  "yes" if v["shared"] else "", _attached(v))
    out.print(t)


@volume_app.command("show")
@api_errors
def volume_show(ctx: typer.Context, volume: str = typer.Argument(..., help="volume name or id"),
                as_json: bool = JSON) -> None:
    """Show one volume (with the bytes it holds)."""
    v = g(ctx).client().get(f"/api/v1/volumes/{volume}")
    if as_json:
        print_json(v)
        return
    _kv([("name", v["name"]), ("id", v["id"]), ("state", v["state"]),
         ("reason", v.get("state_reason") or ""), ("size", _size(v["size"])),
         ("used", _size(v.get("used"))), ("pool", v["pool"]),
         ("shared", "yes" if v["shared"] else "no"), ("snapshot", v.get("snapshot_id") or ""),
         ("attached", _attached(v)), ("created", v["created"])])


@volume_app.command("resize")
@api_errors
def volume_resize(ctx: typer.Context, volume: str = typer.Argument(..., help="volume name or id"),
                  size: str = typer.Option(..., "--size", "-s", help="the new size, e.g. 2GiB")
                  ) -> None:
    """Grow or shrink a volume's quota (never below what it holds)."""
    c = g(ctx).client()
    vol = _volume_op(c, c.post(f"/api/v1/volumes/{volume}/resize", json={"size": size}),
                     f"resizing {volume}")
    out.print(f"resized volume {_volume_line(vol)}")


@volume_app.command("delete")
@api_errors
def volume_delete(ctx: typer.Context,
                  volume: str = typer.Argument(..., help="volume name or id")) -> None:
    """Delete a volume (refused while attached)."""
    c = g(ctx).client()
    wait_op(c, c.delete(f"/api/v1/volumes/{volume}")["operation"], f"deleting {volume}")
    out.print(f"deleted volume {volume}")


@volume_app.command("attach")
@api_errors
def volume_attach(ctx: typer.Context, volume: str = typer.Argument(..., help="volume name or id"),
                  instance: str = typer.Argument(..., help="instance name or id"),
                  path: str | None = typer.Option(None, "--path",
                                                  help="where it appears inside "
                                                       "(/media/<volume-id> when omitted)"),
                  as_json: bool = JSON) -> None:
    """Attach a volume to an instance, stopped or running."""
    c = g(ctx).client()
    res = c.post(f"/api/v1/volumes/{volume}/attach", json={"instance": instance, "path": path})
    vol = _volume_op(c, res, f"attaching {volume}")
    if as_json:
        print_json(vol)
        return
    att = next((a for a in vol["attachments"] if instance in (a["instance"], a["instance_id"])),
               vol["attachments"][-1] if vol["attachments"] else None)
    where = f" at {att['path']}" if att else ""
    out.print(f"attached {vol['name']} ({vol['id']}) to {instance}{where}")


@volume_app.command("detach")
@api_errors
def volume_detach(ctx: typer.Context, volume: str = typer.Argument(..., help="volume name or id"),
                  force: bool = typer.Option(False, "--force", "-f",
                                             help="even while a process inside holds it"),
                  instance: str | None = typer.Option(None, "--instance",
                                                      help="which instance (a shared volume "
                                                           "attached to several)")) -> None:
    """Detach a volume (refused while a process inside holds it, unless --force)."""
    c = g(ctx).client()
    res = c.post(f"/api/v1/volumes/{volume}/detach", json={"force": force, "instance": instance})
    vol = _volume_op(c, res, f"detaching {volume}")
    out.print(f"detached {vol['name']} ({vol['id']})")


# --- snapshots of volumes
def _snapshot_line(s: dict[str, Any]) -> str:
    return f"{s['name']} ({s['id']}, {s['state']})"


def _snapshot_table(items: list[dict[str, Any]]) -> None:
    t = Table("NAME", "ID", "STATE", "SIZE", "CREATED", "DESCRIPTION")
    for s in items:
        t.add_row(s["name"], s["id"], s["state"], _size(s["size"]), str(s["created"])[:19],
                  s["description"])
    out.print(t)


def _take_snapshot(ctx: typer.Context, path: str, snap: str | None, description: str,
                   as_json: bool, of: str) -> None:
    """POST a snapshot to `path` (a volume's or an instance's), wait, and say what was made."""
    c = g(ctx).client()
    res = c.post(path, json={"name": snap, "description": description})
    s = _snapshot_op(c, res, f"snapshot of {of.rsplit(' ', 1)[-1]}")
    if as_json:
        print_json(s)
    else:
        out.print(f"created snapshot {_snapshot_line(s)} of {of}")


def _list_snapshots(ctx: typer.Context, path: str, as_json: bool) -> None:
    items = g(ctx).client().get(path)
    if as_json:
        print_json(items)
    else:
        _snapshot_table(items)


def _snapshot_op(c: Client, res: dict[str, Any], title: str) -> dict[str, Any]:
    op = wait_op(c, res["operation"], title)
    sid = (res.get("snapshot") or {}).get("id") or op["result"].get("snapshot_id")
    snap: dict[str, Any] = c.get(f"/api/v1/snapshots/{sid}")
    return snap


@volume_snapshot_app.command("create")
@api_errors
def volume_snapshot_create(ctx: typer.Context,
                           volume: str = typer.Argument(..., help="volume name or id"),
                           snap: str | None = typer.Argument(None, help="the snapshot's name "
                                                                        "(snapN when omitted)"),
                           description: str = typer.Option("", "--description",
                                                           help="a line about it"),
                           as_json: bool = JSON) -> None:
    """Take a snapshot of a volume."""
    _take_snapshot(ctx, f"/api/v1/volumes/{volume}/snapshots", snap, description, as_json,
                   f"volume {volume}")


@volume_snapshot_app.command("list")
@api_errors
def volume_snapshot_list(ctx: typer.Context,
                         volume: str = typer.Argument(..., help="volume name or id"),
                         as_json: bool = JSON) -> None:
    """List a volume's snapshots."""
    _list_snapshots(ctx, f"/api/v1/volumes/{volume}/snapshots", as_json)


@volume_snapshot_app.command("restore")
@api_errors
def volume_snapshot_restore(ctx: typer.Context,
                            volume: str = typer.Argument(..., help="volume name or id"),
                            snap: str = typer.Argument(..., help="snapshot name or id")) -> None:
    """Put a volume back as its snapshot holds it (not while a running instance has it)."""
    c = g(ctx).client()
    s = _find_snapshot(c, volume, snap)
    wait_op(c, c.post(f"/api/v1/snapshots/{s['id']}/restore")["operation"],
            f"restoring {volume}")
    out.print(f"restored volume {volume} to snapshot {s['name']}")


@volume_snapshot_app.command("delete")
@api_errors
def volume_snapshot_delete(ctx: typer.Context,
                           volume: str = typer.Argument(..., help="volume name or id"),
                           snap: str = typer.Argument(..., help="snapshot name or id")) -> None:
    """Delete a volume's snapshot."""
    c = g(ctx).client()
    s = _find_snapshot(c, volume, snap)
    wait_op(c, c.delete(f"/api/v1/snapshots/{s['id']}")["operation"], f"deleting {snap}")
    out.print(f"deleted snapshot {s['name']} of volume {volume}")


# --- snapshots of instances
@snapshot_app.command("create")
@api_errors
def snapshot_create(ctx: typer.Context, name: str = typer.Argument(..., help="instance name or id"),
                    snap: str | None = typer.Argument(None, help="the snapshot's name "
                                                                 "(snapN when omitted)"),
                    description: str = typer.Option("", "--description", help="a line about it"),
                    as_json: bool = JSON) -> None:
    """Take a snapshot of an instance's root (a running one is frozen for the moment)."""
    _take_snapshot(ctx, f"/api/v1/instances/{name}/snapshots", snap, description, as_json, name)


@snapshot_app.command("list")
@api_errors
def snapshot_list(ctx: typer.Context, name: str = typer.Argument(..., help="instance name or id"),
                  as_json: bool = JSON) -> None:
    """List an instance's snapshots."""
    _list_snapshots(ctx, f"/api/v1/instances/{name}/snapshots", as_json)


@snapshot_app.command("restore")
@api_errors
def snapshot_restore(ctx: typer.Context, name: str = typer.Argument(..., help="instance name or id"),
                     snap: str = typer.Argument(..., help="snapshot name or id")) -> None:
    """Put an instance's root back as any of its snapshots holds it (a running one restarts)."""
    c = g(ctx).client()
    res = c.post(f"/api/v1/instances/{name}/snapshots/{snap}/restore")
    wait_op(c, res["operation"], f"restoring {name}")
    i = c.get(f"/api/v1/instances/{res['instance']['id']}")
    out.print(f"restored {i['name']} to snapshot {snap}; it is {i['state']}")


@snapshot_app.command("delete")
@api_errors
def snapshot_delete(ctx: typer.Context, name: str = typer.Argument(..., help="instance name or id"),
                    snap: str = typer.Argument(..., help="snapshot name or id")) -> None:
    """Delete an instance's snapshot."""
    c = g(ctx).client()
    wait_op(c, c.delete(f"/api/v1/instances/{name}/snapshots/{snap}")["operation"],
            f"deleting {snap}")
    out.print(f"deleted snapshot {snap} of {name}")
