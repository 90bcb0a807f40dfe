"""Security groups: named sets of allow rules per project, the instances in them, and pushing both to
the host's firewall (drivers/network/secgroups.py through the node client).

Rules of the product kept here and nowhere else:
- every project has a group named `default`, made on first need: egress to anywhere, ingress from
  its own members; a new group allows all egress (as EC2's VPC groups do) and no ingress;
- every instance is in at least one group: those named at launch, else its project's default;
- a rule change and a change of an instance's groups reach the host at once (one transaction);
- a group is deleted only when no instance is in it and no other group's rule names it, and never
  the `default` one; the same rule twice in a group is a Conflict.
The database says what should be; `sync_host` makes the host say the same (controller start-up).
"""

from __future__ import annotations

import builtins
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lxcloud.core.caller import DEFAULT_PROJECT, Caller
from lxcloud.core.errors import Conflict, InUse, InvalidInput, NotFound
from lxcloud.core.ids import is_id, new_id
from lxcloud.core.instance import Nic, nic_from_dict, nic_to_dict
from lxcloud.core.lifecycle import State
from lxcloud.db.engine import Database
from lxcloud.db.tables import (
    InstanceRow,
    InstanceSecurityGroupRow,
    ProjectRow,
    SecurityGroupRow,
    SecurityGroupRuleRow,
)
from lxcloud.drivers.network.secgroups import GroupPolicy, SecurityGroupRule, check_rule
from lxcloud.node.protocol import NodeClient

log = logging.getLogger(__name__)

DEFAULT = "default"
ANYWHERE = "0.0.0.0/0"
MAX_NAME = 255


@dataclass(frozen=True)
class RuleSpec:
    """A rule as asked for. tcp/udp: ports port_from..port_to (none: all); icmp: port_from is the
    type and port_to the code (-1: any); the peer is `cidr` or the members of `source_group` (a
    group name or id of the same project), anywhere when neither is given."""

    direction: str
    protocol: str = "all"
    port_from: int | None = None
    port_to: int | None = None
    cidr: str | None = None
    source_group: str | None = None
    description: str = ""


@dataclass(frozen=True)
class GroupRule:
    id: str
    group_id: str
    direction: str
    protocol: str
    port_from: int | None
    port_to: int | None
    cidr: str | None
    source_group: str | None            # a group id
    source_group_name: str | None = None
    description: str = ""

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.direction, self.protocol, self.port_from, self.port_to, self.cidr,
                self.source_group)


@dataclass
class SecurityGroup:
    id: str
    project_id: str
    name: str
    description: str
    created: datetime
    rules: list[GroupRule] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)    # live instances in it (ids)

    def ingress(self) -> list[GroupRule]:
        return [r for r in self.rules if r.direction == "ingress"]

    def egress(self) -> list[GroupRule]:
        return [r for r in self.rules if r.direction == "egress"]


