"""The all-in-one cloud: controller + local node in one process (`lxcloud up`)."""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lxcloud.config import Settings
from lxcloud.core.errors import LxcloudError

if TYPE_CHECKING:
    import uvicorn

    from lxcloud.core.models import Network
    from lxcloud.services.cloud import Cloud


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"error: --listen wants HOST:PORT, not {listen!r}")
    return host.strip("[]"), int(port)


def _lock(data_dir: Path) -> int:
    fd = os.open(data_dir / "lxcloud.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"error: another `lxcloud up` is already running on {data_dir}") from None
    return fd


def run_all_in_one(data_dir: str | None, *, listen: str | None = None,
                   database_url: str | None = None, network: str | None = None,
                   verbose: bool = False) -> int:
    import uvicorn

    from lxcloud import web
    from lxcloud.api.rest.app import create_app
    from lxcloud.node.agent import NodeAgent
    from lxcloud.services.cloud import Cloud

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if os.geteuid() != 0:
        print("error: lxcloud up must run as root (it manages containers, bridges and firewall "
              "rules)", file=sys.stderr)
        return 1
    settings = Settings.load(data_dir, listen=listen, database_url=database_url,
                             default_network_cidr=network)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    lock_fd = _lock(settings.data_dir)
    host, port = _split_listen(settings.listen)
    try:
        # bound and listening before the banner: once it is printed, connections are accepted
        # (the first ones wait in the backlog while the server starts)
        sock = socket.create_server((host, port), backlog=2048)
    except OSError as e:
        print(f"error: cannot listen on {settings.listen}: {e.strerror} (use --listen)",
              file=sys.stderr)
        return 1
    cloud = Cloud(settings, NodeAgent.local(settings))
    try:
        try:
            cloud.startup()
        except LxcloudError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        # What start-up made (modules, the app, caches) lives as long as the process: out of the
        # collector's sight, and collections rarer, so a request is not held up by a pass over
        # objects that will never be garbage (a full pass took ~100 ms with 1,000 instances).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        settings.url_file.write_text(url + "\n")
        net = cloud.networks.get()
        metadata = _MetadataServers(cloud, verbose)
        try:
            metadata.serve(net)
        except OSError as e:
            print(f"error: cannot serve instance metadata on {net.gateway}:"
                  f"{settings.metadata_port}: {e.strerror}", file=sys.stderr)
            return 1
        metadata.serve_every_network()
        print(f"lxcloud is up (data dir {settings.data_dir})\n"
              f"  API:       {url}/api/v1\n"
              f"  docs:      {url}/docs\n"
              f"  dashboard: {url}/ (log in with the token)"
              f"{'' if web.built() else ' - not built: run make web'}\n"
              f"  network:   {net.cidr} on bridge {net.bridge}\n"
              f"  token:     {cloud.admin_token}\n"
              f"  (kept in {settings.token_file}; clients on this host find it by themselves)\n"
              f"  EC2:       {url}/ec2/  region {settings.region}\n"
              f"  EC2 key:   aws_access_key_id={cloud.admin_key.access_key_id}\n"
              f"             aws_secret_access_key={cloud.admin_key.secret_access_key}\n"
              f"  (lxcloud user credentials admin --write-aws-profile saves them as an aws CLI profile)",
              flush=True)
        try:
            app = create_app(cloud)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                                   access_log=verbose, timeout_graceful_shutdown=5))
            app.state.server = server    # open event streams end when it is told to exit
            server.run(sockets=[sock])
        finally:
            metadata.close()
        return 0
    finally:
        sock.close()
        cloud.close()
        os.close(lock_fd)


