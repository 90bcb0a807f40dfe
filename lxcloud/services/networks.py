"""Networks: a project's own subnets (and the cloud's shared ones), their host side, DNS, and the
database's IP allocator (no two instances ever get the same address).

Every rule about a network lives here: who sees it, what a subnet may overlap, what may be
changed, when it may go. The front-ends only translate.
"""

from __future__ import annotations

import builtins
import hashlib
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from lxcloud.config import Settings
from lxcloud.core import ipam
from lxcloud.core.caller import SYSTEM, Caller
from lxcloud.core.errors import (
    Conflict,
    Exhausted,
    Forbidden,
    InUse,
    InvalidInput,
    NotFound,
    Reason,
)
from lxcloud.core.ids import is_id, new_id
from lxcloud.core.instance import Nic
from lxcloud.core.models import Network
from lxcloud.core.reverter import Reverter
from lxcloud.db.engine import Database
from lxcloud.db.tables import (
    InstanceRow,
    IpAllocationRow,
    NetworkRow,
    ProjectRow,
    table,
    utcnow,
)
from lxcloud.drivers.network.base import NetworkSpec
from lxcloud.node.protocol import NodeClient

log = logging.getLogger(__name__)

# read and written on every launch: built once, bound with parameters
_NETS, _ALLOCS = table(NetworkRow), table(IpAllocationRow)
_USED = select(_ALLOCS.c.address).where(_ALLOCS.c.network == bindparam("network"))
_ALLOCATE = _ALLOCS.insert()
DEFAULT = "default"
MODES = ("nat", "routed", "isolated")
DRIVERS = ("bridge", "macvlan")
MACVLAN_MODES = ("private", "bridge", "vepa")
BRIDGE_PREFIX = "lxcbr"      # every cloud's bridges: another cloud's are told apart by it
_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,62}$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]"
                        r"{0,61}[a-z0-9])?)*$")
_HOST_PORT_RE = re.compile(r"^(tcp|udp)/(\d{1,5})(?:-(\d{1,5}))?$")


def _to_model(r: Any, projects: dict[str, str] | None = None) -> Network:
    return Network(id=r.id, name=r.name, cidr=r.cidr, gateway=r.gateway, bridge=r.bridge,
                   created=r.created, project_id=r.project_id,
                   project=(projects or {}).get(r.project_id or ""),
                   shared=bool(r.shared) if r.project_id else True, mode=r.mode or "nat",
                   driver=r.driver or "bridge", parent=r.parent or "",
                   macvlan_mode=r.macvlan_mode or "", dns_domain=r.dns_domain or "",
                   dhcp_start=r.dhcp_start or "", dhcp_end=r.dhcp_end or "",
                   host_ports=list(r.host_ports or ()), description=r.description or "")


@dataclass(frozen=True)
class NetworkRequest:
    """What a user asks for: `subnet` is the only must; the rest has a default."""

    name: str
    subnet: str
    mode: str = "nat"
    dns_domain: str = ""
    gateway: str | None = None
    dhcp_range: str | None = None     # "A-B"
    driver: str = "bridge"
    parent: str = ""
    macvlan_mode: str = ""
    shared: bool = False              # an admin's network every project may use
    host_ports: tuple[str, ...] = ()
    description: str = ""
    # EC2: the name is a Name tag's free text; when it is no valid or free name, the network is
    # named by its id
    name_from_tag: bool = False


@dataclass(frozen=True)
class NetworkUpdate:
    """What may change on a live network (None: unchanged). A subnet, a gateway or a driver
    never changes: instances hold addresses of it."""

    mode: str | None = None
    dns_domain: str | None = None
    dhcp_range: str | None = None     # "" clears it
    host_ports: tuple[str, ...] | None = None
    shared: bool | None = None
    description: str | None = None


