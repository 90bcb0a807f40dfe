"""CLI: lxcloud image import|build|list|show|delete."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from lxcloud.cli.common import JSON, api_errors, g, new_app, out, print_json, wait_op
from lxcloud.core.units import format_size

app = new_app(help="The template library.")


@app.command("import")
@api_errors
def import_(ctx: typer.Context,
            file: Path = typer.Argument(..., exists=True, dir_okay=False, help="the tarball"),
            name: str = typer.Option(..., "--name", "-n", help="the image's name"),
            os_name: str | None = typer.Option(None, "--os", help="OS (default: read from it)"),
            release: str | None = typer.Option(None, "--release",
                                               help="release (default: read from it)"),
            arch: str | None = typer.Option(None, "--arch",
                                            help="architecture (default: read from it)"),
            min_memory: str | None = typer.Option(
                None, "--min-memory", help="least memory it boots in (default: what its init needs)"),
            as_json: bool = JSON) -> None:
    """Import a root filesystem tarball (.tar, .tar.gz, .tar.xz, .tar.zst)."""
    params = {k: v for k, v in {"name": name, "os": os_name, "release": release,
                                "architecture": arch, "min_memory": min_memory}.items() if v}
    img = g(ctx).client().upload("/api/v1/images", file, params)
    if as_json:
        print_json(img)
    else:
        out.print(f"imported {img['name']} ({img['id']}, {format_size(img['size'])}, sha256 "
                  f"{img['sha256'][:12]}…)")


@app.command()
@api_errors
def build(ctx: typer.Context, builder: str = typer.Argument(..., help="busybox | debian"),
          name: str | None = typer.Option(None, "--name", "-n",
                                          help="the image's name (default: the builder's)"),
          release: str = typer.Option("bookworm", "--release", help="Debian release"),
          arch: str = typer.Option("amd64", "--arch", help="amd64 | i386"),
          cloud_init: bool = typer.Option(False, "--cloud-init", help="include cloud-init"),
          as_json: bool = JSON) -> None:
    """Build an image offline-capably (busybox from busybox-static; debian with debootstrap)."""
    c = g(ctx).client()
    op = c.post("/api/v1/images/build", json={"builder": builder, "name": name, "release": release,
                                              "arch": arch, "cloud_init": cloud_init})
    res = wait_op(c, op, f"building {builder}", timeout=3600)
    img = c.get(f"/api/v1/images/{res['result']['image_id']}")
    if as_json:
        print_json(img)
    else:
        out.print(f"built {img['name']} ({img['id']}, {format_size(img['size'])})")


@app.command("create-from")
@api_errors
def create_from(ctx: typer.Context,
                instance: str = typer.Argument(..., help="instance name or id"),
                name: str = typer.Option(..., "--name", "-n", help="the new image's name"),
                snapshot: str | None = typer.Option(None, "--snapshot",
                                                    help="from this snapshot of it"),
                description: str | None = typer.Option(None, "--description",
                                                       help="a line about it"),
                as_json: bool = JSON) -> None:
    """Publish an instance (stopped, running through a snapshot, or one of its snapshots) as a
    template that `launch` uses like any other."""
    c = g(ctx).client()
    op = c.post("/api/v1/images/from-instance", json={"instance": instance, "name": name,
                                                      "snapshot": snapshot,
                                                      "description": description})
    res = wait_op(c, op["operation"], f"image of {instance}")
    img = c.get(f"/api/v1/images/{res['result']['image_id']}")
    if as_json:
        print_json(img)
    else:
        out.print(f"created image {img['name']} ({img['id']}, {format_size(img['size'])}) "
                  f"from {instance}")


@app.command("list")
@api_errors
def list_(ctx: typer.Context, as_json: bool = JSON) -> None:
    """List images."""
    items = g(ctx).client().get("/api/v1/images")
    if as_json:
        print_json(items)
        return
    t = Table("NAME", "ID", "OS", "RELEASE", "ARCH", "SIZE", "CREATED")
    for i in items:
        t.add_row(i["name"], i["id"], i["os"], i["release"], i["architecture"],
                  format_size(i["size"]), str(i["created"])[:19])
    out.print(t)


@app.command()
@api_errors
def show(ctx: typer.Context, name: str = typer.Argument(..., help="image name or id"),
         as_json: bool = JSON) -> None:
    """Show one image."""
    i = g(ctx).client().get(f"/api/v1/images/{name}")
    if as_json:
        print_json(i)
        return
    for k in ("name", "id", "os", "release", "architecture", "format", "size", "sha256", "kind",
              "min_memory", "created"):
        out.print(f"{k + ':':14} {i[k]}", highlight=False)


@app.command()
@api_errors
def delete(ctx: typer.Context, name: str) -> None:
    """Delete an image (refused while an instance uses it)."""
    g(ctx).client().delete(f"/api/v1/images/{name}")
    out.print(f"deleted image {name}")