def purge(data_dir: str | None) -> int:
    """Removes everything a cloud made on this host: containers, roots, bridge, rules, DNS, data dir.
    Refused while its `lxcloud up` runs."""
    import shutil

    from sqlalchemy import select

    from lxcloud.db.engine import Database
    from lxcloud.db.tables import AddressPoolRow, NetworkRow, PoolRow
    from lxcloud.drivers.network.publicnat import AddressPool
    from lxcloud.drivers.storage.base import PoolSpec
    from lxcloud.node.agent import NodeAgent
    from lxcloud.services.networks import network_of_row, network_spec

    settings = Settings.load(data_dir)
    if not settings.data_dir.exists():
        print(f"nothing to purge: {settings.data_dir} does not exist", file=sys.stderr)
        return 0
    lock_fd = _lock(settings.data_dir)
    agent = NodeAgent.local(settings)
    try:
        nets: list[NetworkRow] = []
        pools: list[PoolRow] = []
        public: list[AddressPool] = []
        if (settings.data_dir / "db.sqlite").exists() or settings.database_url:
            db = Database(settings.db_url)
            try:
                db.create_all()
                with db.reader() as s:
                    nets = list(s.scalars(select(NetworkRow)))
                    pools = list(s.scalars(select(PoolRow)))
                    public = [AddressPool(r.interface, r.range_start, r.range_end)
                              for r in s.scalars(select(AddressPoolRow))]
            finally:
                db.close()
        for p in pools:      # brought up, so that the instances' roots on them can go
            try:
                agent.ensure_pool(PoolSpec(name=p.name, driver=p.driver, path=Path(p.path),
                                           source=p.source, size=p.size))
            except Exception as e:
                print(f"warning: pool {p.name} could not be brought up: {e}", file=sys.stderr)
        # each step goes on when one before it fails: what can go goes, and what stays is named
        # (then nothing is deleted below a mount that is left, and the purge can be run again)
        for name in agent.list_instances():
            try:
                agent.destroy(name)
            except Exception as e:
                print(f"warning: instance {name} could not be removed: {e}", file=sys.stderr)
        try:
            agent.teardown_public(public)   # public addresses off the host's interfaces
        except Exception as e:
            print(f"warning: public addresses could not be removed: {e}", file=sys.stderr)
        # the default network last: the cloud's port guard goes with it
        for n in sorted(nets, key=lambda n: n.bridge == settings.bridge_name):
            try:
                agent.teardown_network(network_spec(settings, network_of_row(n)))
            except Exception as e:
                print(f"warning: network {n.name} could not be removed: {e}", file=sys.stderr)
        for p in pools:      # every volume, snapshot, image and loop file of each pool
            try:
                agent.delete_pool(p.name)
            except Exception as e:
                print(f"warning: pool {p.name} could not be removed: {e}", file=sys.stderr)
        # never delete through a mount that is still there (a pool's filesystem, a volume)
        left = _mounts_under(settings.data_dir)
        if left:
            print(f"error: still mounted under {settings.data_dir}: {', '.join(left)}; "
                  "nothing was deleted below them", file=sys.stderr)
            return 1
        shutil.rmtree(settings.data_dir)
        print(f"purged {settings.data_dir}")
        return 0
    finally:
        agent.close()
        os.close(lock_fd)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (from /proc/self/mountinfo)."""
    root = str(Path(path).resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return found


class _MetadataServers:
    """The instance metadata service on each bridge network's <gateway>:<metadata_port>
    (169.254.169.254:80 from that network's instances is DNAT'ed there), each in a thread of its
    own beside the API server: one per network, since a network's input chain lets only its own
    bridge reach its gateway's port (the service tells who asks by the source address). Networks
    made or deleted while the cloud runs get or lose theirs at once (the network service's
    watchers)."""

    def __init__(self, cloud: Cloud, verbose: bool) -> None:
        import threading

        from lxcloud.api.metadata.app import create_metadata_app
        from lxcloud.api.metadata.lookup import make_lookup
        from lxcloud.services.auth import metadata_secret

        self.cloud = cloud
        self.verbose = verbose
        self.app = create_metadata_app(make_lookup(cloud), metadata_secret(cloud.settings))
        self.servers: dict[str, uvicorn.Server] = {}     # by network id
        self.lock = threading.Lock()

    def serve(self, net: Network) -> None:
        """Listening on `net`'s gateway before it returns (OSError when it cannot)."""
        import threading

        import uvicorn

        if net.driver != "bridge":      # a macvlan network's segment has no gateway of ours
            return
        with self.lock:
            if net.id in self.servers:
                return
            sock = socket.create_server((net.gateway, self.cloud.settings.metadata_port),
                                        backlog=1024)
            server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning",
                                                   access_log=self.verbose, lifespan="off"))
            threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                             name=f"metadata-{net.name}", daemon=True).start()
            self.servers[net.id] = server

    def serve_every_network(self) -> None:
        """Every network's, now and as they come and go; one that fails is logged."""
        from lxcloud.core.caller import SYSTEM

        self.cloud.networks.watchers.append(self._changed)
        for net in self.cloud.networks.list(SYSTEM, all_projects=True):
            self._changed("made", net)

    def _changed(self, what: str, net: Network) -> None:
        if what == "made":
            try:
                self.serve(net)
            except OSError as e:
                logging.getLogger(__name__).error(
                    "cannot serve instance metadata on %s:%s for network %s: %s", net.gateway,
                    self.cloud.settings.metadata_port, net.name, e.strerror)
            return
        with self.lock:
            server = self.servers.pop(net.id, None)
        if server is not None:
            server.should_exit = True

    def close(self) -> None:
        with self.lock:
            for server in self.servers.values():
                server.should_exit = True
            self.servers.clear()
