"""What an instance may learn about itself through the metadata service, found by its address.

The metadata service tells instances apart by the source address of a request (the port guard
keeps instances from sending from a neighbour's address); this finds the live instance that holds
an address and what it is told: its record, its key pair's public key, its image's architecture,
its network's subnet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from lxcloud.core.caller import Caller
from lxcloud.core.errors import NotFound
from lxcloud.core.lifecycle import State
from lxcloud.core.models import Instance
from lxcloud.db.engine import Database
from lxcloud.db.tables import InstanceRow, IpAllocationRow, PublicAddressRow
from lxcloud.services.images import ImageService
from lxcloud.services.instances import InstanceService
from lxcloud.services.keypairs import KeyPairService
from lxcloud.services.networks import NetworkService


@dataclass(frozen=True)
class Identity:
    instance: Instance
    public_keys: dict[str, str] = field(default_factory=dict)   # key name -> OpenSSH public key
    architecture: str | None = None                               # the image's (Debian naming)
    subnet_cidr: str | None = None
    public_ipv4: str | None = None      # the public address associated with that address


class MetadataService:
    def __init__(self, db: Database, instances: InstanceService, images: ImageService,
                 keypairs: KeyPairService, networks: NetworkService) -> None:
        self.db = db
        self.instances = instances
        self.images = images
        self.keypairs = keypairs
        self.networks = networks

    def identity(self, address: str) -> Identity | None:
        """The live instance holding `address` and what it is told; None when none does."""
        with self.db.reader() as s:
            iid = s.scalar(select(IpAllocationRow.instance_id)
                           .join(InstanceRow, InstanceRow.id == IpAllocationRow.instance_id)
                           .where(IpAllocationRow.address == address,
                                  InstanceRow.state != State.TERMINATED))
        if iid is None:
            return None
        try:
            inst = self.instances.get(iid)
        except NotFound:
            return None
        keys: dict[str, str] = {}
        if inst.key_name:
            owner = Caller(user_id="system", user="system", project_id=inst.project_id or "",
                           project=inst.project or "")
            try:
                keys[inst.key_name] = self.keypairs.get(inst.key_name, owner).public_key
            except NotFound:
                pass
        try:
            arch: str | None = self.images.get(inst.image_id).architecture
        except NotFound:
            arch = None
        nic = next((n for n in inst.nics if n.ipv4 == address), None)
        cidr = None
        if nic is not None:
            try:
                cidr = self.networks.by_id(nic.network).cidr
            except NotFound:
                pass
        with self.db.reader() as s:
            public = s.scalar(select(PublicAddressRow.address).where(
                PublicAddressRow.instance_id == iid, PublicAddressRow.private_ip == address))
        return Identity(instance=inst, public_keys=keys, architecture=arch, subnet_cidr=cidr,
                        public_ipv4=public)
