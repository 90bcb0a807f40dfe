"""The EC2 VPC skin over networks: each project is one default VPC, each network it may use a
subnet of it in the zone, each NIC of its instances a network interface.

- `DescribeVpcs` shows the project's default VPC (`default_vpc_id`, deterministic), its CIDR block
  the private range holding every subnet; `CreateVpc` is unsupported, `DeleteVpc` refused.
- `DescribeSubnets`, `CreateSubnet`, `DeleteSubnet` are the network service's list, create and
  delete: subnet id = "subnet-" + the network id's hex, `DefaultForAz` for the default network.
- `RunInstances` (api/ec2/instances.py) takes `SubnetId`, `PrivateIpAddress` and
  `NetworkInterface.N` through `launch_nics`; `DescribeInstances` reports `instance_network`;
  `DescribeNetworkInterfaces` lists the NICs of the project's instances.

Every rule (who sees a network, overlaps, fixed addresses, in use) is the services'; the errors
map once in errors.py (InvalidSubnet.Conflict, InvalidSubnet.Range, DependencyViolation …).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from typing import Any

from lxcloud.api.ec2.addresses import nic_association
from lxcloud.api.ec2.common import (
    NETWORK_INTERFACE_ID,
    SUBNET_ID,
    VPC_ID,
    apply_filters,
    check_ids,
    not_found,
    owner,
    private_dns,
    request_tags,
    tag_set,
)
from lxcloud.api.ec2.dispatch import Ctx, action
from lxcloud.api.ec2.errors import Ec2Error, dry_run_ok
from lxcloud.api.ec2.pagination import paginate
from lxcloud.api.ec2.params import Params
from lxcloud.core.instance import Nic
from lxcloud.core.models import Instance, Network
from lxcloud.services.instances import NicRequest
from lxcloud.services.networks import DEFAULT, NetworkRequest

# the private ranges a VPC block is chosen from, smallest first
_PRIVATE = tuple(ipaddress.IPv4Network(c) for c in ("192.168.0.0/16", "172.16.0.0/12",
                                                    "10.0.0.0/8"))


def default_vpc_id(project_id: str) -> str:
    """The project's default VPC: "vpc-" + the first 17 hex digits of sha256(project id)."""
    return "vpc-" + hashlib.sha256(project_id.encode()).hexdigest()[:17]


def subnet_id(network_id: str) -> str:
    """A network's subnet id: "subnet-" + the hex of its id ("net-…")."""
    return "subnet-" + network_id.split("-", 1)[1]


def network_id(subnet: str) -> str:
    """The network of a (well-formed) subnet id."""
    return "net-" + subnet.split("-", 1)[1]


def vpc_cidrs(nets: list[Network]) -> list[str]:
    """The VPC's blocks, as AWS gives a VPC a primary block and secondary ones: for each subnet
    the private range holding it (192.168/16, 172.16/12, 10/8; the subnet itself outside them),
    the default network's first (10.0.0.0/8 when there is nothing)."""
    def block(n: Network) -> ipaddress.IPv4Network:
        c = ipaddress.IPv4Network(n.cidr)
        return next((b for b in _PRIVATE if c.subnet_of(b)), c)

    ordered = sorted(nets, key=lambda n: not is_default(n))
    blocks = list(dict.fromkeys(block(n) for n in ordered)) or [_PRIVATE[-1]]
    return [str(b) for b in blocks
            if not any(o != b and b.subnet_of(o) for o in blocks)]


def is_default(net: Network) -> bool:
    return net.name == DEFAULT and net.project_id is None


# --- the VPC
def _check_vpcs(ctx: Ctx, ids: list[str]) -> None:
    """Each id well-formed (InvalidVpcID.Malformed) and the caller's default VPC
    (InvalidVpcID.NotFound)."""
    check_ids(ids, "vpc")
    mine = default_vpc_id(ctx.caller.project_id)
    for v in ids:
        if v != mine:
            raise Ec2Error("InvalidVpcID.NotFound", f"The vpc ID '{v}' does not exist")


