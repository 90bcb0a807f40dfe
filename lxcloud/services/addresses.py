"""Public addresses: pools of them on a host interface (admins), allocated to projects, associated
1:1 to an instance's NIC (DNAT + SNAT), and port forwards (public address:port -> an instance's
port). The rules, once, for REST, EC2 and the CLI.

AWS's semantics (VPC Elastic IPs): an address stays allocated to its project until released;
associating one that is associated elsewhere is refused unless reassociation is allowed; an
instance's NIC address has at most one public address (associating another replaces it);
releasing an associated address is refused (disassociate first); terminating an instance
disassociates its addresses (detaching a NIC, that NIC's). Beyond AWS, port forwards
(CloudStack's): an allocated address that is not associated forwards chosen ports to instances;
an address has either one or the other; an admin may forward ports of the host's own addresses.

Every change is made on the host before it is recorded, and undone if the record cannot be
written; the host is brought back to the records at start-up (`sync`).
"""

from __future__ import annotations

import builtins
import ipaddress
import logging
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from lxcloud.config import Settings
from lxcloud.core.addresses import PROTOCOLS, AddressPool, PortForward, PublicAddress
from lxcloud.core.caller import SYSTEM, Caller
from lxcloud.core.errors import (
    Conflict,
    Exhausted,
    Forbidden,
    InUse,
    InvalidCombination,
    InvalidInput,
    NotFound,
    QuotaExceeded,
)
from lxcloud.core.ids import is_id, new_id, valid_name
from lxcloud.core.instance import Nic
from lxcloud.core.lifecycle import State
from lxcloud.core.models import Instance
from lxcloud.core.reverter import Reverter
from lxcloud.db.engine import Database
from lxcloud.db.tables import (
    AddressPoolRow,
    InstanceRow,
    PortForwardRow,
    PublicAddressRow,
    utcnow,
)
from lxcloud.drivers.network import publicnat as nat
from lxcloud.node.protocol import NodeClient
from lxcloud.services.instances import InstanceService
from lxcloud.services.tags import TagService

log = logging.getLogger(__name__)
MAX_POOL = 65536


def _pool_model(r: Any, allocated: int = 0) -> AddressPool:
    size = int(ipaddress.IPv4Address(r.range_end)) - int(ipaddress.IPv4Address(r.range_start)) + 1
    if r.gateway and _in_range(r.gateway, r.range_start, r.range_end):
        size -= 1
    return AddressPool(id=r.id, name=r.name, interface=r.interface, cidr=r.cidr,
                       range_start=r.range_start, range_end=r.range_end, gateway=r.gateway or "",
                       created=r.created, size=size, allocated=allocated)


def _in_range(addr: str, start: str, end: str) -> bool:
    a = ipaddress.IPv4Address(addr)
    return ipaddress.IPv4Address(start) <= a <= ipaddress.IPv4Address(end)


def _nat_pool(p: AddressPool | Any) -> nat.AddressPool:
    return nat.AddressPool(p.interface, p.range_start, p.range_end)


def parse_range(text: str) -> tuple[str, str]:
    """"A-B" (or a CIDR: its usable addresses) as (first, last)."""
    try:
        if "/" in text:
            net = ipaddress.IPv4Network(text, strict=False)
            hosts = list(net.hosts()) if net.num_addresses > 2 else list(net)
            return str(hosts[0]), str(hosts[-1])
        first, sep, last = text.partition("-")
        if not sep:
            return str(ipaddress.IPv4Address(first.strip())), str(ipaddress.IPv4Address(
                first.strip()))
        return str(ipaddress.IPv4Address(first.strip())), str(ipaddress.IPv4Address(last.strip()))
    except ValueError:
        raise InvalidInput(f"range {text!r} is not A-B (two IPv4 addresses) nor a CIDR",
                           resource="address_pool") from None


