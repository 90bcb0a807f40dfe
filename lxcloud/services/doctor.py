"""The doctor: what on the cloud's hosts breaks its networking, checked against its networks."""

from __future__ import annotations

from lxcloud.config import Settings
from lxcloud.core.caller import SYSTEM, Caller
from lxcloud.core.errors import Forbidden
from lxcloud.node.doctor import Check
from lxcloud.node.protocol import NodeClient
from lxcloud.services.addresses import AddressService
from lxcloud.services.networks import NetworkService


class DoctorService:
    def __init__(self, settings: Settings, node: NodeClient, networks: NetworkService,
                 addresses: AddressService) -> None:
        self.settings = settings
        self.node = node
        self.networks = networks
        self.addresses = addresses

    def run(self, caller: Caller = SYSTEM) -> list[Check]:
        """The host's checks for every network of the cloud and the interfaces of its public
        address pools (admins only: host facts)."""
        if not (caller is SYSTEM or caller.is_admin):
            raise Forbidden("only an admin may run the doctor (it reads the host)")
        specs = [self.networks.spec(n) for n in self.networks.list(SYSTEM, all_projects=True)]
        return self.node.doctor(specs, [p.interface for p in self.addresses.list_pools()])