def _association_id(vpc: str, cidr: str) -> str:
    return "vpc-cidr-assoc-" + hashlib.sha256(f"{vpc}|{cidr}".encode()).hexdigest()[:17]


def render_vpc(ctx: Ctx, nets: list[Network], tags: dict[str, str]) -> dict[str, Any]:
    vid = default_vpc_id(ctx.caller.project_id)
    cidrs = vpc_cidrs(nets)
    return {"vpcId": vid, "ownerId": owner(ctx.caller), "state": "available",
            "cidrBlock": cidrs[0],
            "cidrBlockAssociationSet": [{
                "associationId": _association_id(vid, c), "cidrBlock": c,
                "cidrBlockState": {"state": "associated"}} for c in cidrs],
            "dhcpOptionsId": "default", "instanceTenancy": "default", "isDefault": True,
            "tagSet": tag_set(tags)}


@action("DescribeVpcs")
def describe_vpcs(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.list("VpcId")
    _check_vpcs(ctx, ids)
    vid = default_vpc_id(ctx.caller.project_id)
    tags = ctx.cloud.tags.of(ctx.caller, [vid])[vid]
    vpcs = [render_vpc(ctx, ctx.cloud.networks.list(ctx.caller), tags)]
    fields: dict[str, Callable[[Any], Any]] = {
        "vpc-id": lambda v: v["vpcId"], "is-default": lambda v: True,
        "isDefault": lambda v: True, "state": lambda v: v["state"],
        "cidr": lambda v: v["cidrBlock"], "cidr-block-association.cidr-block":
            lambda v: [a["cidrBlock"] for a in v["cidrBlockAssociationSet"]],
        "owner-id": lambda v: v["ownerId"],
        "dhcp-options-id": lambda v: v["dhcpOptionsId"]}
    vpcs = apply_filters(vpcs, p.filters(), fields, _item_tags)
    page, token = paginate(vpcs, p.int("MaxResults"), p.str("NextToken"),
                           key="DescribeVpcs|" + repr(sorted(p.filters().items())),
                           secret=ctx.cloud.ec2_token_secret)
    return {"vpcSet": page, "nextToken": token}


@action("CreateVpc")
def create_vpc(ctx: Ctx, p: Params) -> dict[str, Any]:
    raise Ec2Error("UnsupportedOperation",
                   "Each project has one VPC here, its default VPC "
                   f"({default_vpc_id(ctx.caller.project_id)}): add subnets to it (CreateSubnet).")


@action("DeleteVpc")
def delete_vpc(ctx: Ctx, p: Params) -> dict[str, Any]:
    vid = p.req("VpcId")
    _check_vpcs(ctx, [vid])
    raise Ec2Error("DependencyViolation",
                   f"The vpc '{vid}' has dependencies and cannot be deleted: it is the project's "
                   "default VPC, holding its subnets (networks) and security groups.")


# what a VPC's attributes are here: each network's dnsmasq resolves, instances have names
VPC_ATTRIBUTES = {"enableDnsSupport": True, "enableDnsHostnames": True,
                  "enableNetworkAddressUsageMetrics": False}


@action("DescribeVpcAttribute")
def describe_vpc_attribute(ctx: Ctx, p: Params) -> dict[str, Any]:
    vid = p.req("VpcId")
    attr = p.req("Attribute")
    _check_vpcs(ctx, [vid])
    if attr not in VPC_ATTRIBUTES:
        raise Ec2Error("InvalidParameterValue",
                       f"Value ({attr}) for parameter attribute is invalid. Expected one of: "
                       f"{', '.join(VPC_ATTRIBUTES)}.")
    return {"vpcId": vid, attr: {"value": VPC_ATTRIBUTES[attr]}}


def _no_change(p: Params, fixed: dict[str, bool], what: str) -> None:
    """A Modify…Attribute: each `<Name>.Value` given must be what it already is (nothing here
    changes), else UnsupportedOperation; none given is MissingParameter."""
    given = 0
    for name, value in fixed.items():
        param = name[0].upper() + name[1:]
        if not p.has(param):
            continue
        given += 1
        if p.bool(f"{param}.Value") != value:
            raise Ec2Error("UnsupportedOperation",
                           f"{param} of a {what} is always {str(value).lower()} here.")
    if not given:
        raise Ec2Error("MissingParameter", "The request must contain an attribute to modify.")


@action("ModifyVpcAttribute")
def modify_vpc_attribute(ctx: Ctx, p: Params) -> dict[str, Any]:
    _check_vpcs(ctx, [p.req("VpcId")])
    _no_change(p, VPC_ATTRIBUTES, "VPC")
    if p.dry_run():
        raise dry_run_ok()
    return {"return": True}


# what a subnet's changeable attributes are here (no public address at launch, no IPv6)
SUBNET_ATTRIBUTES = {"mapPublicIpOnLaunch": False, "assignIpv6AddressOnCreation": False,
                     "enableDns64": False, "mapCustomerOwnedIpOnLaunch": False,
                     "enableResourceNameDnsAAAARecordOnLaunch": False,
                     "enableResourceNameDnsARecordOnLaunch": False}


@action("ModifySubnetAttribute")
def modify_subnet_attribute(ctx: Ctx, p: Params) -> dict[str, Any]:
    _subnets(ctx, [p.req("SubnetId")])
    _no_change(p, SUBNET_ATTRIBUTES, "subnet")
    if p.dry_run():
        raise dry_run_ok()
    return {"return": True}


# --- the VPC's fixed parts: its main route table, internet gateway and default network ACL
# (deterministic ids; tooling reads them with the VPC). Each network's own mode (nat, routed,
# isolated) is what really routes; these say what a default VPC says.
def _vpc_part(prefix: str, ctx: Ctx) -> str:
    return f"{prefix}-" + default_vpc_id(ctx.caller.project_id)[4:]


def _describe_parts(ctx: Ctx, p: Params, ids_param: str, items: list[dict[str, Any]],
                    id_key: str, code: str, noun: str, fields: dict[str, Callable[[Any], Any]]
                    ) -> list[dict[str, Any]]:
    """The items asked for by id (else `code`), filtered."""
    ids = p.list(ids_param)
    missing = [i for i in ids if i not in {x[id_key] for x in items}]
    if missing:
        raise not_found(code, noun, missing)
    if ids:
        items = [x for x in items if x[id_key] in ids]
    return apply_filters(items, p.filters(), fields, _item_tags)


@action("DescribeRouteTables")
def describe_route_tables(ctx: Ctx, p: Params) -> dict[str, Any]:
    vid = default_vpc_id(ctx.caller.project_id)
    rtb = _vpc_part("rtb", ctx)
    local = [{"destinationCidrBlock": c, "gatewayId": "local", "state": "active",
              "origin": "CreateRouteTable"} for c in vpc_cidrs(ctx.cloud.networks.list(ctx.caller))]
    table = {"routeTableId": rtb, "vpcId": vid, "ownerId": owner(ctx.caller),
             "routeSet": [*local, {"destinationCidrBlock": "0.0.0.0/0",
                                   "gatewayId": _vpc_part("igw", ctx), "state": "active",
                                   "origin": "CreateRoute"}],
             "associationSet": [{"routeTableAssociationId": _vpc_part("rtbassoc", ctx),
                                 "routeTableId": rtb, "main": True,
                                 "associationState": {"state": "associated"}}],
             "propagatingVgwSet": [], "tagSet": []}
    fields = _fields({"route-table-id": "routeTableId", "vpc-id": "vpcId",
                      "owner-id": "ownerId"}) | {
        "association.main": lambda t: True, "association.subnet-id": lambda t: None,
        "association.route-table-association-id": _reader(
            "associationSet", 0, "routeTableAssociationId")}
    items = _describe_parts(ctx, p, "RouteTableId", [table], "routeTableId",
                            "InvalidRouteTableID.NotFound", "routeTable", fields)
    return {"routeTableSet": items}


@action("DescribeInternetGateways")
def describe_internet_gateways(ctx: Ctx, p: Params) -> dict[str, Any]:
    vid = default_vpc_id(ctx.caller.project_id)
    igw = {"internetGatewayId": _vpc_part("igw", ctx), "ownerId": owner(ctx.caller),
           "attachmentSet": [{"vpcId": vid, "state": "available"}], "tagSet": []}
    fields = _fields({"internet-gateway-id": "internetGatewayId", "owner-id": "ownerId"}) | {
        "attachment.vpc-id": lambda g: vid, "attachment.state": lambda g: "available"}
    items = _describe_parts(ctx, p, "InternetGatewayId", [igw], "internetGatewayId",
                            "InvalidInternetGatewayID.NotFound", "internetGateway", fields)
    return {"internetGatewaySet": items}


@action("DescribeNetworkAcls")
def describe_network_acls(ctx: Ctx, p: Params) -> dict[str, Any]:
    vid = default_vpc_id(ctx.caller.project_id)
    aid = _vpc_part("acl", ctx)
    entries = [{"ruleNumber": n, "protocol": "-1", "ruleAction": action_, "egress": egress,
                "cidrBlock": "0.0.0.0/0"}
               for egress in (False, True) for n, action_ in ((100, "allow"), (32767, "deny"))]
    subnets = [subnet_id(n.id) for n in ctx.cloud.networks.list(ctx.caller)]
    acl = {"networkAclId": aid, "vpcId": vid, "default": True, "ownerId": owner(ctx.caller),
           "entrySet": entries, "tagSet": [],
           "associationSet": [{"networkAclAssociationId": "aclassoc-" + sid[7:],
                               "networkAclId": aid, "subnetId": sid} for sid in subnets]}
    fields = _fields({"network-acl-id": "networkAclId", "vpc-id": "vpcId",
                      "owner-id": "ownerId"}) | {
        "default": lambda a: True, "association.subnet-id": lambda a: subnets}
    items = _describe_parts(ctx, p, "NetworkAclId", [acl], "networkAclId",
                            "InvalidNetworkAclID.NotFound", "networkAcl", fields)
    return {"networkAclSet": items}


# --- subnets
def _subnets(ctx: Ctx, ids: list[str]) -> list[Network]:
    """The networks the caller may use, or exactly those of the subnet ids (in their order)."""
    check_ids(ids, "subnet")
    nets = ctx.cloud.networks.list(ctx.caller)
    if not ids:
        return nets
    found = {subnet_id(n.id): n for n in nets}
    missing = [i for i in ids if i not in found]
    if missing:
        raise not_found("InvalidSubnetID.NotFound", "subnet", missing)
    return [found[i] for i in dict.fromkeys(ids)]


def _subnet_tags(ctx: Ctx, nets: list[Network]) -> dict[str, dict[str, str]]:
    """Each subnet's tags: its network's name as its Name (none when named by its id), then
    the tags the caller set on it."""
    stored = ctx.cloud.tags.of(ctx.caller, [subnet_id(n.id) for n in nets])
    return {n.id: ({} if n.name == n.id else {"Name": n.name}) | stored[subnet_id(n.id)]
            for n in nets}


def render_subnet(ctx: Ctx, net: Network, free: int, tags: dict[str, str]) -> dict[str, Any]:
    sid = subnet_id(net.id)
    acct = owner(ctx.caller)
    return {
        "subnetId": sid, "subnetArn": f"arn:aws:ec2:{ctx.cloud.settings.region}:{acct}:subnet/{sid}",
        "state": "available", "vpcId": default_vpc_id(ctx.caller.project_id), "ownerId": acct,
        "cidrBlock": net.cidr, "availableIpAddressCount": free,
        "availabilityZone": ctx.cloud.settings.zones[0], "defaultForAz": is_default(net),
        "mapPublicIpOnLaunch": False, "assignIpv6AddressOnCreation": False,
        "ipv6CidrBlockAssociationSet": [], "tagSet": tag_set(tags),
    }


SUBNET_FILTERS: dict[str, str] = {   # filter name -> the rendered field it reads
    "subnet-id": "subnetId", "vpc-id": "vpcId", "default-for-az": "defaultForAz",
    "defaultForAz": "defaultForAz", "cidr-block": "cidrBlock", "cidr": "cidrBlock",
    "cidrBlock": "cidrBlock", "availability-zone": "availabilityZone",
    "availabilityZone": "availabilityZone", "state": "state", "owner-id": "ownerId",
    "available-ip-address-count": "availableIpAddressCount",
    "map-public-ip-on-launch": "mapPublicIpOnLaunch", "subnet-arn": "subnetArn",
}


def _reader(*path: str | int) -> Callable[[Any], Any]:
    def read(item: Any) -> Any:
        for k in path:
            item = item[k]
        return item
    return read


def _fields(names: dict[str, str]) -> dict[str, Callable[[Any], Any]]:
    return {f: _reader(k) for f, k in names.items()}


def _item_tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in item.get("tagSet") or []}


