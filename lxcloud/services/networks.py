"""Networks and the database's IP allocator (no two instances ever get the same address)."""

from __future__ import annotations

import builtins
import ipaddress
import logging
from dataclasses import replace
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from lxcloud.config import Settings
from lxcloud.core import ipam
from lxcloud.core.errors import NotFound
from lxcloud.core.ids import new_id
from lxcloud.core.instance import Nic
from lxcloud.core.models import Network
from lxcloud.db.engine import Database
from lxcloud.db.tables import InstanceRow, IpAllocationRow, NetworkRow, table, utcnow
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.node.protocol import NodeClient

log = logging.getLogger(__name__)

# read and written on every launch: built once, bound with parameters
_NETS, _ALLOCS = table(NetworkRow), table(IpAllocationRow)
_BY_NAME = select(_NETS).where(_NETS.c.name == bindparam("name"))
_USED = select(_ALLOCS.c.address).where(_ALLOCS.c.network == bindparam("network"))
_ALLOCATE = _ALLOCS.insert()
DEFAULT = "default"


def _to_model(r: Any) -> Network:
    return Network(id=r.id, name=r.name, cidr=r.cidr, gateway=r.gateway, bridge=r.bridge,
                   created=r.created)


class NetworkService:
    def __init__(self, settings: Settings, db: Database, node: NodeClient) -> None:
        self.settings = settings
        self.db = db
        self.node = node

    def spec(self, net: Network) -> NetworkSpec:
        return NetworkSpec(name=net.name, bridge=net.bridge, cidr=net.cidr, gateway=net.gateway,
                           nat=True, nft_table=self.settings.nft_table,
                           metadata_port=self.settings.metadata_port or None)

    def ensure_default(self) -> Network:
        """The default bridge network: its row made on first start, its host side made or repaired."""
        with self.db.session() as s:
            row = s.scalar(select(NetworkRow).where(NetworkRow.name == DEFAULT))
            if row is None:
                cidr = self.settings.default_network_cidr or self._pick_subnet(s)
                plan = ipam.NetworkPlan.from_cidr(cidr)   # InvalidInput when it is not a network
                row = NetworkRow(id=new_id("network"), name=DEFAULT, cidr=plan.cidr,
                                 gateway=plan.gateway, bridge=self.settings.bridge_name)
                s.add(row)
                log.info("default network %s on bridge %s", row.cidr, row.bridge)
            net_model = _to_model(row)
        self.node.ensure_network(self.spec(net_model))
        return net_model

    def _pick_subnet(self, s: Session) -> str:
        taken = list(self.node.host_networks()) + [r.cidr for r in s.scalars(select(NetworkRow))]
        return ipam.pick_subnet(prefix=self.settings.network_prefix, taken=taken,
                                 seed=self.settings.cloud_id)

    def get(self, name: str = DEFAULT, *, session: Session | None = None) -> Network:
        """By name; `session`: read in the caller's transaction."""
        if session is None:
            with self.db.reader() as s:
                return self.get(name, session=s)
        row = session.connection().execute(_BY_NAME, {"name": name}).first()
        if row is None:
            raise NotFound(f"network {name!r} not found", resource="network")
        return _to_model(row)

    def by_id(self, network_id: str) -> Network:
        with self.db.reader() as s:
            row = s.get(NetworkRow, network_id)
            if row is None:
                raise NotFound(f"network {network_id!r} not found", resource="network")
            return _to_model(row)

    def list(self) -> list[Network]:
        with self.db.reader() as s:
            return [_to_model(r) for r in s.scalars(select(NetworkRow))]

    def nic_template(self, net: Network) -> Nic:
        """A NIC on `net` as the host must plug it in, before its address and MAC are chosen."""
        return Nic(network=net.id, mac="", ipv4=None, prefix=self.prefix_len(net),
                   gateway=net.gateway, link=net.bridge, driver="bridge",
                   nameservers=(net.gateway,))

    def attach(self, s: Session, net: Network, template: Nic, instance_id: str) -> Nic:
        """`template` with an address of `net` allocated to `instance_id` (in the caller's
        transaction) and the MAC that address always gets."""
        ip = self.allocate(s, net, instance_id)
        return replace(template, ipv4=ip, mac=ipam.mac_for(ip, self.settings.cloud_id))

    def allocate(self, s: Session, net: Network, instance_id: str) -> str:
        """An unused address of `net` for `instance_id`, inside the caller's transaction.
        SQLite transactions are serialised (BEGIN IMMEDIATE); elsewhere the primary key
        refuses a duplicate (when the caller's transaction flushes) and it fails rather than
        sharing an address."""
        conn = s.connection()
        used = set(conn.execute(_USED, {"network": net.id}).scalars())
        used.add(net.gateway)
        addr = ipam.next_free(net.cidr, used)
        conn.execute(_ALLOCATE, {"network": net.id, "address": addr, "instance_id": instance_id,
                                 "created": utcnow()})
        return addr

    def release(self, s: Session, instance_id: str) -> None:
        s.execute(delete(IpAllocationRow).where(IpAllocationRow.instance_id == instance_id))

    def add_dns(self, net: Network, nic: Nic, name: str) -> None:
        """`name` resolves to the NIC's address on its network (and DHCP offers it that address)."""
        if nic.ipv4:
            self.node.add_dns(self.spec(net), {name: nic.ipv4}, {name: nic.mac} if nic.mac else None)

    def remove_dns(self, net: Network, names: builtins.list[str]) -> None:
        try:
            self.node.remove_dns(self.spec(net), names)
        except Exception:
            log.exception("DNS removal of %s on %s failed", ", ".join(names), net.name)

    def refresh_dns(self, net: Network) -> None:
        """The network's DNS knows exactly its live instances (at start-up, after a restart)."""
        with self.db.reader() as s:
            rows = list(s.execute(select(InstanceRow.name, IpAllocationRow.address)
                                  .join(IpAllocationRow, IpAllocationRow.instance_id == InstanceRow.id)
                                  .where(IpAllocationRow.network == net.id,
                                         InstanceRow.state != "terminated")))
        hosts = {name: ip for name, ip in rows if ip}
        macs = {name: ipam.mac_for(ip, self.settings.cloud_id) for name, ip in hosts.items()}
        try:
            self.node.update_dns(self.spec(net), hosts, macs)
        except Exception:
            log.exception("DNS update for %s failed", net.name)

    def prefix_len(self, net: Network) -> int:
        return ipaddress.ip_network(net.cidr).prefixlen
