"""The lxcloud command line. It speaks REST only and never imports services."""

from __future__ import annotations

import typer

from lxcloud.cli import (
    accounts,
    addresses,
    copies,
    doctor,
    events,
    images,
    instances,
    networks,
    nics,
    secgroups,
    storage,
    system,
    top,
)
from lxcloud.cli.common import Globals, new_app

app = new_app(name="lxcloud", help="lxcloud: a private cloud of LXC system containers.",
              pretty_exceptions_enable=False,
              context_settings={"help_option_names": ["-h", "--help"]})


@app.callback()
def main_options(
    ctx: typer.Context,
    data_dir: str | None = typer.Option(None, "--data-dir", envvar="LXCLOUD_DATA_DIR",
                                        help="the cloud's data dir (/var/lib/lxcloud)"),
    url: str | None = typer.Option(None, "--url", envvar="LXCLOUD_URL", help="API URL"),
    token: str | None = typer.Option(None, "--token", envvar="LXCLOUD_TOKEN", help="API token"),
) -> None:
    ctx.obj = Globals(data_dir=data_dir, url=url, token=token)


instances.register(app)
copies.register(app)
system.register(app)
doctor.register(app)
events.register(app)
top.register(app)
app.add_typer(images.app, name="image")
app.add_typer(networks.network_app, name="network")
app.add_typer(nics.nic_app, name="nic")
app.add_typer(storage.pool_app, name="pool")
app.add_typer(storage.volume_app, name="volume")
app.add_typer(storage.snapshot_app, name="snapshot")
app.add_typer(accounts.project_app, name="project")
app.add_typer(accounts.user_app, name="user")
app.add_typer(secgroups.app, name="secgroup")
app.add_typer(secgroups.instance_app, name="instance")
app.add_typer(addresses.address_app, name="address")
app.add_typer(addresses.forward_app, name="port-forward")


def main() -> None:
    app()