@action("DescribeSubnets")
def describe_subnets(ctx: Ctx, p: Params) -> dict[str, Any]:
    nets = _subnets(ctx, p.list("SubnetId"))
    free = ctx.cloud.networks.free_counts(nets)
    tags = _subnet_tags(ctx, nets)
    items = [render_subnet(ctx, n, free[n.id], tags[n.id]) for n in nets]
    filters = p.filters()
    items = apply_filters(items, filters, _fields(SUBNET_FILTERS), _item_tags)
    page, token = paginate(items, p.int("MaxResults"), p.str("NextToken"),
                           key="DescribeSubnets|" + repr(sorted(filters.items())),
                           secret=ctx.cloud.ec2_token_secret)
    return {"subnetSet": page, "nextToken": token}


@action("CreateSubnet")
def create_subnet(ctx: Ctx, p: Params) -> dict[str, Any]:
    """A network of the caller's project, NAT'd like a default VPC's subnet, named after its
    Name tag (by its id when there is none, or it is no free network name)."""
    _check_vpcs(ctx, [p.req("VpcId")])
    cidr = p.req("CidrBlock")
    zones = ctx.cloud.settings.zones
    zone = p.str("AvailabilityZone")
    if zone and zone not in zones:
        raise Ec2Error("InvalidParameterValue",
                       f"Value ({zone}) for parameter availabilityZone is invalid. Subnets can "
                       f"currently only be created in the following availability zones: "
                       f"{', '.join(zones)}.")
    if p.has("Ipv6CidrBlock") or p.bool("Ipv6Native") or p.has("Ipv6IpamPoolId"):
        raise Ec2Error("UnsupportedOperation", "IPv6 subnets are not supported by this cloud.")
    if p.has("OutpostArn") or p.has("Ipv4IpamPoolId"):
        raise Ec2Error("UnsupportedOperation", "Outposts and IPAM pools are not supported here.")
    tags = request_tags(p, "subnet")
    ctx.cloud.tags.check(tags)
    if p.dry_run():
        raise dry_run_ok()
    net = ctx.cloud.networks.create(ctx.caller, NetworkRequest(
        name=tags.get("Name", ""), subnet=cidr, name_from_tag=True))
    if tags:
        ctx.cloud.tags.set(ctx.caller, [subnet_id(net.id)], tags)
    free = ctx.cloud.networks.free_counts([net])
    return {"subnet": render_subnet(ctx, net, free[net.id], _subnet_tags(ctx, [net])[net.id])}


