"""`lxcloud up` serves the metadata service on every bridge network's gateway: those there at
start, those made while it runs (at once), none any more on a network deleted. Gateways on
loopback addresses stand in for bridges here; the service answers over real sockets."""

from __future__ import annotations

import socket

import httpx

from lxcloud.controller import _MetadataServers
from lxcloud.core.caller import SYSTEM
from lxcloud.services.cloud import Cloud
from lxcloud.services.networks import NetworkRequest
from tests.waiting import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _refused(addr: str, port: int) -> bool:
    try:
        socket.create_connection((addr, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_each_network_gets_its_own_metadata_server(cloud: Cloud) -> None:
    cloud.settings.metadata_port = port = _free_port()
    before = cloud.networks.create(SYSTEM, NetworkRequest(name="lo1", subnet="127.77.1.0/24"))
    servers = _MetadataServers(cloud, verbose=False)
    try:
        servers.serve_every_network()     # the default network's gateway is not on this host:
        assert set(servers.servers) == {before.id}          # logged, the others still served
        later = cloud.networks.create(SYSTEM, NetworkRequest(name="lo2", subnet="127.77.2.0/24"))
        assert set(servers.servers) == {before.id, later.id}
        for gw in (before.gateway, later.gateway):
            # an address no instance holds: the service answers, and says so
            r = httpx.get(f"http://{gw}:{port}/latest/meta-data/", timeout=10)
            assert r.status_code == 404, r.text
        cloud.networks.delete(SYSTEM, "lo2")
        assert set(servers.servers) == {before.id}
        wait_for(lambda: _refused(later.gateway, port), 10, "lo2's metadata server to stop")
        assert not _refused(before.gateway, port)
    finally:
        servers.close()
    wait_for(lambda: _refused(before.gateway, port), 10, "every metadata server to stop")
