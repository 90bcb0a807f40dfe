"""NICs of an instance: hot attach and detach (running or stopped), and bandwidth limits.

Every rule about an instance's NICs after its launch lives here; the front-ends only translate.
A NIC is named eth<N> with the smallest N free (its host port is named after N, so the others
keep theirs). Attaching allocates its address in the database (the next free one, `ip`, or none
at all: then it comes up unconfigured inside), its MAC, its DNS name on its network, and gives it
the instance's security groups and limits; detaching frees all of that. eth0 is the primary
interface (its address is the instance's, its route the default one): it is never detached, as
AWS refuses to detach a primary network interface.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from lxcloud.config import Settings
from lxcloud.core import ipam
from lxcloud.core.caller import SYSTEM, Caller
from lxcloud.core.caps import ComputeCaps, NetworkCaps
from lxcloud.core.errors import (
    InvalidCombination,
    InvalidInput,
    InvalidState,
    NotFound,
)
from lxcloud.core.instance import Nic, nic_from_dict, nic_to_dict
from lxcloud.core.lifecycle import State
from lxcloud.core.models import Instance, Network, Operation
from lxcloud.core.units import parse_rate
from lxcloud.db.engine import Database
from lxcloud.db.tables import InstanceRow
from lxcloud.node.protocol import NodeClient, Progress
from lxcloud.services.instances import InstanceService
from lxcloud.services.networks import NetworkService, _nic_id
from lxcloud.services.operations import Operations

PRIMARY = "eth0"
# told after a change of an instance's NICs on its host: (instance id, its NICs now)
NicsChanged = Callable[[str, Sequence[Nic]], None]


@dataclass(frozen=True)
class RateChange:
    """Limits asked for, bits/s (None: unchanged / the default)."""

    ingress: int | None = None
    egress: int | None = None


def parse_rates(ingress: str | int | None, egress: str | int | None) -> RateChange:
    """The one reading of "10Mbit"-style limits for every front-end (None stays None)."""
    return RateChange(None if ingress is None else parse_rate(ingress, "ingress"),
                      None if egress is None else parse_rate(egress, "egress"))


class NicService:
    def __init__(self, settings: Settings, db: Database, ops: Operations, node: NodeClient,
                 instances: InstanceService, networks: NetworkService) -> None:
        self.settings = settings
        self.db = db
        self.ops = ops
        self.node = node
        self.instances = instances
        self.networks = networks
        # e.g. the security groups' host state for the instance's ports
        self.on_change: builtins.list[NicsChanged] = []
        # told (in the transaction recording it) that an instance's NIC is gone: (instance, NIC)
        self.on_detach: builtins.list[Callable[[Session, str, str], None]] = []

    # --- attach
    def attach(self, ref: str, network: str, *, ip: str | None = None, address: bool = True,
               caller: Caller = SYSTEM) -> tuple[Instance, Operation]:
        """A new NIC on `network` for the running or stopped instance `ref`: with the address
        `ip`, the next free one, or (`address` False) none. Everything is checked before a row
        is written; a host failure gives the address back."""
        inst = self.instances.get(ref, caller=caller)
        net = self.networks.get(network, caller=caller)
        self._check_state(inst, "attach a NIC to")
        if ip is not None and not address:
            raise InvalidInput("a NIC with no address takes no --ip", resource="nic")
        if any(n.network == net.id for n in inst.nics):
            raise InvalidInput(f"{inst.name} already has a NIC on network {net.name!r}: one NIC "
                               "per network", resource="nic")
        if ip is not None:
            self.networks.check_ip(net, ip)
        self._check_caps(inst, net, len(inst.nics) + 1)
        with self.db.session() as s:
            op = self.ops.begin(s, "attach-nic", inst.id, project_id=inst.project_id)
            current = self._nics(s, inst.id)      # under the instance's lock: as it is now
            name = f"eth{_free_index(current)}"
            template = self._template(inst, current, net, name)
            if address:
                nic = self.networks.attach(s, net, template, inst.id, ip)
            else:
                nic = dataclasses.replace(template, mac=ipam.mac_for(
                    f"{inst.id}|{name}", self.settings.cloud_id), id=_nic_id(inst.id, name))
        new = dataclasses.replace(inst, nics=[*current, nic])
        spec = self.instances.spec_of(new)

        def job(progress: Progress) -> dict[str, str]:
            progress(30, f"attaching {nic.name} on {net.name}")
            self.networks.add_dns(net, nic, inst.name)
            if self.instances.security_groups is not None:   # filtered before it comes up
                self.instances.security_groups.secure(inst.id, [nic])
            self.node.attach_nic(spec, nic)
            self._changed(inst.id, new.nics)
            return {"nic": nic.name, "ipv4": nic.ipv4 or "", "mac": nic.mac}

        def commit(s: Session) -> None:
            row = s.get(InstanceRow, inst.id)
            if row is not None:
                row.nics = [*(row.nics or ()), nic_to_dict(nic)]

        def on_error(err: Exception) -> None:
            self.networks.remove_dns(net, [inst.name])      # one NIC per network: this one's
            with self.db.session() as s:
                self.networks.release(s, inst.id, net.id)

        self.ops.submit(op, job, on_error=on_error, commit=commit)
        return new, op

    # --- detach
    def detach(self, ref: str, nic_name: str, *, caller: Caller = SYSTEM
               ) -> tuple[Instance, Operation]:
        """The NIC `nic_name` (eth1, or its eni- id) off the instance: its interface and port
        gone from the host, its address and DNS name freed. eth0 is refused."""
        inst = self.instances.get(ref, caller=caller)
        nic = next((n for n in inst.nics if nic_name in (n.name, n.id)), None)
        if nic is None:
            raise NotFound(f"instance {inst.name} has no NIC {nic_name!r}", resource="nic")
        if nic.name == PRIMARY or nic is inst.nics[0]:
            raise InvalidInput(f"{nic.name} is the primary interface of {inst.name}: it cannot "
                               "be detached (attach another one instead)", resource="nic")
        self._check_state(inst, "detach a NIC from")
        if inst.state == State.RUNNING and not self._compute_caps(inst).hotplug_nic:
            raise InvalidCombination(f"a {inst.kind} instance here cannot lose a NIC while it "
                                     "runs: stop it first", capability="hotplug_nic")
        net = self._network_of(nic)
        with self.db.session() as s:
            op = self.ops.begin(s, "detach-nic", inst.id, project_id=inst.project_id)
        rest = [n for n in inst.nics if n.name != nic.name]
        new = dataclasses.replace(inst, nics=rest)
        spec = self.instances.spec_of(new)

        def job(progress: Progress) -> dict[str, str]:
            progress(30, f"detaching {nic.name}")
            self.node.detach_nic(spec, nic)
            if net is not None:
                self.networks.remove_dns(net, [inst.name])
            self._changed(inst.id, rest)
            return {"nic": nic.name}

        def commit(s: Session) -> None:
            row = s.get(InstanceRow, inst.id)
            if row is not None:
                row.nics = [d for d in row.nics or () if d.get("name") != nic.name]
            if nic.ipv4 and net is not None:
                self.networks.release(s, inst.id, net.id, nic.ipv4)
            for hook in self.on_detach:
                hook(s, inst.id, nic.name)

        self.ops.submit(op, job, commit=commit)
        return new, op

    # --- limits
    def set_rates(self, ref: str, rates: RateChange, *, nic_name: str | None = None,
                  caller: Caller = SYSTEM) -> tuple[Instance, Operation]:
        """The bandwidth limits of one NIC (or of every NIC that can be limited) changed: in
        the record and the definition, and at once on a running instance."""
        inst = self.instances.get(ref, caller=caller)
        if inst.state == State.TERMINATED:
            raise InvalidState(f"instance {inst.name} is terminated", state=inst.state)
        caps = self.instances.caps.network
        targets = [n for n in inst.nics if nic_name is None or nic_name in (n.name, n.id)]
        if nic_name is not None and not targets:
            raise NotFound(f"instance {inst.name} has no NIC {nic_name!r}", resource="nic")
        if nic_name is None:
            targets = [n for n in targets if _can_limit(caps, n)]
        for n in targets:
            if not _can_limit(caps, n):
                raise InvalidCombination(f"{n.name} of {inst.name} is on a {n.driver} network: "
                                         "it has no host port to limit", capability="rate_limits")
        names = {n.name for n in targets}
        with self.db.session() as s:
            op = self.ops.begin(s, "set-rates", inst.id, project_id=inst.project_id)
            nics = [_with_rates(n, rates) if n.name in names else n
                    for n in self._nics(s, inst.id)]
        new = dataclasses.replace(inst, nics=nics)
        spec = self.instances.spec_of(new)

        def job(progress: Progress) -> None:
            for nic in nics:
                if nic.name in names:
                    self.node.set_rates(spec, nic)

        def commit(s: Session) -> None:
            row = s.get(InstanceRow, inst.id)
            if row is not None:
                row.nics = [nic_to_dict(_with_rates(n, rates)) if n.name in names else
                            nic_to_dict(n) for n in (nic_from_dict(d) for d in row.nics or ())]

        self.ops.submit(op, job, commit=commit)
        return new, op

    # --- helpers
    def _check_state(self, inst: Instance, what: str) -> None:
        if inst.state not in (State.RUNNING, State.STOPPED):
            raise InvalidState(f"cannot {what} an instance that is {inst.state}",
                               state=inst.state)

    def _compute_caps(self, inst: Instance) -> ComputeCaps:
        caps = self.instances.caps.compute.get(inst.kind)
        if caps is None:
            raise InvalidCombination(f"no host here runs {inst.kind} instances",
                                     capability="kind")
        return caps

    def _check_caps(self, inst: Instance, net: Network, count: int) -> None:
        """What the host can do, asked before any row is written."""
        node = self.instances.caps
        cc = self._compute_caps(inst)
        if count > cc.max_nics:
            raise InvalidCombination(f"a {inst.kind} instance takes at most {cc.max_nics} "
                                     "network interface(s)", capability="max_nics")
        nc = node.network.get(net.driver)
        if nc is None:
            raise InvalidCombination(f"no host here has the {net.driver} network driver",
                                     capability="network_driver")
        if inst.state == State.RUNNING and not (cc.hotplug_nic and nc.hotplug):
            raise InvalidCombination(f"a {inst.kind} instance here cannot take a NIC on a "
                                     f"{net.driver} network while it runs: stop it first",
                                     capability="hotplug_nic")

    def _template(self, inst: Instance, current: Sequence[Nic], net: Network, name: str) -> Nic:
        """The new NIC before its address: the network's template, the instance's groups and
        its limits (those of its primary NIC, where the network can limit)."""
        t = self.networks.nic_template(net, name)
        first = current[0] if current else None
        if first is not None:
            t = dataclasses.replace(t, security_groups=first.security_groups)
            if _can_limit(self.instances.caps.network, t):
                t = dataclasses.replace(t, ingress=first.ingress, egress=first.egress)
        return t

    @staticmethod
    def _nics(s: Session, instance_id: str) -> builtins.list[Nic]:
        row = s.get(InstanceRow, instance_id)
        if row is None or row.state == State.TERMINATED:
            raise NotFound(f"instance {instance_id!r} not found", resource="instance")
        return [nic_from_dict(d) for d in row.nics or ()]

    def _network_of(self, nic: Nic) -> Network | None:
        try:
            return self.networks.by_id(nic.network)
        except NotFound:
            return None

    def _changed(self, instance_id: str, nics: Sequence[Nic]) -> None:
        for hook in self.on_change:
            hook(instance_id, nics)


def _free_index(nics: Sequence[Nic]) -> int:
    used = {n.index for n in nics}
    return next(i for i in range(len(nics) + 1) if i not in used)


def _can_limit(caps: Mapping[str, NetworkCaps], nic: Nic) -> bool:
    nc = caps.get(nic.driver)
    return nc is not None and nc.rate_limits


def _with_rates(nic: Nic, rates: RateChange) -> Nic:
    return dataclasses.replace(nic, ingress=nic.ingress if rates.ingress is None else rates.ingress,
                               egress=nic.egress if rates.egress is None else rates.egress)