@action("DeleteSubnet")
def delete_subnet(ctx: Ctx, p: Params) -> dict[str, Any]:
    """Refused while an instance has a NIC on it (DependencyViolation), as the service says."""
    net = _subnets(ctx, [p.req("SubnetId")])[0]
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.networks.delete(ctx.caller, net.id)
    ctx.cloud.tags.forget(subnet_id(net.id))
    return {"return": True}


# --- network interfaces
Groups = list[dict[str, str]]     # a groupSet: [{groupId, groupName}]


def _groups_of(ctx: Ctx, insts: list[Instance]) -> dict[str, Groups]:
    """instance id -> its groups, from one query (an instance's groups are all its NICs')."""
    of = ctx.cloud.security_groups.of_instances(ctx.caller, [i.id for i in insts])
    return {iid: [{"groupId": g, "groupName": name} for g, name in gs] for iid, gs in of.items()}


def _attachment(inst: Instance, nic: Nic) -> dict[str, Any]:
    return {"attachmentId": "eni-attach-" + nic.id[4:], "deviceIndex": nic.index,
            "networkCardIndex": 0, "status": "attached",
            "attachTime": inst.launched_at or inst.created, "deleteOnTermination": True}


def _nic_common(ctx: Ctx, inst: Instance, nic: Nic, groups: Groups) -> dict[str, Any]:
    """What an instance's network interface shows in DescribeInstances and
    DescribeNetworkInterfaces alike."""
    dns = private_dns(ctx.cloud.settings.region, nic.ipv4) or None
    public = nic_association(ctx, inst.id, nic.name)
    return {
        "networkInterfaceId": nic.id, "subnetId": subnet_id(nic.network),
        "vpcId": default_vpc_id(inst.project_id or ctx.caller.project_id),
        "description": "", "ownerId": owner(ctx.caller), "status": "in-use",
        "macAddress": nic.mac, "privateIpAddress": nic.ipv4, "privateDnsName": dns,
        "sourceDestCheck": True, "groupSet": groups,
        "privateIpAddressesSet": [{"privateIpAddress": nic.ipv4, "privateDnsName": dns,
                                   "primary": True, "association": public}] if nic.ipv4 else [],
        "interfaceType": "interface", "association": public,
    }


