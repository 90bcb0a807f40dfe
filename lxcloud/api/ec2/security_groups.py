"""EC2 security-group actions over the security-group service (every rule is the service's; this
reads EC2's parameters and renders EC2's answers).

- Groups belong to the project's default VPC (api/ec2/vpc.default_vpc_id).
- IpPermissions in both forms: the structured one (`IpPermissions.N.IpProtocol`, `FromPort`,
  `ToPort`, `IpRanges.M.CidrIp`, `UserIdGroupPairs.M.GroupId|GroupName`) and the old flat one
  (`IpProtocol`, `FromPort`, `ToPort`, `CidrIp`, `SourceSecurityGroupName`). On the wire the
  pairs are `IpPermissions.N.Groups.M.…` (botocore's serializer), UserIdGroupPairs in the docs.
- IpProtocol: tcp, udp, icmp or -1 (all), by name or number (6, 17, 1); IPv6 ranges and prefix
  lists are refused (InvalidParameterValue): this cloud is IPv4.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from lxcloud.api.ec2.common import apply_filters, owner, request_tags, tag_set
from lxcloud.api.ec2.dispatch import Ctx, action
from lxcloud.api.ec2.errors import Ec2Error, dry_run_ok
from lxcloud.api.ec2.pagination import paginate
from lxcloud.api.ec2.params import Params
from lxcloud.api.ec2.vpc import default_vpc_id, interface_groups
from lxcloud.core.errors import InvalidInput, Reason
from lxcloud.core.models import Instance
from lxcloud.services.security_groups import GroupRule, RuleSpec, SecurityGroup

GROUP_ID = re.compile(r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$")
_PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp", "1": "icmp",
              "-1": "all", "all": "all"}


def check_group_ids(ids: Iterable[str]) -> None:
    """InvalidGroupId.Malformed for an id that is not sg-…, before anything is looked up."""
    for i in ids:
        if not GROUP_ID.match(i):
            raise InvalidInput(f'Invalid id: "{i}" (expecting "sg-...")',
                               resource="security_group", reason=Reason.MALFORMED_ID)


def _port(value: Any, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise Ec2Error("InvalidParameterValue", f"Invalid value '{value}' for {name}.") from None


def _protocol(value: Any) -> str:
    proto = _PROTOCOLS.get(str(value).strip().lower())
    if proto is None:
        raise Ec2Error("InvalidParameterValue",
                       f"Invalid value '{value}' for IP protocol. Unknown protocol.")
    return proto


def _ports(proto: str, lo: int | None, hi: int | None) -> tuple[int | None, int | None]:
    """EC2's ports in the service's terms: -1 means all ports (tcp/udp) or any type/code."""
    if proto == "all":
        return None, None
    if proto in ("tcp", "udp"):
        if lo == -1 and hi in (-1, None):
            return 0, 65535
        if lo is None or hi is None:
            raise Ec2Error("InvalidParameterValue",
                           "Invalid value for portRange. Must specify both from and to ports "
                           "with TCP/UDP.")
    return lo, hi


def permissions(p: Params, direction: str) -> list[RuleSpec]:
    """The rules of a request in either form (both may be given)."""
    out: list[RuleSpec] = []
    for i, perm in enumerate(p.struct_list("IpPermissions"), start=1):
        if not isinstance(perm, dict):
            continue
        where = f"IpPermissions.{i}"
        if "IpProtocol" not in perm:
            raise Ec2Error("MissingParameter", f"The request must contain the parameter "
                                               f"{where}.IpProtocol")
        if perm.get("Ipv6Ranges") or perm.get("PrefixListIds"):
            raise Ec2Error("InvalidParameterValue",
                           "IPv6 ranges and prefix lists are not supported by this cloud.")
        proto = _protocol(perm["IpProtocol"])
        lo, hi = _ports(proto, _port(perm.get("FromPort"), f"{where}.FromPort"),
                        _port(perm.get("ToPort"), f"{where}.ToPort"))
        ranges = [r for r in perm.get("IpRanges", []) or [] if isinstance(r, dict)]
        # on the wire UserIdGroupPairs are `Groups` (their locationName); take either spelling
        pairs = [g for g in (perm.get("Groups") or perm.get("UserIdGroupPairs") or [])
                 if isinstance(g, dict)]
        for r in ranges:
            if not r.get("CidrIp"):
                raise Ec2Error("MissingParameter", f"The request must contain the parameter "
                                                   f"{where}.IpRanges.N.CidrIp")
            out.append(RuleSpec(direction, proto, lo, hi, cidr=str(r["CidrIp"]),
                                description=str(r.get("Description", ""))))
        for g in pairs:
            ref = g.get("GroupId") or g.get("GroupName")
            if not ref:
                raise Ec2Error("MissingParameter", "The request must contain the parameter "
                                                   "GroupId or GroupName of a UserIdGroupPair")
            if g.get("GroupId"):
                check_group_ids([str(ref)])
            out.append(RuleSpec(direction, proto, lo, hi, source_group=str(ref),
                                description=str(g.get("Description", ""))))
        if not ranges and not pairs:   # EC2: a permission without a peer means anywhere
            out.append(RuleSpec(direction, proto, lo, hi, cidr="0.0.0.0/0"))
    flat_proto = p.str("IpProtocol")
    source = p.str("SourceSecurityGroupName")
    cidr = p.str("CidrIp")
    if flat_proto is not None or source or cidr:
        proto = _protocol(flat_proto if flat_proto is not None else "-1")
        lo, hi = _ports(proto, _port(p.str("FromPort"), "FromPort"),
                        _port(p.str("ToPort"), "ToPort"))
        if source:
            out.append(RuleSpec(direction, proto, lo, hi, source_group=source))
        if cidr or not source:
            out.append(RuleSpec(direction, proto, lo, hi, cidr=cidr or "0.0.0.0/0"))
    if not out:
        raise Ec2Error("MissingParameter", "The request must contain the parameter "
                                           "IpPermissions")
    return out


def render_permissions(rules: list[GroupRule], caller_owner: str) -> list[dict[str, Any]]:
    """Rules grouped as EC2 shows them: one permission per protocol and port range, with its
    CIDR ranges and group pairs."""
    perms: dict[tuple[str, int | None, int | None], dict[str, Any]] = {}
    for r in rules:
        proto = "-1" if r.protocol == "all" else r.protocol
        key = (proto, r.port_from, r.port_to)
        perm = perms.setdefault(key, {
            "ipProtocol": proto, "fromPort": r.port_from, "toPort": r.port_to, "groups": [],
            "ipRanges": [], "ipv6Ranges": [], "prefixListIds": []})
        if r.source_group:
            perm["groups"].append({"userId": caller_owner, "groupId": r.source_group,
                                   "groupName": r.source_group_name,
                                   "description": r.description or None})
        else:
            perm["ipRanges"].append({"cidrIp": r.cidr, "description": r.description or None})
    return list(perms.values())


def render_group(ctx: Ctx, g: SecurityGroup, tags: dict[str, str]) -> dict[str, Any]:
    me = owner(ctx.caller)
    return {"ownerId": me, "groupId": g.id, "groupName": g.name,
            "groupDescription": g.description, "vpcId": default_vpc_id(g.project_id),
            "ipPermissions": render_permissions(g.ingress(), me),
            "ipPermissionsEgress": render_permissions(g.egress(), me),
            "tagSet": tag_set(tags)}


def _group_ref(p: Params) -> str:
    gid = p.str("GroupId")
    if gid:
        check_group_ids([gid])
        return gid
    name = p.str("GroupName")
    if not name:
        raise Ec2Error("MissingParameter", "The request must contain the parameter GroupId or "
                                           "GroupName")
    return name


@action("CreateSecurityGroup")
def create_security_group(ctx: Ctx, p: Params) -> dict[str, Any]:
    name = p.req("GroupName")
    description = p.req("GroupDescription")
    vpc = p.str("VpcId")
    if vpc and vpc != default_vpc_id(ctx.caller.project_id):
        raise Ec2Error("InvalidVpcID.NotFound", f"The vpc ID '{vpc}' does not exist")
    tags = request_tags(p, "security-group")
    if tags:
        ctx.cloud.tags.check(tags)
    if p.dry_run():
        raise dry_run_ok()
    g = ctx.cloud.security_groups.create(name, ctx.caller, description)
    if tags:
        ctx.cloud.tags.set(ctx.caller, [g.id], tags)
    return {"return": True, "groupId": g.id, "tagSet": tag_set(tags) or None}


GROUP_FILTERS = {
    "group-name": lambda g: g.name, "group-id": lambda g: g.id,
    "description": lambda g: g.description, "owner-id": lambda g: account_of(g),
    "vpc-id": lambda g: default_vpc_id(g.project_id),
    "ip-permission.protocol": lambda g: ["-1" if r.protocol == "all" else r.protocol
                                         for r in g.ingress()],
    "ip-permission.cidr": lambda g: [r.cidr for r in g.ingress() if r.cidr],
    "ip-permission.group-id": lambda g: [r.source_group for r in g.ingress() if r.source_group],
    "egress.ip-permission.cidr": lambda g: [r.cidr for r in g.egress() if r.cidr],
}


def account_of(g: SecurityGroup) -> str:
    from lxcloud.api.ec2.common import account_id

    return account_id(g.project_id)


@action("DescribeSecurityGroups")
def describe_security_groups(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.list("GroupId")
    check_group_ids(ids)
    names = p.list("GroupName")
    groups = ctx.cloud.security_groups.list(ctx.caller, ids=ids, names=names)
    filters = p.filters()
    tags = ctx.cloud.tags.of(ctx.caller, [g.id for g in groups])
    groups = apply_filters(groups, filters, GROUP_FILTERS, lambda g: tags.get(g.id, {}))
    page, token = paginate(groups, p.int("MaxResults"), p.str("NextToken"),
                           key="DescribeSecurityGroups|" + repr(sorted(filters.items())),
                           secret=ctx.cloud.ec2_token_secret)
    return {"securityGroupInfo": [render_group(ctx, g, tags.get(g.id, {})) for g in page],
            "nextToken": token}


@action("DeleteSecurityGroup")
def delete_security_group(ctx: Ctx, p: Params) -> dict[str, Any]:
    ref = _group_ref(p)
    g = ctx.cloud.security_groups.get(ref, ctx.caller)
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.security_groups.delete(g.id, ctx.caller)
    ctx.cloud.tags.forget(g.id)
    return {"return": True, "groupId": g.id}


def _change(ctx: Ctx, p: Params, direction: str, add: bool) -> dict[str, Any]:
    ref = _group_ref(p)
    rules = permissions(p, direction)
    svc = ctx.cloud.security_groups
    if p.dry_run():
        svc.get(ref, ctx.caller)
        raise dry_run_ok()
    if add:
        svc.add_rules(ref, rules, ctx.caller)
    else:
        svc.remove_rules(ref, rules, ctx.caller)
    return {"return": True}


@action("AuthorizeSecurityGroupIngress")
def authorize_ingress(ctx: Ctx, p: Params) -> dict[str, Any]:
    return _change(ctx, p, "ingress", True)


@action("AuthorizeSecurityGroupEgress")
def authorize_egress(ctx: Ctx, p: Params) -> dict[str, Any]:
    return _change(ctx, p, "egress", True)


@action("RevokeSecurityGroupIngress")
def revoke_ingress(ctx: Ctx, p: Params) -> dict[str, Any]:
    return _change(ctx, p, "ingress", False)


@action("RevokeSecurityGroupEgress")
def revoke_egress(ctx: Ctx, p: Params) -> dict[str, Any]:
    return _change(ctx, p, "egress", False)


# --- what the instance actions use
def launch_groups(p: Params) -> tuple[str, ...]:
    """RunInstances' SecurityGroupId.N (ids) and SecurityGroup.N (names), in that order, or
    those of its NetworkInterface.N.SecurityGroupId.M (not both, as on EC2)."""
    ids = p.list("SecurityGroupId")
    names = p.list("SecurityGroup")
    groups = interface_groups(p, tuple(ids + names))   # refuses both at once
    check_group_ids([g for g in groups if g not in names])
    return groups


def group_set(ctx: Ctx, instances: list[Instance]) -> dict[str, list[dict[str, str]]]:
    """instance id -> its groupSet ([{groupId, groupName}]), from one query."""
    of = ctx.cloud.security_groups.of_instances(ctx.caller, [i.id for i in instances])
    return {iid: [{"groupId": gid, "groupName": name} for gid, name in gs]
            for iid, gs in of.items()}


def modify_groups(ctx: Ctx, inst: Instance, p: Params) -> dict[str, Any]:
    """ModifyInstanceAttribute's groupSet (GroupId.N): the instance's groups become those."""
    ids = p.list("GroupId")
    if not ids:
        raise Ec2Error("MissingParameter", "The request must contain the parameter GroupId.1")
    check_group_ids(ids)
    for i in ids:
        ctx.cloud.security_groups.get(i, ctx.caller)
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.security_groups.set_instance_groups(inst.id, ids, ctx.caller)
    return {"return": True}