def normalize(spec: RuleSpec) -> RuleSpec:
    """One spelling per rule (so that duplicates are found): tcp/udp without ports = 0-65535,
    icmp without type = -1/-1, all = no ports, no peer = anywhere; InvalidInput when the driver
    could not express it."""
    proto = (spec.protocol or "all").lower()
    lo, hi = spec.port_from, spec.port_to
    if proto == "all":
        lo = hi = None
    elif proto in ("tcp", "udp"):
        if lo is None and hi is None:
            lo, hi = 0, 65535
        elif hi is None:
            hi = lo
    elif proto == "icmp":
        lo = -1 if lo is None else lo
        hi = -1 if hi is None or lo == -1 else hi
    cidr = spec.cidr
    if cidr is not None:
        try:
            cidr = str(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise InvalidInput(f"invalid CIDR {spec.cidr!r}", resource="security_group_rule"
                               ) from None
    if cidr is None and spec.source_group is None:
        cidr = ANYWHERE
    out = replace(spec, protocol=proto, port_from=lo, port_to=hi, cidr=cidr)
    check_rule(SecurityGroupRule(out.direction, out.protocol, out.port_from, out.port_to,
                                 out.cidr, out.source_group))
    return out


def _rule(r: SecurityGroupRuleRow, names: dict[str, str]) -> GroupRule:
    return GroupRule(id=r.id, group_id=r.group_id, direction=r.direction, protocol=r.protocol,
                     port_from=r.port_from, port_to=r.port_to, cidr=r.cidr,
                     source_group=r.source_group,
                     source_group_name=names.get(r.source_group or ""),
                     description=r.description or "")


def policy(g: SecurityGroup) -> GroupPolicy:
    """What the host's firewall gets of a group."""
    return GroupPolicy(g.id, tuple(SecurityGroupRule(r.direction, r.protocol, r.port_from,
                                                     r.port_to, r.cidr, r.source_group)
                                   for r in g.rules))


def _live(s: Session, instance_ids: Iterable[str]) -> builtins.list[str]:
    ids = builtins.list(instance_ids)
    if not ids:
        return []
    return builtins.list(s.scalars(select(InstanceRow.id).where(
        InstanceRow.id.in_(ids), InstanceRow.state != State.TERMINATED)))


class SecurityGroupService:
    def __init__(self, db: Database, node: NodeClient) -> None:
        self.db = db
        self.node = node
        # an instance's record (to push its NICs); set by the cloud: the instance service's
        self.instance_of: Callable[[str, Caller], Any] | None = None
        self._default_pid: str | None = None

    # --- reading
    def _pid(self, caller: Caller) -> str:
        """The caller's project; internal callers (project "") act for the default project, as
        everywhere else."""
        if caller.project_id:
            return caller.project_id
        if self._default_pid is None:
            with self.db.reader() as s:
                self._default_pid = s.scalar(select(ProjectRow.id).where(
                    ProjectRow.name == DEFAULT_PROJECT)) or ""
        return self._default_pid

    def _load(self, s: Session, rows: Sequence[SecurityGroupRow]) -> builtins.list[SecurityGroup]:
        ids = [r.id for r in rows]
        if not ids:
            return []
        rules = builtins.list(s.scalars(select(SecurityGroupRuleRow).where(
            SecurityGroupRuleRow.group_id.in_(ids)).order_by(SecurityGroupRuleRow.created,
                                                              SecurityGroupRuleRow.id)))
        refs = {r.source_group for r in rules if r.source_group}
        names = {g.id: g.name for g in rows}
        missing = refs - set(names)
        if missing:
            names.update({g.id: g.name for g in s.scalars(
                select(SecurityGroupRow).where(SecurityGroupRow.id.in_(missing)))})
        members: dict[str, builtins.list[str]] = {i: [] for i in ids}
        for m in s.execute(select(InstanceSecurityGroupRow.group_id,
                                  InstanceSecurityGroupRow.instance_id)
                           .join(InstanceRow, InstanceRow.id == InstanceSecurityGroupRow.instance_id)
                           .where(InstanceSecurityGroupRow.group_id.in_(ids),
                                  InstanceRow.state != State.TERMINATED)
                           .order_by(InstanceSecurityGroupRow.instance_id)):
            members[m.group_id].append(m.instance_id)
        out = []
        for g in rows:
            out.append(SecurityGroup(id=g.id, project_id=g.project_id, name=g.name,
                                     description=g.description or "", created=g.created,
                                     rules=[_rule(r, names) for r in rules if r.group_id == g.id],
                                     instances=members[g.id]))
        return out

    def _row(self, s: Session, ref: str, project_id: str) -> SecurityGroupRow:
        """A group of the project by id or name (the project's default made on first need)."""
        q = select(SecurityGroupRow).where(SecurityGroupRow.project_id == project_id)
        if is_id(ref, "security_group"):
            row = s.scalar(q.where(SecurityGroupRow.id == ref))
        else:
            row = s.scalar(q.where(SecurityGroupRow.name == ref))
            if row is None and ref == DEFAULT:
                try:
                    with s.begin_nested():   # two first needs at once (PostgreSQL): one wins
                        row = self._make_default(s, project_id)
                except IntegrityError:
                    row = s.scalar(q.where(SecurityGroupRow.name == ref))
        if row is None:
            raise NotFound(f"security group {ref!r} not found", resource="security_group")
        return row

    def list(self, caller: Caller, *, ids: Sequence[str] = (), names: Sequence[str] = ()
             ) -> builtins.list[SecurityGroup]:
        """The caller's groups, `default` first (made when first asked for); `ids` or
        `names`: exactly those, NotFound naming the first missing one."""
        with self.db.session() as s:
            self._row(s, DEFAULT, self._pid(caller))
            if ids or names:
                rows = [self._row(s, r, self._pid(caller)) for r in (*ids, *names)]
                rows = builtins.list({r.id: r for r in rows}.values())
            else:
                rows = builtins.list(s.scalars(select(SecurityGroupRow).where(
                    SecurityGroupRow.project_id == self._pid(caller)).order_by(
                    SecurityGroupRow.name != DEFAULT, SecurityGroupRow.created,
                    SecurityGroupRow.name)))
            return self._load(s, rows)

    def get(self, ref: str, caller: Caller) -> SecurityGroup:
        with self.db.session() as s:
            return self._load(s, [self._row(s, ref, self._pid(caller))])[0]

    # --- groups
    @staticmethod
    def _check_name(name: str) -> None:
        if not name or len(name) > MAX_NAME or name.strip() != name:
            raise InvalidInput(f"invalid security group name {name!r} (1-{MAX_NAME} characters, "
                               "no leading or trailing space)", resource="security_group")
        if name.lower().startswith("sg-"):
            raise InvalidInput(f"a security group name may not start with 'sg-' ({name!r})",
                               resource="security_group")

    def _insert(self, s: Session, project_id: str, name: str, description: str,
                rules: Sequence[RuleSpec]) -> SecurityGroupRow:
        row = SecurityGroupRow(id=new_id("security_group"), project_id=project_id, name=name,
                               description=description)
        s.add(row)
        s.flush()
        for r in rules:
            src = row.id if r.source_group == name else None
            s.add(SecurityGroupRuleRow(id=new_id("security_group_rule"), group_id=row.id,
                                       direction=r.direction, protocol=r.protocol,
                                       port_from=r.port_from, port_to=r.port_to, cidr=r.cidr,
                                       source_group=src, description=r.description))
        s.flush()
        return row

    def _make_default(self, s: Session, project_id: str) -> SecurityGroupRow:
        return self._insert(s, project_id, DEFAULT, "default security group", [
            RuleSpec("egress", cidr=ANYWHERE), RuleSpec("ingress", source_group=DEFAULT)])

    def create(self, name: str, caller: Caller, description: str = "") -> SecurityGroup:
        """A new group that allows all egress and no ingress; Conflict when the name is taken."""
        self._check_name(name)
        with self.db.session() as s:
            taken = s.scalar(select(SecurityGroupRow.id).where(
                SecurityGroupRow.project_id == self._pid(caller), SecurityGroupRow.name == name))
            if taken is not None or name == DEFAULT:
                raise Conflict(f"the security group {name!r} already exists",
                               resource="security_group")
            row = self._insert(s, self._pid(caller), name, description,
                               [RuleSpec("egress", cidr=ANYWHERE)])
            return self._load(s, [row])[0]

    def delete(self, ref: str, caller: Caller) -> None:
        """Refused (Conflict) for `default`, while instances are in it, or while another group's
        rule names it."""
        with self.db.session() as s:
            row = self._row(s, ref, self._pid(caller))
            if row.name == DEFAULT:
                raise Conflict("the default security group cannot be deleted",
                               resource="security_group_default")
            users = _live(s, s.scalars(select(InstanceSecurityGroupRow.instance_id).where(
                InstanceSecurityGroupRow.group_id == row.id)))
            if users:
                raise InUse(f"security group {row.name!r} is in use by instance(s) "
                               f"{', '.join(sorted(users))}", resource="security_group_in_use",
                               instances=sorted(users))
            named_by = builtins.list(s.scalars(
                select(SecurityGroupRow.name).join(
                    SecurityGroupRuleRow, SecurityGroupRuleRow.group_id == SecurityGroupRow.id)
                .where(SecurityGroupRuleRow.source_group == row.id,
                       SecurityGroupRow.id != row.id)))
            if named_by:
                raise InUse(f"security group {row.name!r} is named by a rule of "
                               f"{', '.join(sorted(set(named_by)))}",
                               resource="security_group_in_use")
            s.execute(delete(InstanceSecurityGroupRow).where(
                InstanceSecurityGroupRow.group_id == row.id))
            s.execute(delete(SecurityGroupRuleRow).where(SecurityGroupRuleRow.group_id == row.id))
            s.delete(row)
            gid = row.id
        try:   # its chains and set, unused now (a full sync at start-up drops them too)
            self.node.remove_security_group(gid)
        except Exception:
            log.exception("the rules of deleted security group %s stay on the host", gid)

    # --- rules
    def _resolved(self, s: Session, project_id: str, specs: Sequence[RuleSpec]
                  ) -> builtins.list[RuleSpec]:
        out = []
        for spec in specs:
            n = normalize(spec)
            if n.source_group is not None:
                n = replace(n, source_group=self._row(s, n.source_group, project_id).id)
            out.append(n)
        return out

    @staticmethod
    def _key(r: RuleSpec | SecurityGroupRuleRow) -> tuple[Any, ...]:
        return (r.direction, r.protocol, r.port_from, r.port_to, r.cidr, r.source_group)

    def add_rules(self, ref: str, specs: Sequence[RuleSpec], caller: Caller) -> SecurityGroup:
        """Adds every rule or none (Conflict when one is there already); running members see them
        at once."""
        if not specs:
            raise InvalidInput("no rule given", resource="security_group_rule")
        with self.db.session() as s:
            row = self._row(s, ref, self._pid(caller))
            wanted = self._resolved(s, self._pid(caller), specs)
            have = {self._key(r) for r in s.scalars(select(SecurityGroupRuleRow).where(
                SecurityGroupRuleRow.group_id == row.id))}
            for w in wanted:
                if self._key(w) in have:
                    raise Conflict(f"the rule {describe(w)} already exists in {row.name!r}",
                                   resource="security_group_rule")
                have.add(self._key(w))
                s.add(SecurityGroupRuleRow(id=new_id("security_group_rule"), group_id=row.id,
                                           direction=w.direction, protocol=w.protocol,
                                           port_from=w.port_from, port_to=w.port_to,
                                           cidr=w.cidr, source_group=w.source_group,
                                           description=w.description))
            s.flush()
            group = self._load(s, [row])[0]
        self.node.update_security_group(policy(group))
        return group

    def remove_rules(self, ref: str, specs: Sequence[RuleSpec], caller: Caller) -> SecurityGroup:
        """Removes every rule or none (NotFound when one is not in the group)."""
        if not specs:
            raise InvalidInput("no rule given", resource="security_group_rule")
        with self.db.session() as s:
            row = self._row(s, ref, self._pid(caller))
            wanted = self._resolved(s, self._pid(caller), specs)
            have = {self._key(r): r for r in s.scalars(select(SecurityGroupRuleRow).where(
                SecurityGroupRuleRow.group_id == row.id))}
            for w in wanted:
                if self._key(w) not in have:
                    raise NotFound(f"the rule {describe(w)} is not in {row.name!r}",
                                   resource="security_group_rule")
            for w in wanted:
                s.delete(have.pop(self._key(w)))
            s.flush()
            group = self._load(s, [row])[0]
        self.node.update_security_group(policy(group))
        return group

    # --- instances
    def resolve(self, s: Session, caller: Caller, refs: Sequence[str]) -> tuple[str, ...]:
        """The ids of the groups an instance is to be in (the project's default when none is
        named), in the caller's transaction; NotFound for an unknown one."""
        rows = [self._row(s, r, self._pid(caller)) for r in (refs or [DEFAULT])]
        return tuple(dict.fromkeys(r.id for r in rows))

    def kept(self, s: Session, project_id: str, group_ids: Sequence[str]) -> tuple[str, ...]:
        """Of `group_ids`, those of the project that exist (an instance imported from elsewhere
        names groups this cloud may not have); the project's default when none is left."""
        have = set(s.scalars(select(SecurityGroupRow.id).where(
            SecurityGroupRow.project_id == project_id, SecurityGroupRow.id.in_(list(group_ids)))))
        kept = tuple(g for g in group_ids if g in have)
        return kept or (self._row(s, DEFAULT, project_id).id,)

    @staticmethod
    def join(s: Session, instance_id: str, group_ids: Sequence[str]) -> None:
        """The instance's membership rows become `group_ids` (in the caller's transaction)."""
        s.execute(delete(InstanceSecurityGroupRow).where(
            InstanceSecurityGroupRow.instance_id == instance_id))
        for i, gid in enumerate(group_ids):
            s.add(InstanceSecurityGroupRow(instance_id=instance_id, group_id=gid, position=i))

    def policies(self, s: Session, group_ids: Iterable[str]) -> builtins.list[GroupPolicy]:
        """The groups and, for their rules' source groups, those too (they have member sets)."""
        ids = set(group_ids)
        rows = builtins.list(s.scalars(select(SecurityGroupRow).where(
            SecurityGroupRow.id.in_(ids))))
        return [policy(g) for g in self._load(s, rows)]

    def for_instance(self, nics: Sequence[Nic]) -> builtins.list[GroupPolicy]:
        """What the host needs before an instance with these NICs runs."""
        with self.db.reader() as s:
            return self.policies(s, {g for n in nics for g in n.security_groups})

    def secure(self, instance_id: str, nics: Sequence[Nic]) -> None:
        """Push the instance's ports and their groups' rules to its host."""
        self.node.secure_instance(instance_id, nics, self.for_instance(nics))

    def set_instance_groups(self, instance: str, refs: Sequence[str], caller: Caller
                            ) -> builtins.list[SecurityGroup]:
        """The instance's groups become `refs` (at least one), at once on its host."""
        if not refs:
            raise InvalidInput("an instance is in at least one security group",
                               resource="security_group")
        assert self.instance_of is not None
        inst = self.instance_of(instance, caller)
        # the instance's project's groups (an admin may act on another project's instance)
        owner = replace(caller, project_id=inst.project_id or self._pid(caller))
        with self.db.session() as s:
            gids = self.resolve(s, owner, refs)
            row = s.get(InstanceRow, inst.id)
            if row is None or row.state == State.TERMINATED:
                raise NotFound(f"instance {instance!r} not found", resource="instance")
            nics = [replace(nic_from_dict(n), security_groups=gids) for n in row.nics or []]
            row.nics = [nic_to_dict(n) for n in nics]
            self.join(s, inst.id, gids)
            groups = {g.id: g for g in self._load(s, builtins.list(s.scalars(
                select(SecurityGroupRow).where(SecurityGroupRow.id.in_(gids)))))}
        self.secure(inst.id, nics)
        return [groups[g] for g in gids]

    def of_instances(self, caller: Caller, instance_ids: Sequence[str]
                     ) -> dict[str, builtins.list[tuple[str, str]]]:
        """instance id -> [(group id, group name)] in the instance's order (of instances the
        caller was allowed to see: their groups are their project's)."""
        out: dict[str, builtins.list[tuple[str, str]]] = {i: [] for i in instance_ids}
        if not instance_ids:
            return out
        with self.db.reader() as s:
            for m in s.execute(select(InstanceSecurityGroupRow.instance_id,
                                      SecurityGroupRow.id, SecurityGroupRow.name)
                               .join(SecurityGroupRow,
                                     SecurityGroupRow.id == InstanceSecurityGroupRow.group_id)
                               .where(InstanceSecurityGroupRow.instance_id.in_(instance_ids))
                               .order_by(InstanceSecurityGroupRow.position)):
                out[m.instance_id].append((m.id, m.name))
        return out

    def names_of(self, instance_id: str) -> builtins.list[str]:
        """The names of an instance's groups (for its metadata)."""
        with self.db.reader() as s:
            return builtins.list(s.scalars(
                select(SecurityGroupRow.name).join(
                    InstanceSecurityGroupRow,
                    InstanceSecurityGroupRow.group_id == SecurityGroupRow.id)
                .where(InstanceSecurityGroupRow.instance_id == instance_id)
                .order_by(InstanceSecurityGroupRow.position)))

    @staticmethod
    def leave(s: Session, instance_id: str) -> None:
        """A terminated instance leaves its groups (in the terminating transaction)."""
        s.execute(delete(InstanceSecurityGroupRow).where(
            InstanceSecurityGroupRow.instance_id == instance_id))

    # --- the host
    def sync_host(self, nics: Mapping[str, Sequence[Nic]]) -> None:
        """The host's security-group state becomes the database's (controller start-up):
        `nics` are the live instances' NICs."""
        with self.db.reader() as s:
            groups = self.policies(s, {g for ns in nics.values() for n in ns
                                       for g in n.security_groups})
        self.node.apply_security_groups(nics, groups)


def describe(r: RuleSpec | GroupRule) -> str:
    """A rule in words: "ingress tcp 22 from 0.0.0.0/0"."""
    ports = ""
    if r.protocol in ("tcp", "udp") and r.port_from is not None:
        ports = f" {r.port_from}" if r.port_from == r.port_to else f" {r.port_from}-{r.port_to}"
    elif r.protocol == "icmp" and r.port_from not in (None, -1):
        ports = f" type {r.port_from}" + (f" code {r.port_to}" if r.port_to not in (None, -1)
                                          else "")
    peer = r.cidr or f"group {getattr(r, 'source_group_name', None) or r.source_group}"
    return f"{r.direction} {r.protocol}{ports} {'from' if r.direction == 'ingress' else 'to'} {peer}"