def _nics(inst: Instance) -> list[Nic]:
    """The NICs an instance shows: none once it is terminated, none without an id."""
    return [n for n in inst.nics if n.id] if inst.state != "terminated" else []


def instance_network(ctx: Ctx, inst: Instance, groups: Groups) -> dict[str, Any]:
    """DescribeInstances' VpcId, SubnetId (the first NIC's) and NetworkInterfaceSet (`groups`:
    the instance's groupSet)."""
    nics = _nics(inst)
    if not nics:
        return {}
    return {"vpcId": default_vpc_id(inst.project_id or ctx.caller.project_id),
            "subnetId": subnet_id(nics[0].network), "sourceDestCheck": True,
            "networkInterfaceSet": [dict(_nic_common(ctx, inst, n, groups),
                                         attachment=_attachment(inst, n)) for n in nics]}


def _first_nic(inst: Instance) -> Nic | None:
    nics = _nics(inst)
    return nics[0] if nics else None


# DescribeInstances' filters on networks (added to its own)
INSTANCE_FILTERS: dict[str, Callable[[Instance], Any]] = {
    "vpc-id": lambda i: default_vpc_id(i.project_id or "") if _nics(i) else None,
    "subnet-id": lambda i: subnet_id(n.network) if (n := _first_nic(i)) else None,
    "network-interface.network-interface-id": lambda i: [n.id for n in _nics(i)],
    "network-interface.subnet-id": lambda i: [subnet_id(n.network) for n in _nics(i)],
    "network-interface.mac-address": lambda i: [n.mac for n in _nics(i)],
    "network-interface.addresses.private-ip-address": lambda i: [n.ipv4 for n in _nics(i)],
    "network-interface.vpc-id":
        lambda i: [default_vpc_id(i.project_id or "")] if _nics(i) else [],
}

