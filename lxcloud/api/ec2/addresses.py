"""EC2 actions for Elastic IP addresses over the address service (every rule is its own; this
only translates): AllocateAddress, AssociateAddress, DisassociateAddress, ReleaseAddress,
DescribeAddresses. Tags on addresses go through CreateTags/DescribeTags (resource type
`elastic-ip`).

How EC2's terms map onto lxcloud's:

- Every address has an allocation id (`eipalloc-…`) and is found by it or by its PublicIp (the
  EC2-Classic style), in every action. Domain is reported as `vpc` (each project has a default
  VPC); AllocateAddress accepts `standard` too, and answers with the domain asked.
- PublicIpv4Pool names one of the cloud's address pools (any pool when omitted).
- AssociateAddress targets the instance's first NIC, or its NIC holding PrivateIpAddress, or the
  NIC NetworkInterfaceId; an address associated elsewhere needs AllowReassociation
  (Resource.AlreadyAssociated otherwise), and the NIC's previous address is disassociated.
- ReleaseAddress refuses an associated address (InvalidIPAddress.InUse): disassociate first.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from lxcloud.api.ec2.common import apply_filters, owner, request_tags, tag_set
from lxcloud.api.ec2.dispatch import Ctx, action
from lxcloud.api.ec2.errors import Ec2Error, dry_run_ok
from lxcloud.api.ec2.params import Params
from lxcloud.core.addresses import PublicAddress
from lxcloud.core.errors import InvalidInput, Reason

ALLOCATION_ID = re.compile(r"^eipalloc-([0-9a-f]{8}|[0-9a-f]{17})$")
ASSOCIATION_ID = re.compile(r"^eipassoc-([0-9a-f]{8}|[0-9a-f]{17})$")
DOMAINS = ("vpc", "standard")


def _missing(ids: list[str], what: str) -> str:
    return f"The {what}{'s' if len(ids) > 1 else ''} '{', '.join(ids)}' " \
           f"do{'' if len(ids) > 1 else 'es'} not exist"


def _by_allocation(ctx: Ctx, ids: list[str]) -> list[PublicAddress]:
    """Exactly these addresses of the caller (InvalidAllocationID.Malformed / .NotFound)."""
    for i in ids:
        if not ALLOCATION_ID.match(i):
            raise InvalidInput(f'Invalid id: "{i}" (expecting "eipalloc-...")',
                               resource="address", reason=Reason.MALFORMED_ID)
    found = {a.id: a for a in ctx.cloud.addresses.list(caller=ctx.caller)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise Ec2Error("InvalidAllocationID.NotFound", _missing(missing, "allocation ID"))
    return [found[i] for i in ids]


def _by_ip(ctx: Ctx, ips: list[str]) -> list[PublicAddress]:
    """Exactly these addresses of the caller, by PublicIp (InvalidAddress.NotFound)."""
    for ip in ips:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise Ec2Error("InvalidParameterValue",
                           f"Invalid value '{ip}' for PublicIp. It must be an IPv4 address."
                           ) from None
    found = {a.address: a for a in ctx.cloud.addresses.list(caller=ctx.caller)}
    missing = [i for i in ips if i not in found]
    if missing:
        raise Ec2Error("InvalidAddress.NotFound", _missing(missing, "address"))
    return [found[i] for i in ips]


def _one(ctx: Ctx, p: Params) -> PublicAddress:
    """The address an action names by AllocationId or PublicIp (one of them is needed)."""
    alloc, ip = p.str("AllocationId"), p.str("PublicIp")
    if alloc:
        return _by_allocation(ctx, [alloc])[0]
    if ip:
        return _by_ip(ctx, [ip])[0]
    raise Ec2Error("MissingParameter", "Either public IP or allocation id must be specified")


def associated(ctx: Ctx) -> dict[tuple[str, str], PublicAddress]:
    """(instance id, NIC name) -> its public address, from one listing per request."""
    found: dict[tuple[str, str], PublicAddress] | None = ctx.__dict__.get("_associated")
    if found is None:
        found = {(a.instance_id, a.nic or ""): a for a in ctx.cloud.addresses.list(caller=ctx.caller)
                 if a.instance_id}
        ctx.__dict__["_associated"] = found
    return found


def public_ip(ctx: Ctx, instance_id: str) -> str | None:
    """DescribeInstances' PublicIpAddress: the first NIC's public address (eth0's first)."""
    mine = sorted((nic != "eth0", nic, a.address) for (iid, nic), a in associated(ctx).items()
                  if iid == instance_id)
    return mine[0][2] if mine else None


def nic_association(ctx: Ctx, instance_id: str, nic: str) -> dict[str, Any] | None:
    """A network interface's `association` (its public address), as DescribeNetworkInterfaces
    and DescribeInstances show it; None without one."""
    a = associated(ctx).get((instance_id, nic))
    if a is None:
        return None
    return {"publicIp": a.address, "publicDnsName": "", "ipOwnerId": owner(ctx.caller),
            "allocationId": a.id, "associationId": a.association_id}


def render_address(ctx: Ctx, a: PublicAddress, eni: dict[str, str]) -> dict[str, Any]:
    associated = a.instance_id is not None
    return {"publicIp": a.address, "allocationId": a.id, "domain": "vpc",
            "instanceId": a.instance_id,
            "associationId": a.association_id,
            "networkInterfaceId": eni.get(f"{a.instance_id}/{a.nic}") if associated else None,
            "networkInterfaceOwnerId": owner(ctx.caller) if associated else None,
            "privateIpAddress": a.private_ip, "publicIpv4Pool": a.pool,
            "networkBorderGroup": ctx.cloud.settings.region, "tagSet": tag_set(a.tags)}


def _enis(ctx: Ctx, addrs: list[PublicAddress]) -> dict[str, str]:
    """"<instance id>/<nic name>" -> the NIC's id, for the associated addresses."""
    iids = sorted({a.instance_id for a in addrs if a.instance_id})
    out: dict[str, str] = {}
    for inst in ctx.cloud.instances.list(caller=ctx.caller, ids=iids) if iids else []:
        for n in inst.nics:
            if n.id:
                out[f"{inst.id}/{n.name}"] = n.id
    return out


@action("AllocateAddress")
def allocate_address(ctx: Ctx, p: Params) -> dict[str, Any]:
    domain = p.str("Domain") or "vpc"
    if domain not in DOMAINS:
        raise Ec2Error("InvalidParameterValue",
                       f"Invalid value '{domain}' for Domain. It must be vpc or standard.")
    pool = p.str("PublicIpv4Pool") or None
    wanted = p.str("Address") or None
    if p.dry_run():
        if pool:
            ctx.cloud.addresses.get_pool(pool)
        raise dry_run_ok()
    tags = request_tags(p, "elastic-ip")
    a = ctx.cloud.addresses.allocate(pool=pool, address=wanted, tags=tags or None,
                                     caller=ctx.caller)
    return {"publicIp": a.address, "domain": domain, "allocationId": a.id,
            "publicIpv4Pool": a.pool, "networkBorderGroup": ctx.cloud.settings.region}


@action("AssociateAddress")
def associate_address(ctx: Ctx, p: Params) -> dict[str, Any]:
    addr = _one(ctx, p)
    instance_id, eni = p.str("InstanceId"), p.str("NetworkInterfaceId")
    private_ip = p.str("PrivateIpAddress") or None
    if not instance_id and not eni:
        raise Ec2Error("MissingParameter",
                       "Either instance ID or network interface ID must be specified")
    if eni:
        match = [(i, n) for i in ctx.cloud.instances.list(caller=ctx.caller)
                 for n in i.nics if n.id == eni]
        if not match:
            raise Ec2Error("InvalidNetworkInterfaceID.NotFound",
                           f"The networkInterface ID '{eni}' does not exist")
        inst, nic = match[0]
        if instance_id and instance_id != inst.id:
            raise Ec2Error("InvalidParameterCombination",
                           f"Network interface {eni} is not attached to {instance_id}")
        instance_id, private_ip = inst.id, private_ip or nic.ipv4
    assert instance_id is not None
    inst = ctx.cloud.instances.get(instance_id, caller=ctx.caller)
    if p.dry_run():
        raise dry_run_ok()
    done = ctx.cloud.addresses.associate(addr.id, inst.id, private_ip=private_ip,
                                         allow_reassociation=p.bool("AllowReassociation"),
                                         caller=ctx.caller)
    return {"return": True, "associationId": done.association_id}


@action("DisassociateAddress")
def disassociate_address(ctx: Ctx, p: Params) -> dict[str, Any]:
    assoc, ip = p.str("AssociationId"), p.str("PublicIp")
    if assoc:
        if not ASSOCIATION_ID.match(assoc):
            raise Ec2Error("InvalidAssociationID.NotFound", _missing([assoc], "association ID"))
        found = [a for a in ctx.cloud.addresses.list(caller=ctx.caller)
                 if a.association_id == assoc]
        if not found:
            raise Ec2Error("InvalidAssociationID.NotFound", _missing([assoc], "association ID"))
        addr = found[0]
    elif ip:
        addr = _by_ip(ctx, [ip])[0]
    else:
        raise Ec2Error("MissingParameter", "Either public IP or association id must be specified")
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.addresses.disassociate(addr.id, caller=ctx.caller)
    return {"return": True}


@action("ReleaseAddress")
def release_address(ctx: Ctx, p: Params) -> dict[str, Any]:
    addr = _one(ctx, p)
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.addresses.release(addr.id, caller=ctx.caller)
    return {"return": True}


ADDRESS_FILTERS = {
    "allocation-id": lambda a: a.id, "association-id": lambda a: a.association_id or "",
    "domain": lambda a: "vpc", "instance-id": lambda a: a.instance_id or "",
    "private-ip-address": lambda a: a.private_ip or "", "public-ip": lambda a: a.address,
    "public-ipv4-pool": lambda a: a.pool, "network-border-group": lambda a: "",
}


@action("DescribeAddresses")
def describe_addresses(ctx: Ctx, p: Params) -> dict[str, Any]:
    ips, allocs = p.list("PublicIp"), p.list("AllocationId")
    if ips or allocs:
        addrs = (_by_ip(ctx, ips) if ips else []) + (_by_allocation(ctx, allocs) if allocs else [])
        seen: set[str] = set()
        addrs = [a for a in addrs if not (a.id in seen or seen.add(a.id))]  # type: ignore[func-returns-value]
    else:
        addrs = ctx.cloud.addresses.list(caller=ctx.caller)
    enis = _enis(ctx, addrs)
    region = ctx.cloud.settings.region
    fields = {**ADDRESS_FILTERS, "network-border-group": lambda a: region,
              "network-interface-id": lambda a: enis.get(f"{a.instance_id}/{a.nic}", ""),
              "network-interface-owner-id": lambda a: owner(ctx.caller) if a.instance_id else ""}
    addrs = apply_filters(addrs, p.filters(), fields, lambda a: a.tags)
    return {"addressesSet": [render_address(ctx, a, enis) for a in addrs]}