class NetworkService:
    def __init__(self, settings: Settings, db: Database, node: NodeClient) -> None:
        self.settings = settings
        self.db = db
        self.node = node
        # told ("made" | "gone", network) once a network's host side is made or torn down
        # (the controller serves each network's metadata); one that fails is logged
        self.watchers: builtins.list[Callable[[str, Network], None]] = []

    def _tell(self, what: str, net: Network) -> None:
        for watch in builtins.list(self.watchers):
            try:
                watch(what, net)
            except Exception:
                log.exception("a watcher of network %s (%s) failed", net.name, what)

    # --- what a host gets
    def spec(self, net: Network) -> NetworkSpec:
        return network_spec(self.settings, net)

    # --- start-up
    def ensure_default(self) -> Network:
        """The default bridge network: its row made on first start, its host side made or repaired."""
        with self.db.session() as s:
            row = s.scalar(select(NetworkRow).where(NetworkRow.name == DEFAULT,
                                                    NetworkRow.project_id.is_(None)))
            if row is None:
                cidr = self.settings.default_network_cidr or self._pick_subnet(s)
                plan = ipam.NetworkPlan.from_cidr(cidr)   # InvalidInput when it is not a network
                row = NetworkRow(id=new_id("network"), name=DEFAULT, cidr=plan.cidr,
                                 gateway=plan.gateway, bridge=self.settings.bridge_name,
                                 project_id=None, shared=True, mode="nat", driver="bridge")
                s.add(row)
                log.info("default network %s on bridge %s", row.cidr, row.bridge)
            net_model = _to_model(row)
        self.node.ensure_network(self.spec(net_model))
        return net_model

    def ensure_all(self) -> builtins.list[Network]:
        """Every network's host side made or repaired (the default one first), each one's DNS
        set to its live instances. A network whose host side fails is logged, not fatal."""
        default = self.ensure_default()
        nets = [default]
        for net in self.list(SYSTEM, all_projects=True):
            if net.id == default.id:
                continue
            try:
                self.node.ensure_network(self.spec(net))
            except Exception:
                log.exception("network %s (%s) could not be made on the host", net.name, net.id)
                continue
            nets.append(net)
        return nets

    def _pick_subnet(self, s: Session) -> str:
        taken = list(self.node.host_networks()) + [r.cidr for r in s.scalars(select(NetworkRow))]
        return ipam.pick_subnet(prefix=self.settings.network_prefix, taken=taken,
                                 seed=self.settings.cloud_id)

    # --- reading
    @staticmethod
    def _sees(caller: Caller, r: Any) -> bool:
        return (caller is SYSTEM or caller.is_admin or r.project_id is None or bool(r.shared)
                or r.project_id == caller.project_id)

    def get(self, name: str = DEFAULT, *, caller: Caller = SYSTEM,
            session: Session | None = None) -> Network:
        """By name or id, as `caller` sees it: its project's own network first, then a shared
        one; another project's is not found. `session`: read in the caller's transaction."""
        if session is None:
            with self.db.reader() as s:
                return self.get(name, caller=caller, session=session or s)
        if is_id(name, "network"):
            r = session.get(NetworkRow, name)
            rows = [r] if r is not None else []
        else:
            rows = list(session.scalars(select(NetworkRow).where(NetworkRow.name == name)))
        rows = [r for r in rows if self._sees(caller, r)]
        if not rows:
            raise NotFound(f"network {name!r} not found", resource="network")
        # the caller's own first, then the cloud's, then (for an admin) any project's
        rows.sort(key=lambda r: (r.project_id != caller.project_id, r.project_id is not None))
        return _to_model(rows[0], self._projects(session))

    def by_id(self, network_id: str) -> Network:
        with self.db.reader() as s:
            row = s.get(NetworkRow, network_id)
            if row is None:
                raise NotFound(f"network {network_id!r} not found", resource="network")
            return _to_model(row, self._projects(s))

    def list(self, caller: Caller = SYSTEM, *, all_projects: bool = False
             ) -> builtins.list[Network]:
        """The networks `caller` may use: its project's and the shared ones (an admin's
        `all_projects`: every one)."""
        with self.db.reader() as s:
            rows = list(s.scalars(select(NetworkRow).order_by(NetworkRow.created)))
            projects = self._projects(s)
        if all_projects and (caller is SYSTEM or caller.is_admin):
            return [_to_model(r, projects) for r in rows]
        who = caller if caller is not SYSTEM else None
        return [_to_model(r, projects) for r in rows
                if (r.project_id is None or r.shared or
                    (who is not None and r.project_id == who.project_id) or
                    (who is None and r.project_id is None))]

    @staticmethod
    def _projects(s: Session) -> dict[str, str]:
        return {p.id: p.name for p in s.scalars(select(ProjectRow))}

    def users(self, net: Network) -> builtins.list[tuple[str, str]]:
        """(id, name) of the live instances with a NIC on `net`."""
        with self.db.reader() as s:
            rows = s.execute(select(InstanceRow.id, InstanceRow.name)
                             .join(IpAllocationRow, IpAllocationRow.instance_id == InstanceRow.id)
                             .where(IpAllocationRow.network == net.id,
                                    InstanceRow.state != "terminated")).all()
            # a NIC without an address holds no allocation: look at the devices too
            more = s.execute(select(InstanceRow.id, InstanceRow.name, InstanceRow.nics)
                             .where(InstanceRow.state != "terminated")).all()
        found = {(r.id, r.name) for r in rows}
        found |= {(r.id, r.name) for r in more
                  if any(n.get("network") == net.id for n in r.nics or ())}
        return sorted(found, key=lambda x: x[1])

    # --- creating, changing, deleting
    def create(self, caller: Caller, req: NetworkRequest) -> Network:
        """A new network of the caller's project (an admin's `shared`: every project's), made on
        the host. Everything is checked first; a host failure leaves no row and no host side."""
        if not _NAME_RE.match(req.name) and not req.name_from_tag:
            raise InvalidInput(f"network name {req.name!r} is not valid: a letter, then letters, "
                               "digits, '.', '_' or '-', at most 63 characters", resource="network")
        if req.shared and not (caller is SYSTEM or caller.is_admin):
            raise Forbidden("only an administrator may share a network with every project")
        try:
            plan = ipam.NetworkPlan.from_cidr(req.subnet)
        except InvalidInput as e:
            raise InvalidInput(e.message, resource="network", reason=Reason.SUBNET_RANGE,
                               cidr=req.subnet) from None
        mode = self._mode(req.mode)
        domain = self._domain(req.dns_domain)
        if req.driver not in DRIVERS:
            raise InvalidInput(f"unknown network driver {req.driver!r} (one of "
                               f"{', '.join(DRIVERS)})", resource="network")
        gateway = self._gateway(plan, req.gateway)
        start, end = self._dhcp_range(plan, gateway, req.dhcp_range)
        host_ports = self._host_ports(req.host_ports)
        parent, mmode = "", ""
        if req.driver == "macvlan":
            parent, mmode = self._macvlan(req.parent, req.macvlan_mode)
        elif req.parent or req.macvlan_mode:
            raise InvalidInput("--parent and --mode are for the macvlan driver only",
                               resource="network")
        if req.driver not in self.node.capabilities().network:
            raise InvalidInput(f"this host has no {req.driver} network driver",
                               resource="network")
        project_id = None if req.shared else (caller.project_id or self._default_project())
        nid = new_id("network")
        name = req.name
        with self.db.session() as s:
            if req.name_from_tag and (not _NAME_RE.match(name)
                                      or self._name_taken(s, name, project_id)):
                name = nid
            if self._name_taken(s, name, project_id):
                raise Conflict(f"a network named {name!r} already exists",
                               resource="network")
            self._check_overlap(s, caller, plan.cidr, parent)
            row = NetworkRow(id=nid, name=name, cidr=plan.cidr, gateway=gateway,
                             bridge=self._bridge_for(nid) if req.driver == "bridge" else "",
                             project_id=project_id, shared=req.shared, mode=mode,
                             driver=req.driver, parent=parent, macvlan_mode=mmode,
                             dns_domain=domain, dhcp_start=start, dhcp_end=end,
                             host_ports=list(host_ports), description=req.description,
                             created=utcnow())
            s.add(row)
            s.flush()
            net = _to_model(row, self._projects(s))
        with Reverter() as rev:   # a host failure takes the row away again
            rev.add(lambda: self._forget(net.id), "network row")
            rev.add(lambda: self.node.teardown_network(self.spec(net)), "network host side")
            self.node.ensure_network(self.spec(net))
            rev.success()
        log.info("network %s %s (%s, %s) made", net.name, net.cidr, net.mode, net.driver)
        self._tell("made", net)
        return net

    @staticmethod
    def _name_taken(s: Session, name: str, project_id: str | None) -> bool:
        owner = NetworkRow.project_id == project_id if project_id is not None \
            else NetworkRow.project_id.is_(None)
        return s.scalar(select(NetworkRow.id).where(NetworkRow.name == name, owner)) is not None

    def update(self, caller: Caller, ref: str, change: NetworkUpdate) -> Network:
        """Changes what may change and re-applies the host side (rules, DNS server) at once."""
        with self.db.session() as s:
            net = self.get(ref, caller=caller, session=s)
            self._may_change(caller, net)
            row = s.get(NetworkRow, net.id)
            assert row is not None
            if change.mode is not None:
                if net.driver != "bridge" and change.mode != net.mode:
                    raise InvalidInput("a macvlan network has no mode to change: the segment "
                                       "routes it", resource="network")
                row.mode = self._mode(change.mode)
            if change.dns_domain is not None:
                row.dns_domain = self._domain(change.dns_domain)
            if change.dhcp_range is not None:
                plan = ipam.NetworkPlan.from_cidr(net.cidr)
                row.dhcp_start, row.dhcp_end = self._dhcp_range(plan, net.gateway,
                                                                change.dhcp_range or None)
            if change.host_ports is not None:
                row.host_ports = list(self._host_ports(change.host_ports))
            if change.shared is not None and change.shared != net.shared:
                raise InvalidInput("a network's sharing is chosen when it is made",
                                   resource="network")
            if change.description is not None:
                row.description = change.description
            s.flush()
            new = _to_model(row, self._projects(s))
            self.node.ensure_network(self.spec(new))   # a failure rolls the change back
        return new

    def delete(self, caller: Caller, ref: str) -> None:
        """Refused while an instance uses it (naming them) and for the default network."""
        net = self.get(ref, caller=caller)
        self._may_change(caller, net)
        if net.name == DEFAULT and net.project_id is None:
            raise Conflict("the default network cannot be deleted", resource="network")
        users = self.users(net)
        if users:
            raise InUse(f"network {net.name!r} is in use by "
                           f"{', '.join(n for _, n in users)}", resource="network",
                           instances=[i for i, _ in users])
        self.node.teardown_network(self.spec(net))
        with self.db.session() as s:
            s.execute(delete(IpAllocationRow).where(IpAllocationRow.network == net.id))
            s.execute(delete(NetworkRow).where(NetworkRow.id == net.id))
        log.info("network %s (%s) deleted", net.name, net.id)
        self._tell("gone", net)

    def _forget(self, network_id: str) -> None:
        with self.db.session() as s:
            s.execute(delete(NetworkRow).where(NetworkRow.id == network_id))

    @staticmethod
    def _may_change(caller: Caller, net: Network) -> None:
        if caller is SYSTEM or caller.is_admin:
            return
        if net.project_id != caller.project_id:
            raise Forbidden(f"network {net.name!r} is shared with your project: only an "
                            "administrator may change it")

    def _default_project(self) -> str:
        with self.db.reader() as s:
            pid = s.scalar(select(ProjectRow.id).where(ProjectRow.name == "default"))
        return pid or ""

    def _bridge_for(self, network_id: str) -> str:
        h = hashlib.sha256(f"{self.settings.cloud_id}|{network_id}".encode()).hexdigest()[:8]
        return f"{BRIDGE_PREFIX}{h}"

    # --- the checks
    @staticmethod
    def _mode(mode: str) -> str:
        if mode not in MODES:
            raise InvalidInput(f"unknown network mode {mode!r} (one of {', '.join(MODES)})",
                               resource="network")
        return mode

    @staticmethod
    def _domain(domain: str) -> str:
        d = domain.strip().strip(".").lower()
        if d and not _DOMAIN_RE.match(d):
            raise InvalidInput(f"invalid DNS domain {domain!r}", resource="network")
        return d

    @staticmethod
    def _gateway(plan: ipam.NetworkPlan, gateway: str | None) -> str:
        if not gateway:
            return plan.gateway
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise InvalidInput(f"invalid gateway address {gateway!r}", resource="network") from None
        net = ipaddress.IPv4Network(plan.cidr)
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise InvalidInput(f"gateway {gateway} is not a host address of {plan.cidr}",
                               resource="network")
        return str(gw)

    @staticmethod
    def _dhcp_range(plan: ipam.NetworkPlan, gateway: str, rng: str | None) -> tuple[str, str]:
        if not rng:
            return "", ""
        parts = rng.replace(",", "-").split("-")
        if len(parts) != 2:
            raise InvalidInput(f"invalid DHCP range {rng!r}: expected FIRST-LAST",
                               resource="network")
        try:
            a, b = (ipaddress.IPv4Address(p.strip()) for p in parts)
        except ValueError:
            raise InvalidInput(f"invalid DHCP range {rng!r}: expected two IPv4 addresses",
                               resource="network") from None
        net = ipaddress.IPv4Network(plan.cidr)
        hosts = (net.network_address, net.broadcast_address)
        if a not in net or b not in net or a in hosts or b in hosts:
            raise InvalidInput(f"DHCP range {rng} is not inside {plan.cidr}", resource="network")
        if a > b:
            raise InvalidInput(f"DHCP range {rng}: the first address is after the last",
                               resource="network")
        gw = ipaddress.IPv4Address(gateway)
        if a <= gw <= b and a == b:
            raise InvalidInput(f"DHCP range {rng} holds only the gateway", resource="network")
        return str(a), str(b)

    @staticmethod
    def _host_ports(ports: tuple[str, ...] | builtins.list[str]) -> tuple[str, ...]:
        out = []
        for p in ports:
            m = _HOST_PORT_RE.match(p.strip().lower())
            if not m or not (1 <= int(m.group(2)) <= 65535) or (
                    m.group(3) and not int(m.group(2)) <= int(m.group(3)) <= 65535):
                raise InvalidInput(f"invalid host port {p!r}: expected tcp/PORT, udp/PORT or "
                                   "tcp/FIRST-LAST", resource="network")
            out.append(m.group(0))
        return tuple(dict.fromkeys(out))

    def _macvlan(self, parent: str, mode: str) -> tuple[str, str]:
        if not parent:
            raise InvalidInput("a macvlan network needs --parent IFACE (a host interface)",
                               resource="network")
        mode = mode or "bridge"
        if mode not in MACVLAN_MODES:
            raise InvalidInput(f"unknown macvlan mode {mode!r} (one of "
                               f"{', '.join(MACVLAN_MODES)})", resource="network")
        if parent not in self.node.host_interfaces():
            raise InvalidInput(f"unknown parent interface {parent!r}: this host has no such "
                               "interface", resource="network", parent=parent)
        return parent, mode

    def _check_overlap(self, s: Session, caller: Caller, cidr: str, parent: str) -> None:
        """A subnet may overlap no other network of this cloud (instances route through one
        host) and no route of the host (its traffic would go the wrong way) — except, for a
        macvlan network, the subnet of its own parent's segment."""
        new = ipaddress.IPv4Network(cidr)
        for r in s.scalars(select(NetworkRow)):
            if new.overlaps(ipaddress.IPv4Network(r.cidr)):
                mine = self._sees(caller, r)
                raise Conflict(f"subnet {cidr} overlaps "
                               + (f"network {r.name!r} ({r.cidr})" if mine else
                                  "a network of another project"), resource="network",
                               reason=Reason.OVERLAP)
        ours = {r.cidr for r in s.scalars(select(NetworkRow))}
        segment = set(self.node.host_networks(parent)) if parent else set()
        for h in self.node.host_networks():
            if h in ours or h in segment:
                continue
            if new.overlaps(ipaddress.IPv4Network(h, strict=False)):
                raise Conflict(f"subnet {cidr} collides with the host's route to {h}",
                               resource="network", reason=Reason.OVERLAP)

    # --- addresses
    def nic_template(self, net: Network, name: str = "eth0") -> Nic:
        """A NIC on `net` as the host must plug it in, before its address and MAC are chosen."""
        bridge = net.driver == "bridge"
        return Nic(network=net.id, mac="", ipv4=None, prefix=self.prefix_len(net),
                   gateway=net.gateway, name=name, link=net.bridge if bridge else net.parent,
                   driver=net.driver, mode=net.macvlan_mode,
                   nameservers=(net.gateway,) if bridge else (),
                   search=(net.dns_domain,) if net.dns_domain else (), network_name=net.name)

    def attach(self, s: Session, net: Network, template: Nic, instance_id: str,
               ip: str | None = None) -> Nic:
        """`template` with an address of `net` allocated to `instance_id` (in the caller's
        transaction; `ip`: that one, else the next free) and the MAC that address always gets."""
        addr = self.allocate(s, net, instance_id, ip)
        return replace(template, ipv4=addr, mac=ipam.mac_for(addr, self.settings.cloud_id),
                       id=template.id or _nic_id(instance_id, template.name))

    def check_ip(self, net: Network, ip: str) -> str:
        """`ip` as a fixed address of `net`: InvalidInput outside it or on a reserved address."""
        try:
            addr = str(ipaddress.IPv4Address(ip))
        except ValueError:
            raise InvalidInput(f"invalid IPv4 address {ip!r}", resource="network") from None
        plan = ipam.NetworkPlan.from_cidr(net.cidr)
        if ipaddress.IPv4Address(addr) not in ipaddress.IPv4Network(net.cidr):
            raise InvalidInput(f"address {addr} is outside network {net.name!r} ({net.cidr})",
                               resource="network")
        if addr == net.gateway or not plan.is_usable(addr) and addr != plan.gateway:
            raise InvalidInput(f"address {addr} is reserved on network {net.name!r} (network, "
                               "gateway or broadcast)", resource="network")
        return addr

    def allocate(self, s: Session, net: Network, instance_id: str, ip: str | None = None) -> str:
        """An unused address of `net` for `instance_id`, inside the caller's transaction.
        SQLite transactions are serialised (BEGIN IMMEDIATE); elsewhere the primary key
        refuses a duplicate (when the caller's transaction flushes) and it fails rather than
        sharing an address."""
        conn = s.connection()
        used = set(conn.execute(_USED, {"network": net.id}).scalars())
        used.add(net.gateway)
        if ip is not None:
            addr = self.check_ip(net, ip)
            if addr in used:
                raise Conflict(f"address {addr} is already in use on network {net.name!r}",
                               resource="network", reason=Reason.ADDRESS_IN_USE)
        else:
            addr = self._next_free(net, used)
        conn.execute(_ALLOCATE, {"network": net.id, "address": addr, "instance_id": instance_id,
                                 "created": utcnow()})
        return addr

    def free_counts(self, nets: builtins.list[Network]) -> dict[str, int]:
        """How many addresses each network still has to give (its DHCP range's, else its
        subnet's), by network id."""
        with self.db.reader() as s:
            rows = s.execute(select(IpAllocationRow.network, IpAllocationRow.address).where(
                IpAllocationRow.network.in_([n.id for n in nets]))).all()
        used: dict[str, set[str]] = {}
        for network, address in rows:
            used.setdefault(network, set()).add(address)
        out = {}
        for net in nets:
            if net.dhcp_start and net.dhcp_end:
                first, last = net.dhcp_start, net.dhcp_end
            else:
                plan = ipam.NetworkPlan.from_cidr(net.cidr)
                first, last = plan.first, plan.last
            lo, hi = int(ipaddress.IPv4Address(first)), int(ipaddress.IPv4Address(last))
            taken = {int(ipaddress.IPv4Address(a)) for a in used.get(net.id, ())}
            taken.add(int(ipaddress.IPv4Address(net.gateway)))
            out[net.id] = (hi - lo + 1) - sum(1 for a in taken if lo <= a <= hi)
        return out

    @staticmethod
    def _next_free(net: Network, used: set[str]) -> str:
        if not (net.dhcp_start and net.dhcp_end):
            return ipam.next_free(net.cidr, used)
        first = int(ipaddress.IPv4Address(net.dhcp_start))
        last = int(ipaddress.IPv4Address(net.dhcp_end))
        for n in range(first, last + 1):
            a = str(ipaddress.IPv4Address(n))
            if a not in used:
                return a
        raise Exhausted(f"network {net.name!r} has no free address left in its range "
                        f"{net.dhcp_start}-{net.dhcp_end}", cidr=net.cidr)

    def release(self, s: Session, instance_id: str, network: str | None = None,
                address: str | None = None) -> None:
        """The instance's addresses (all, or one network's, or one) go back to their networks."""
        q = delete(IpAllocationRow).where(IpAllocationRow.instance_id == instance_id)
        if network is not None:
            q = q.where(IpAllocationRow.network == network)
        if address is not None:
            q = q.where(IpAllocationRow.address == address)
        s.execute(q)

    # --- DNS
    def add_dns(self, net: Network, nic: Nic, name: str) -> None:
        """`name` resolves to the NIC's address on its network (and DHCP offers it that address)."""
        if nic.ipv4 and net.driver == "bridge":
            self.node.add_dns(self.spec(net), {name: nic.ipv4}, {name: nic.mac} if nic.mac else None)

    def remove_dns(self, net: Network, names: builtins.list[str]) -> None:
        if net.driver != "bridge":
            return
        try:
            self.node.remove_dns(self.spec(net), names)
        except Exception:
            log.exception("DNS removal of %s on %s failed", ", ".join(names), net.name)

    def refresh_dns(self, net: Network) -> None:
        """The network's DNS knows exactly its live instances (at start-up, after a restart)."""
        if net.driver != "bridge":
            return
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


def network_spec(settings: Settings, net: Network) -> NetworkSpec:
    """What a host gets of a network."""
    dhcp = (net.dhcp_start, net.dhcp_end) if net.dhcp_start and net.dhcp_end else None
    return NetworkSpec(name=net.name, bridge=net.bridge, cidr=net.cidr, gateway=net.gateway,
                       nat=net.nat, nft_table=settings.nft_table,
                       metadata_port=settings.metadata_port or None, driver=net.driver,
                       mode=net.mode, dns_domain=net.dns_domain, dhcp_range=dhcp,
                       parent=net.parent, macvlan_mode=net.macvlan_mode,
                       host_ports=tuple(net.host_ports), bridge_prefix=BRIDGE_PREFIX)


def network_of_row(row: Any) -> Network:
    return _to_model(row)


def _nic_id(instance_id: str, nic_name: str) -> str:
    """EC2's network interface id of an instance's NIC: stable, derived (no table of its own)."""
    return "eni-" + hashlib.sha256(f"{instance_id}|{nic_name}".encode()).hexdigest()[:17]