ENI_FILTERS: dict[str, str] = {
    "network-interface-id": "networkInterfaceId", "subnet-id": "subnetId", "vpc-id": "vpcId",
    "private-ip-address": "privateIpAddress", "addresses.private-ip-address": "privateIpAddress",
    "mac-address": "macAddress", "status": "status", "owner-id": "ownerId",
    "availability-zone": "availabilityZone", "private-dns-name": "privateDnsName",
    "interface-type": "interfaceType", "source-dest-check": "sourceDestCheck",
}
ENI_ATTACHMENT_FILTERS: dict[str, str] = {
    "attachment.instance-id": "instanceId", "attachment.device-index": "deviceIndex",
    "attachment.status": "status", "attachment.attachment-id": "attachmentId",
    "attachment.instance-owner-id": "instanceOwnerId",
}


def render_network_interface(ctx: Ctx, inst: Instance, nic: Nic, groups: Groups,
                             tags: dict[str, str]) -> dict[str, Any]:
    zone = inst.zone or ctx.cloud.settings.zones[0]
    return dict(_nic_common(ctx, inst, nic, groups), availabilityZone=zone,
                requesterManaged=False, tagSet=tag_set(tags),
                attachment=dict(_attachment(inst, nic), instanceId=inst.id,
                                instanceOwnerId=owner(ctx.caller)))