class AddressService:
    def __init__(self, settings: Settings, db: Database, node: NodeClient,
                 instances: InstanceService, tags: TagService) -> None:
        self.settings = settings
        self.db = db
        self.node = node
        self.instances = instances
        self.tags = tags
        # one change at a time: the host and the records move together
        self._mu = threading.RLock()

    # --- pools (admins)
    @staticmethod
    def _admin(caller: Caller, what: str) -> None:
        if not (caller is SYSTEM or caller.is_admin):
            raise Forbidden(f"only an admin may {what}")

    def create_pool(self, name: str, interface: str, range_: str, *, cidr: str | None = None,
                    gateway: str | None = None, caller: Caller = SYSTEM) -> AddressPool:
        """A pool of the addresses `range_` ("A-B") on the host interface `interface`, checked
        against the host and the other pools before it is recorded."""
        self._admin(caller, "manage address pools")
        if not valid_name(name):
            raise InvalidInput(f"pool name {name!r} is not valid: a letter, then letters, digits "
                               "or dashes, at most 63 characters", resource="address_pool")
        first, last = parse_range(range_)
        nat.check_pool(nat.AddressPool(interface, first, last))
        size = int(ipaddress.IPv4Address(last)) - int(ipaddress.IPv4Address(first)) + 1
        if size > MAX_POOL:
            raise InvalidInput(f"a pool holds at most {MAX_POOL} addresses ({size} asked)",
                               resource="address_pool")
        if interface not in self.node.host_interfaces():
            raise InvalidInput(f"interface {interface!r} does not exist on this host",
                               resource="interface")
        net = self._pool_cidr(interface, first, last, cidr)
        if gateway:
            gw = str(ipaddress.IPv4Address(gateway)) if _ip_ok(gateway) else None
            if gw is None or ipaddress.IPv4Address(gw) not in net:
                raise InvalidInput(f"gateway {gateway!r} is not an address of {net}",
                                   resource="address_pool")
            gateway = gw
        # the host's own addresses (and another cloud's public ones) are never handed out
        taken = [a for a in self.node.host_addresses()
                 if _ip_ok(a) and _in_range(a, first, last) and a != gateway]
        if taken:
            raise InvalidInput(f"range {first}-{last} holds {', '.join(taken[:3])}, already an "
                               "address of this host: leave it out", resource="address_pool")
        for n in self._private_networks():
            if ipaddress.IPv4Address(first) <= n.broadcast_address \
                    and ipaddress.IPv4Address(last) >= n.network_address:
                raise InvalidInput(f"range {first}-{last} overlaps the cloud network {n}",
                                   resource="address_pool")
        with self._mu, self.db.session() as s:
            for other in s.scalars(select(AddressPoolRow)):
                if other.name == name:
                    raise Conflict(f"an address pool named {name!r} already exists",
                                   resource="address_pool")
                if not (ipaddress.IPv4Address(last) < ipaddress.IPv4Address(other.range_start)
                        or ipaddress.IPv4Address(first) > ipaddress.IPv4Address(other.range_end)):
                    raise Conflict(f"range {first}-{last} overlaps pool {other.name} "
                                   f"({other.range_start}-{other.range_end})",
                                   resource="address_pool")
            row = AddressPoolRow(id=new_id("address_pool"), name=name,
                                 interface=interface, cidr=str(net), range_start=first,
                                 range_end=last, gateway=gateway or "", created=utcnow())
            s.add(row)
            s.flush()
            return _pool_model(row)

    def _pool_cidr(self, interface: str, first: str, last: str,
                   cidr: str | None) -> ipaddress.IPv4Network:
        """The network the range lies in: given, else the interface's that holds it, else the
        smallest one covering the range."""
        a, b = ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
        if cidr:
            try:
                net = ipaddress.IPv4Network(cidr, strict=False)
            except ValueError:
                raise InvalidInput(f"{cidr!r} is not an IPv4 network",
                                   resource="address_pool") from None
            if a not in net or b not in net:
                raise InvalidInput(f"range {first}-{last} is not inside {net}",
                                   resource="address_pool")
            return net
        for c in self.node.host_networks(interface):
            n = ipaddress.IPv4Network(c, strict=False)
            if a in n and b in n:
                return n
        net = ipaddress.IPv4Network(f"{a}/32")
        while b not in net:
            net = net.supernet()
        return net

    def _private_networks(self) -> builtins.list[ipaddress.IPv4Network]:
        nets = self.instances.networks.list(SYSTEM, all_projects=True)
        return [ipaddress.IPv4Network(n.cidr, strict=False) for n in nets]

    def list_pools(self) -> builtins.list[AddressPool]:
        with self.db.reader() as s:
            counts = dict(s.execute(select(PublicAddressRow.pool_id, func.count())  # type: ignore[arg-type]
                                    .group_by(PublicAddressRow.pool_id)).all())
            return [_pool_model(r, counts.get(r.id, 0)) for r in
                    s.scalars(select(AddressPoolRow).order_by(AddressPoolRow.created))]

    def get_pool(self, ref: str) -> AddressPool:
        for p in self.list_pools():
            if ref in (p.id, p.name):
                return p
        raise NotFound(f"address pool {ref!r} not found", resource="address_pool", id=ref)

    def delete_pool(self, ref: str, *, caller: Caller = SYSTEM) -> None:
        """Refused while any of its addresses is allocated."""
        self._admin(caller, "manage address pools")
        with self._mu:
            pool = self.get_pool(ref)
            if pool.allocated:
                raise InUse(f"address pool {pool.name} has {pool.allocated} allocated "
                            "address(es): release them first", resource="address_pool",
                            allocated=pool.allocated)
            with self.db.session() as s:
                s.execute(delete(AddressPoolRow).where(AddressPoolRow.id == pool.id))

    # --- addresses: queries
    @staticmethod
    def _sees(caller: Caller, project_id: str | None) -> bool:
        return caller is SYSTEM or caller.is_admin or project_id == caller.project_id

    def list(self, *, caller: Caller = SYSTEM, ids: Sequence[str] | None = None,
             all_projects: bool = False) -> builtins.list[PublicAddress]:
        """The caller's project's addresses; `all_projects` (admins only): every project's."""
        if all_projects and not (caller is SYSTEM or caller.is_admin):
            raise Forbidden("only an admin may list the addresses of all projects")
        with self.db.reader() as s:
            q = (select(PublicAddressRow, AddressPoolRow)
                 .join(AddressPoolRow, AddressPoolRow.id == PublicAddressRow.pool_id)
                 .order_by(PublicAddressRow.created, PublicAddressRow.address))
            if caller is not SYSTEM and not all_projects:
                q = q.where(PublicAddressRow.project_id == caller.project_id)
            if ids is not None:
                q = q.where(PublicAddressRow.id.in_(list(ids)))
            rows = list(s.execute(q).all())
            iids = [a.instance_id for a, _ in rows if a.instance_id]
            names = dict(s.execute(select(InstanceRow.id, InstanceRow.name)  # type: ignore[arg-type]
                                   .where(InstanceRow.id.in_(iids))).all()) if iids else {}
            fwd = dict(s.execute(select(PortForwardRow.address_id, func.count())  # type: ignore[arg-type]
                                 .group_by(PortForwardRow.address_id)).all())
        out = [PublicAddress(id=a.id, address=a.address, pool=p.name, pool_id=p.id,
                             project_id=a.project_id, created=a.created,
                             instance_id=a.instance_id, instance_name=names.get(a.instance_id or ""),
                             nic=a.nic, private_ip=a.private_ip,
                             association_id=a.association_id, interface=p.interface,
                             forwards=fwd.get(a.id, 0)) for a, p in rows]
        tags = self.tags.of(caller, [a.id for a in out]) if caller is not SYSTEM else {}
        for a in out:
            a.tags = tags.get(a.id, {})
        return out

    def get(self, ref: str, *, caller: Caller = SYSTEM) -> PublicAddress:
        """By allocation id, public address, association id or Name tag, within what the caller
        sees; NotFound otherwise (resource "address" for an id, "public_address" for an IP,
        "association" for an association id)."""
        found = self.find(ref, caller=caller)
        if found is None:
            raise NotFound(f"address {ref!r} not found", resource=_resource_of(ref), id=ref)
        return found

    def find(self, ref: str, *, caller: Caller = SYSTEM) -> PublicAddress | None:
        mine = self.list(caller=caller)
        for key in ("id", "address", "association_id", "name"):
            hits = [a for a in mine if getattr(a, key) == ref]
            if hits:
                return hits[0]
        return None

    # --- addresses: changes
    def allocate(self, *, pool: str | None = None, address: str | None = None,
                 tags: dict[str, str] | None = None, caller: Caller = SYSTEM) -> PublicAddress:
        """A free address of `pool` (the first pool with one when None), or `address` itself,
        for the caller's project. QuotaExceeded (resource "address") past the project's limit
        or when no pool has a free address."""
        if tags:
            self.tags.check(tags)
            name = tags.get("Name")
            if name is not None and self.find(name, caller=caller) is not None:
                raise Conflict(f"an address named {name!r} already exists",
                               resource="address_name")
        if address is not None and not _ip_ok(address):
            raise InvalidInput(f"{address!r} is not an IPv4 address", resource="address")
        pools = [self.get_pool(pool)] if pool else self.list_pools()
        if not pools:
            raise Exhausted("no address pool is configured on this cloud (an admin makes one: "
                            "lxcloud address pool create)", resource="address")
        project = caller.project_id or self.instances._default_project()
        with self._mu, self.db.session() as s:
            have = s.scalar(select(func.count()).select_from(PublicAddressRow)
                            .where(PublicAddressRow.project_id == project)) or 0
            limit = self.settings.max_addresses_per_project
            if have >= limit:
                raise QuotaExceeded(f"the project has {have} addresses, its limit "
                                    f"(max_addresses_per_project {limit})", resource="address",
                                    limit=limit)
            used = set(s.scalars(select(PublicAddressRow.address)))
            chosen = self._pick(pools, used, address)
            aid = new_id("address")
            s.add(PublicAddressRow(id=aid, address=chosen[1], pool_id=chosen[0].id,
                                   project_id=project, created=utcnow()))
            if tags:
                self.tags.add(s, caller, [aid], tags)
        return self.get(aid, caller=caller)

    @staticmethod
    def _pick(pools: Sequence[AddressPool], used: set[str],
              wanted: str | None) -> tuple[AddressPool, str]:
        if wanted is not None:
            for p in pools:
                if _in_range(wanted, p.range_start, p.range_end) and wanted != p.gateway:
                    if wanted in used:
                        raise Conflict(f"address {wanted} is already allocated",
                                       resource="address_taken")
                    return p, str(ipaddress.IPv4Address(wanted))
            raise InvalidInput(f"address {wanted} is in no address pool", resource="address")
        for p in pools:
            a, b = int(ipaddress.IPv4Address(p.range_start)), int(ipaddress.IPv4Address(p.range_end))
            for n in range(a, b + 1):
                ip = str(ipaddress.IPv4Address(n))
                if ip not in used and ip != p.gateway:
                    return p, ip
        raise Exhausted("no free public address is left in "
                        + ("pool " + pools[0].name if len(pools) == 1 else "any pool"),
                        resource="address")

    def associate(self, ref: str, instance: str, *, private_ip: str | None = None,
                  allow_reassociation: bool = False, caller: Caller = SYSTEM) -> PublicAddress:
        """`ref` 1:1 to the instance's first NIC (or its NIC holding `private_ip`)."""
        with self._mu:
            addr = self.get(ref, caller=caller)
            inst = self.instances.get(instance, caller=caller)
            nic = self._nic(inst, private_ip)
            assert nic.ipv4 is not None
            if addr.instance_id == inst.id and addr.private_ip == nic.ipv4:
                return addr
            if addr.associated and not allow_reassociation:
                raise Conflict(f"address {addr.address} is already associated with "
                               f"{addr.instance_name or addr.instance_id}",
                               resource="address")
            if addr.forwards:
                raise Conflict(f"address {addr.address} has {addr.forwards} port forward(s): "
                               "remove them before associating it", resource="address_forwards")
            # what it replaces: this address's association, and the NIC address's other one
            replaced = [a for a in self.list(caller=SYSTEM)
                        if a.id != addr.id and a.private_ip == nic.ipv4 and a.associated]
            new = nat.Association(addr.address, nic.ipv4, addr.interface)
            with Reverter() as rev:
                for old in ([addr] if addr.associated else []) + replaced:
                    self.node.disassociate_address(self._assoc(old))
                    rev.add(lambda o=old: self.node.associate_address(  # type: ignore[misc]
                        self._assoc(o)), f"re-associate {old.address}")
                self.node.associate_address(new)
                rev.add(lambda: self.node.disassociate_address(new), f"undo {addr.address}")
                with self.db.session() as s:
                    for old in replaced:
                        _clear(s.get(PublicAddressRow, old.id))
                    row = s.get(PublicAddressRow, addr.id)
                    assert row is not None
                    row.instance_id, row.nic, row.private_ip = inst.id, nic.name, nic.ipv4
                    row.association_id = new_id("association")
                rev.success()
        return self.get(addr.id, caller=caller)

    @staticmethod
    def _nic(inst: Instance, private_ip: str | None) -> Nic:
        if inst.state == State.TERMINATED:
            raise NotFound(f"instance {inst.id} is terminated", resource="instance", id=inst.id)
        nics = [n for n in inst.nics if n.ipv4]
        if private_ip is not None:
            nics = [n for n in nics if n.ipv4 == private_ip]
            if not nics:
                raise InvalidInput(f"{private_ip} is not an address of instance {inst.name}",
                                   resource="address")
        if not nics:
            raise InvalidInput(f"instance {inst.name} has no NIC with an address",
                               resource="address")
        nic = nics[0]
        if nic.driver != "bridge":
            raise InvalidCombination(f"NIC {nic.name} of {inst.name} is on a {nic.driver} network: "
                                     "its traffic does not pass the host's NAT",
                                     capability="public_address")
        return nic

    @staticmethod
    def _assoc(a: PublicAddress) -> nat.Association:
        assert a.private_ip is not None
        return nat.Association(a.address, a.private_ip, a.interface)

    def disassociate(self, ref: str, *, caller: Caller = SYSTEM) -> PublicAddress:
        """Its NAT removed (already not associated: nothing to do)."""
        with self._mu:
            addr = self.get(ref, caller=caller)
            if not addr.associated:
                return addr
            self.node.disassociate_address(self._assoc(addr))
            try:
                with self.db.session() as s:
                    _clear(s.get(PublicAddressRow, addr.id))
            except Exception:
                self.node.associate_address(self._assoc(addr))
                raise
        return self.get(addr.id, caller=caller)

    def release(self, ref: str, *, caller: Caller = SYSTEM) -> None:
        """Back to its pool; refused while associated or forwarding (InUse)."""
        with self._mu:
            addr = self.get(ref, caller=caller)
            if addr.associated:
                raise InUse(f"address {addr.address} is associated with "
                            f"{addr.instance_name or addr.instance_id}: disassociate it first",
                            resource="address", instance=addr.instance_id or "")
            if addr.forwards:
                raise InUse(f"address {addr.address} has {addr.forwards} port forward(s): "
                            "remove them first", resource="address_forwards")
            with self.db.session() as s:
                s.execute(delete(PublicAddressRow).where(PublicAddressRow.id == addr.id))
                self.tags.remove_all(s, [addr.id])

    # --- port forwards
    def list_forwards(self, *, caller: Caller = SYSTEM, address: str | None = None,
                      instance: str | None = None) -> builtins.list[PortForward]:
        with self.db.reader() as s:
            q = (select(PortForwardRow, InstanceRow.name, InstanceRow.nics)
                 .outerjoin(InstanceRow, InstanceRow.id == PortForwardRow.instance_id)
                 .order_by(PortForwardRow.created))
            if caller is not SYSTEM and not caller.is_admin:
                q = q.where(PortForwardRow.project_id == caller.project_id)
            rows = list(s.execute(q).all())
        out = []
        for r, iname, nics in rows:
            ip = next((n.get("ipv4") for n in nics or () if n.get("name", "eth0") == r.nic), None)
            out.append(PortForward(id=r.id, address_id=r.address_id, address=r.listen_address,
                                   protocol=r.protocol, port=r.port, instance_id=r.instance_id,
                                   nic=r.nic, target_port=r.target_port, project_id=r.project_id,
                                   created=r.created, instance_name=iname, private_ip=ip))
        if address is not None:
            a = self.find(address, caller=caller)
            out = [f for f in out if (f.address_id == a.id if a else f.address == address)]
        if instance is not None:
            i = self.instances.get(instance, caller=caller)
            out = [f for f in out if f.instance_id == i.id]
        return out

    def get_forward(self, forward_id: str, *, caller: Caller = SYSTEM) -> PortForward:
        for f in self.list_forwards(caller=caller):
            if f.id == forward_id:
                return f
        raise NotFound(f"port forward {forward_id!r} not found", resource="port_forward",
                       id=forward_id)

    def add_forward(self, address: str, protocol: str, port: int, instance: str, *,
                    target_port: int | None = None, private_ip: str | None = None,
                    caller: Caller = SYSTEM) -> PortForward:
        """Connections to `address`:`port`/`protocol` go to the instance's first NIC (or its
        NIC holding `private_ip`) at `target_port` (`port` when None). `address` is one of the
        caller's public addresses (not associated), or, for an admin, one of the host's own
        addresses outside every pool (the host's address:port to an instance's port)."""
        target_port = port if target_port is None else target_port
        if protocol not in PROTOCOLS:
            raise InvalidInput(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}",
                               resource="port_forward")
        for p, what in ((port, "port"), (target_port, "target port")):
            if not isinstance(p, int) or not 1 <= p <= 65535:
                raise InvalidInput(f"{what} {p} is not in 1..65535", resource="port_forward")
        with self._mu:
            inst = self.instances.get(instance, caller=caller)
            addr = self.find(address, caller=caller)
            if addr is None:
                listen, address_id, iface = self._host_address(address, caller), None, ""
                project = inst.project_id or ""
            else:
                if addr.associated:
                    raise Conflict(f"address {addr.address} is associated with "
                                   f"{addr.instance_name or addr.instance_id} (all its ports "
                                   "are): disassociate it to forward ports", resource="address")
                listen, address_id, iface = addr.address, addr.id, addr.interface
                project = addr.project_id
            nic = self._nic(inst, private_ip)
            assert nic.ipv4 is not None
            for f in self.list_forwards(caller=SYSTEM):
                if (f.address, f.protocol, f.port) == (listen, protocol, port):
                    raise Conflict(f"{listen}:{port}/{protocol} is already forwarded "
                                   f"(to {f.instance_name or f.instance_id})",
                                   resource="port_forward")
            fwd = nat.PortForward(listen, protocol, port, nic.ipv4, target_port, interface=iface)
            fid = new_id("port_forward")
            self.node.add_port_forward(fwd)
            try:
                with self.db.session() as s:
                    s.add(PortForwardRow(id=fid, address_id=address_id, listen_address=listen,
                                         protocol=protocol, port=port, instance_id=inst.id,
                                         nic=nic.name, target_port=target_port,
                                         project_id=project, created=utcnow()))
            except Exception:
                self.node.remove_port_forward(fwd)
                raise
        return self.get_forward(fid, caller=caller)

    def _host_address(self, address: str, caller: Caller) -> str:
        """`address` as one of the host's own, for an admin (NotFound as for any unknown
        address otherwise)."""
        if not _ip_ok(address) or address not in self.node.host_addresses() \
                or any(_in_range(address, p.range_start, p.range_end) for p in self.list_pools()):
            raise NotFound(f"address {address!r} not found", resource=_resource_of(address),
                           id=address)
        self._admin(caller, "forward the host's own addresses")
        return str(ipaddress.IPv4Address(address))

    def remove_forward(self, forward_id: str, *, caller: Caller = SYSTEM) -> None:
        with self._mu:
            f = self.get_forward(forward_id, caller=caller)
            self.node.remove_port_forward(self._nat_forward(f))
            with self.db.session() as s:
                s.execute(delete(PortForwardRow).where(PortForwardRow.id == f.id))

    def _nat_forward(self, f: PortForward) -> nat.PortForward:
        iface = ""
        if f.address_id:
            with self.db.reader() as s:
                iface = s.scalar(select(AddressPoolRow.interface)
                                 .join(PublicAddressRow,
                                       PublicAddressRow.pool_id == AddressPoolRow.id)
                                 .where(PublicAddressRow.id == f.address_id)) or ""
        return nat.PortForward(f.address, f.protocol, f.port, f.private_ip or "0.0.0.0",
                               f.target_port, interface=iface)

    # --- the host
    def desired(self) -> tuple[builtins.list[nat.AddressPool], builtins.list[nat.Association],
                               builtins.list[nat.PortForward]]:
        """What the host must hold, from the records: the pools, the associations of live
        instances and their forwards."""
        pools = self.list_pools()
        live = {i.id for i in self.instances.list(caller=SYSTEM)}
        assocs = [self._assoc(a) for a in self.list(caller=SYSTEM)
                  if a.associated and a.instance_id in live]
        fwds = [self._nat_forward(f) for f in self.list_forwards(caller=SYSTEM)
                if f.instance_id in live and f.private_ip]
        return [_nat_pool(p) for p in pools], assocs, fwds

    def sync(self) -> None:
        """The host made to hold exactly what the records say (at start-up). A host that cannot
        is logged, not fatal: the rest of the cloud works."""
        pools, assocs, fwds = self.desired()
        try:
            if pools or assocs or fwds:
                self.node.sync_public(pools, assocs, fwds)
            else:       # a cloud without public addresses has none of their chains either
                self.node.teardown_public([])
        except Exception:
            log.exception("public addresses could not be brought back on this host")

    def release_instance(self, s: Session, instance_id: str) -> None:
        """In the transaction terminating `instance_id`: its addresses disassociated (they stay
        allocated to the project, as on EC2) and its port forwards removed, on the host too."""
        self._release(s, instance_id)

    def release_nic(self, s: Session, instance_id: str, nic: str) -> None:
        """In the transaction detaching the NIC `nic`: the same for that NIC's address."""
        self._release(s, instance_id, nic)

    def _release(self, s: Session, instance_id: str, nic: str | None = None) -> None:
        q_addr = select(PublicAddressRow).where(PublicAddressRow.instance_id == instance_id)
        q_fwd = select(PortForwardRow).where(PortForwardRow.instance_id == instance_id)
        if nic is not None:
            q_addr = q_addr.where(PublicAddressRow.nic == nic)
            q_fwd = q_fwd.where(PortForwardRow.nic == nic)
        rows = list(s.scalars(q_addr))
        fwds = list(s.scalars(q_fwd))
        if not rows and not fwds:
            return
        ifaces = dict(s.execute(select(AddressPoolRow.id, AddressPoolRow.interface)).all())  # type: ignore[arg-type]
        by_addr = {r.id: r for r in s.scalars(select(PublicAddressRow))}
        try:
            for r in rows:
                if r.private_ip:
                    self.node.disassociate_address(nat.Association(
                        r.address, r.private_ip, ifaces.get(r.pool_id, "")))
            for f in fwds:
                pa = by_addr.get(f.address_id or "")
                self.node.remove_port_forward(nat.PortForward(
                    f.listen_address, f.protocol, f.port, "0.0.0.0", f.target_port,
                    interface=ifaces.get(pa.pool_id, "") if pa else ""))
        except Exception:      # the records still change: sync at start-up fixes the host
            log.exception("public addresses of %s could not be removed from the host",
                          instance_id)
        for r in rows:
            _clear(r)
        for f in fwds:
            s.delete(f)

    def of_instance(self, instance_id: str) -> builtins.list[PublicAddress]:
        """The addresses associated with an instance (its NICs' public addresses)."""
        with self.db.reader() as s:
            ids = list(s.scalars(select(PublicAddressRow.id).where(
                PublicAddressRow.instance_id == instance_id)))
        return self.list(caller=SYSTEM, ids=ids) if ids else []

    def public_ips(self, instance_ids: Sequence[str]) -> dict[str, str]:
        """instance id -> the public address of its first NIC that has one."""
        if not instance_ids:
            return {}
        with self.db.reader() as s:
            rows = s.execute(select(PublicAddressRow.instance_id, PublicAddressRow.address,
                                    PublicAddressRow.nic)
                             .where(PublicAddressRow.instance_id.in_(list(instance_ids)))
                             .order_by(PublicAddressRow.nic)).all()
        out: dict[str, str] = {}
        for iid, address, _nic in rows:
            if iid:
                out.setdefault(iid, address)
        return out


def _clear(row: PublicAddressRow | None) -> None:
    if row is not None:
        row.instance_id = row.nic = row.private_ip = row.association_id = None


def _ip_ok(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


def _resource_of(ref: str) -> str:
    if ref.startswith("eipassoc-"):
        return "association"
    if _ip_ok(ref):
        return "public_address"
    return "address" if is_id(ref, "address") or ref.startswith("eipalloc-") else "address_name"