@action("DescribeNetworkInterfaces")
def describe_network_interfaces(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.list("NetworkInterfaceId")
    check_ids(ids, "network_interface")
    insts = ctx.cloud.instances.list(caller=ctx.caller)
    groups = _groups_of(ctx, insts)
    tags = ctx.cloud.tags.of(ctx.caller, [n.id for i in insts for n in _nics(i)])
    items = [render_network_interface(ctx, inst, nic, groups.get(inst.id, []), tags[nic.id])
             for inst in insts for nic in _nics(inst)]
    if ids:
        found = {i["networkInterfaceId"]: i for i in items}
        missing = [i for i in ids if i not in found]
        if missing:
            raise not_found("InvalidNetworkInterfaceID.NotFound", "networkInterface", missing)
        items = [found[i] for i in dict.fromkeys(ids)]
    fields = _fields(ENI_FILTERS)
    fields.update({f: _reader("attachment", k) for f, k in ENI_ATTACHMENT_FILTERS.items()})
    fields["group-id"] = lambda item: [g["groupId"] for g in item["groupSet"]]
    fields["group-name"] = lambda item: [g["groupName"] for g in item["groupSet"]]
    filters = p.filters()
    items = apply_filters(items, filters, fields, _item_tags)
    page, token = paginate(items, p.int("MaxResults"), p.str("NextToken"),
                           key="DescribeNetworkInterfaces|" + repr(sorted(filters.items())),
                           secret=ctx.cloud.ec2_token_secret)
    return {"networkInterfaceSet": page, "nextToken": token}


# --- tags (CreateTags, DeleteTags)
def is_network_resource(resource_id: str) -> bool:
    return any(p.match(resource_id) for p in (VPC_ID, SUBNET_ID, NETWORK_INTERFACE_ID))


def check_network_resource(ctx: Ctx, resource_id: str) -> None:
    """A VPC, subnet or network interface id of the caller's, else its kind's NotFound."""
    if VPC_ID.match(resource_id):
        _check_vpcs(ctx, [resource_id])
    elif SUBNET_ID.match(resource_id):
        _subnets(ctx, [resource_id])
    elif not any(n.id == resource_id for i in ctx.cloud.instances.list(caller=ctx.caller)
                 for n in _nics(i)):
        raise not_found("InvalidNetworkInterfaceID.NotFound", "networkInterface", [resource_id])


# --- RunInstances
def _network_of(subnet: str, where: str) -> str:
    if not subnet:
        raise Ec2Error("InvalidParameterValue", f"Invalid value '' for {where}.")
    check_ids([subnet], "subnet")
    return network_id(subnet)


def _unsupported_interface(spec: dict[str, Any], n: int) -> None:
    """What a container's NIC cannot be: an existing interface moved in, a public address
    given at launch (allocate and associate one instead), several private addresses."""
    why = None
    if spec.get("NetworkInterfaceId"):
        why = "attaching an existing network interface at launch"
    elif str(spec.get("AssociatePublicIpAddress", "false")).lower() == "true":
        why = "a public address at launch (allocate one and associate it: AllocateAddress)"
    elif str(spec.get("SecondaryPrivateIpAddressCount", "0")) not in ("", "0") or \
            len(spec.get("PrivateIpAddresses") or []) > 1:
        why = "secondary private addresses"
    elif spec.get("Ipv6AddressCount") not in (None, "", "0") or spec.get("Ipv6Addresses"):
        why = "IPv6 addresses"
    if why:
        raise Ec2Error("UnsupportedOperation",
                       f"NetworkInterface.{n}: {why} is not supported by this cloud.")


def _interface_ip(spec: dict[str, Any]) -> str | None:
    ip = spec.get("PrivateIpAddress")
    for a in spec.get("PrivateIpAddresses") or []:
        if isinstance(a, dict) and a.get("PrivateIpAddress"):
            if ip and ip != a["PrivateIpAddress"]:
                raise Ec2Error("InvalidParameterValue",
                               "PrivateIpAddress and the primary of PrivateIpAddresses differ.")
            ip = a["PrivateIpAddress"]
    return str(ip) if ip else None


def _interfaces(p: Params) -> list[tuple[int, dict[str, Any]]]:
    """NetworkInterface.N as (device index, spec), in device index order (0, 1 …, none left
    out, none twice)."""
    out: dict[int, dict[str, Any]] = {}
    for n, spec in enumerate(p.struct_list("NetworkInterface"), start=1):
        if not isinstance(spec, dict):
            raise Ec2Error("InvalidParameterValue", f"Invalid value for NetworkInterface.{n}.")
        idx = str(spec.get("DeviceIndex", ""))
        if not idx.isdigit():
            raise Ec2Error("InvalidParameterValue",
                           f"Each network interface requires a device index "
                           f"(NetworkInterface.{n}.DeviceIndex).")
        if int(idx) in out:
            raise Ec2Error("InvalidParameterValue",
                           f"Each network interface requires a unique device index: {idx} "
                           "is given twice.")
        _unsupported_interface(spec, n)
        out[int(idx)] = spec
    if sorted(out) != list(range(len(out))):
        raise Ec2Error("InvalidParameterValue",
                       "The device indexes of the network interfaces must be 0, 1 … with none "
                       f"left out (given: {', '.join(map(str, sorted(out)))}).")
    return sorted(out.items())


def launch_nics(p: Params) -> tuple[NicRequest, ...]:
    """RunInstances' NICs: `SubnetId` + `PrivateIpAddress` (one NIC), or `NetworkInterface.N`
    (one NIC per device index, eth<index>); none: the default network's one NIC."""
    subnet, ip = p.str("SubnetId"), p.str("PrivateIpAddress")
    specs = _interfaces(p)
    if specs and (subnet is not None or ip is not None):
        raise Ec2Error("InvalidParameterCombination",
                       "Network interfaces and an instance-level subnet ID or private IP "
                       "address may not be specified on the same request")
    if not specs:
        if subnet is None and ip is None:
            return ()
        return (NicRequest(_network_of(subnet, "SubnetId") if subnet is not None else None,
                           ip or None),)
    return tuple(NicRequest(_network_of(str(spec["SubnetId"]), f"NetworkInterface.{i}.SubnetId")
                            if "SubnetId" in spec else None, _interface_ip(spec))
                 for i, spec in specs)


def interface_groups(p: Params, instance_level: tuple[str, ...]) -> tuple[str, ...]:
    """RunInstances' security groups: the instance-level ones (SecurityGroupId.N,
    SecurityGroup.N), or those NetworkInterface.N.SecurityGroupId.M name, not both. Groups are
    the instance's here (every NIC's): interfaces naming different groups are refused."""
    sets = [tuple(str(g) for g in spec.get("SecurityGroupId") or [])
            for _, spec in _interfaces(p)]
    named = {s for s in sets if s}
    if named and instance_level:
        raise Ec2Error("InvalidParameterCombination",
                       "Network interfaces and an instance-level security groups may not be "
                       "specified on the same request")
    if len(named) > 1:
        raise Ec2Error("InvalidParameterCombination",
                       "The network interfaces name different security groups: an instance's "
                       "groups apply to all of its interfaces here.")
    return instance_level or next(iter(named), ())
