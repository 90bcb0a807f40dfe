"""EC2 actions for images, key pairs, tags, regions, zones, instance types and the account."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from lxcloud.api.ec2.common import (
    IMAGE_ID,
    INSTANCE_ID,
    KEY_PAIR_ID,
    SNAPSHOT_ID,
    VOLUME_ID,
    account_id,
    apply_filters,
    check_ids,
    ec2_arch,
    owner,
    tag_set,
)
from lxcloud.api.ec2.dispatch import Ctx, action
from lxcloud.api.ec2.errors import Ec2Error, dry_run_ok
from lxcloud.api.ec2.pagination import paginate
from lxcloud.api.ec2.params import Params
from lxcloud.api.ec2.security_groups import GROUP_ID
from lxcloud.api.ec2.vpc import check_network_resource, default_vpc_id, is_network_resource
from lxcloud.core.errors import InvalidInput, Reason
from lxcloud.core.instance import ROOT_DEVICE, Kind
from lxcloud.core.instance_types import DEFAULT_TYPES
from lxcloud.core.models import Image
from lxcloud.services.keypairs import KeyPair


# --- images
def _image_owner(img: Image) -> str:
    return account_id(img.project_id or "")


def image_description(img: Image) -> str:
    """The description set on it, else one made of what the template says about itself."""
    return img.description or f"{img.os} {img.release} ({img.format}, {img.size} bytes)".strip()


def executable_by(img: Image, who: str, me: str) -> bool:
    """EC2's ExecutableBy: `all` (public images), `self` or an account id (its own images and
    those shared with it)."""
    if who == "all":
        return img.public
    acct = me if who == "self" else who
    return _image_owner(img) == acct or acct in {account_id(p) for p in img.launch_projects}


def render_image(img: Image, tags: dict[str, str], state: str = "available") -> dict[str, Any]:
    container = img.kind == "container"
    return {
        "imageId": img.id, "imageLocation": f"lxcloud/{img.name}", "imageState": state,
        "imageOwnerId": _image_owner(img), "creationDate": img.created, "isPublic": img.public,
        "architecture": ec2_arch(img.architecture),
        "imageType": "machine", "name": img.name,
        "description": image_description(img),
        "rootDeviceType": "instance-store", "rootDeviceName": ROOT_DEVICE,
        "platformDetails": "Linux/UNIX",
        "virtualizationType": "container" if container else "hvm",
        "hypervisor": "lxc" if container else "kvm", "tagSet": tag_set(tags),
    }


def pending_images(ctx: Ctx) -> list[Image]:
    """The caller's images still being made from instances (CreateImage), as images."""
    out = []
    known = {i.id: i for i in ctx.cloud.images.list()}
    for pi in ctx.cloud.copies.pending_images(caller=ctx.caller):
        if pi.id in known:
            continue     # recorded a moment before its operation ends
        src = known.get(pi.source_image)
        out.append(Image(id=pi.id, name=pi.name, os=src.os if src else "",
                         release=src.release if src else "",
                         architecture=src.architecture if src else "", format="", size=0,
                         sha256="", created=pi.created, kind=src.kind if src else Kind.CONTAINER,
                         project_id=pi.project_id, public=False,
                         description=pi.description or None))
    return out


@action("DescribeImages")
def describe_images(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.list("ImageId")
    check_ids(ids, "image")
    pending = pending_images(ctx)
    state = {i.id: "pending" for i in pending}
    images = ctx.cloud.images.list(caller=ctx.caller) + pending
    if ids:
        found = {i.id: i for i in images}
        missing = [i for i in ids if i not in found]
        if missing:
            raise Ec2Error("InvalidAMIID.NotFound",
                           f"The image id '[{', '.join(missing)}]' does not exist")
        images = [found[i] for i in ids]
    me = owner(ctx.caller)
    owners = p.list("Owner")
    if owners:
        wanted = {me if o == "self" else o for o in owners}
        images = [i for i in images if _image_owner(i) in wanted]
    executable = p.list("ExecutableBy")
    if executable:
        images = [i for i in images if any(executable_by(i, w, me) for w in executable)]
    tags = ctx.cloud.tags.of(ctx.caller, [i.id for i in images])
    fields = {
        "image-id": lambda i: i.id, "name": lambda i: i.name, "owner-id": _image_owner,
        "architecture": lambda i: ec2_arch(i.architecture),
        "is-public": lambda i: i.public, "state": lambda i: state.get(i.id, "available"),
        "image-type": lambda i: "machine",
        "virtualization-type": lambda i: "container" if i.kind == "container" else "hvm",
        "hypervisor": lambda i: "lxc" if i.kind == "container" else "kvm",
        "root-device-type": lambda i: "instance-store",
    }
    images = apply_filters(images, p.filters(), fields, lambda i: tags.get(i.id, {}))
    page, token = paginate(images, p.int("MaxResults"), p.str("NextToken"),
                           key="DescribeImages|" + repr(sorted(p.filters().items())),
                           secret=ctx.cloud.ec2_token_secret)
    return {"imagesSet": [render_image(i, tags.get(i.id, {}), state.get(i.id, "available"))
                          for i in page], "nextToken": token}


@action("DeregisterImage")
def deregister_image(ctx: Ctx, p: Params) -> dict[str, Any]:
    image_id = p.req("ImageId")
    check_ids([image_id], "image")
    ctx.cloud.images.get(image_id, caller=ctx.caller)
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.images.delete(image_id, caller=ctx.caller)
    ctx.cloud.tags.forget(image_id)
    return {"return": True}


# --- key pairs
def render_key(k: KeyPair, tags: dict[str, str]) -> dict[str, Any]:
    return {"keyPairId": k.id, "keyName": k.name, "keyFingerprint": k.fingerprint,
            "keyType": k.key_type, "tagSet": tag_set(tags), "createTime": k.created}


@action("CreateKeyPair")
def create_key_pair(ctx: Ctx, p: Params) -> dict[str, Any]:
    name = p.req("KeyName")
    if p.dry_run():
        raise dry_run_ok()
    k = ctx.cloud.keypairs.create(name, ctx.caller, key_type=p.str("KeyType") or "rsa")
    return {"keyName": k.name, "keyFingerprint": k.fingerprint, "keyMaterial": k.private_key,
            "keyPairId": k.id}


@action("ImportKeyPair")
def import_key_pair(ctx: Ctx, p: Params) -> dict[str, Any]:
    name = p.req("KeyName")
    material = p.req("PublicKeyMaterial")
    try:   # a blob: the client sends it base64-encoded
        public = base64.b64decode(material, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        public = material
    if p.dry_run():
        raise dry_run_ok()
    k = ctx.cloud.keypairs.import_key(name, public, ctx.caller)
    return {"keyName": k.name, "keyFingerprint": k.fingerprint, "keyPairId": k.id}


@action("DescribeKeyPairs")
def describe_key_pairs(ctx: Ctx, p: Params) -> dict[str, Any]:
    keys = ctx.cloud.keypairs.list(ctx.caller)
    names, ids = p.list("KeyName"), p.list("KeyPairId")
    if names:
        by_name = {k.name: k for k in keys}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise Ec2Error("InvalidKeyPair.NotFound",
                           f"The key pair '{missing[0]}' does not exist")
        keys = [by_name[n] for n in names]
    if ids:
        by_id = {k.id: k for k in keys}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise Ec2Error("InvalidKeyPair.NotFound", f"The key pair '{missing[0]}' does not exist")
        keys = [by_id[i] for i in ids]
    tags = ctx.cloud.tags.of(ctx.caller, [k.id for k in keys])
    fields = {"key-name": lambda k: k.name, "fingerprint": lambda k: k.fingerprint,
              "key-pair-id": lambda k: k.id, "key-type": lambda k: k.key_type}
    keys = apply_filters(keys, p.filters(), fields, lambda k: tags.get(k.id, {}))
    return {"keySet": [render_key(k, tags.get(k.id, {})) for k in keys]}


@action("DeleteKeyPair")
def delete_key_pair(ctx: Ctx, p: Params) -> dict[str, Any]:
    name, key_id = p.str("KeyName"), p.str("KeyPairId")
    if name is None and key_id is None:
        raise Ec2Error("MissingParameter", "The request must contain the parameter KeyName or "
                       "KeyPairId")
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.keypairs.delete(ctx.caller, name=name, key_id=key_id)
    return {"return": True}


# --- tags
def _owned(ctx: Ctx, resource_ids: list[str]) -> None:
    """Every id must be one of the caller's resources: an ill-formed id of any kind is InvalidID
    (as EC2's CreateTags answers), a well-formed one not found its kind's NotFound."""
    keys = {k.id for k in ctx.cloud.keypairs.list(ctx.caller)}
    for rid in resource_ids:
        if INSTANCE_ID.match(rid):
            ctx.cloud.instances.get(rid, caller=ctx.caller)
        elif IMAGE_ID.match(rid):
            ctx.cloud.images.get(rid, caller=ctx.caller)
        elif VOLUME_ID.match(rid):
            ctx.cloud.volumes.get(rid, caller=ctx.caller)
        elif SNAPSHOT_ID.match(rid):
            ctx.cloud.snapshots.get(rid, caller=ctx.caller)
        elif rid.startswith("eipalloc-"):
            ctx.cloud.addresses.get(rid, caller=ctx.caller)
        elif GROUP_ID.match(rid):
            ctx.cloud.security_groups.get(rid, ctx.caller)
        elif is_network_resource(rid):
            check_network_resource(ctx, rid)
        elif KEY_PAIR_ID.match(rid):
            if rid not in keys:
                raise Ec2Error("InvalidKeyPair.NotFound", f"The key pair '{rid}' does not exist")
        else:
            raise InvalidInput(f"The ID '{rid}' is not valid", resource="resource",
                               reason=Reason.MALFORMED_ID)


def _tags_param(p: Params) -> list[dict[str, Any]]:
    return [t for t in p.struct_list("Tag") if isinstance(t, dict)]


@action("CreateTags")
def create_tags(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.list("ResourceId", required=True)
    tags = {str(t.get("Key", "")): str(t.get("Value", "")) for t in _tags_param(p)}
    if not tags:
        raise Ec2Error("MissingParameter", "The request must contain the parameter Tag")
    _owned(ctx, ids)
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.tags.set(ctx.caller, ids, tags)
    return {"return": True}


@action("DeleteTags")
def delete_tags(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.list("ResourceId", required=True)
    tags = {str(t.get("Key", "")): (str(t["Value"]) if "Value" in t else None)
            for t in _tags_param(p)}
    _owned(ctx, ids)
    if p.dry_run():
        raise dry_run_ok()
    ctx.cloud.tags.remove(ctx.caller, ids, tags)
    return {"return": True}


@action("DescribeTags")
def describe_tags(ctx: Ctx, p: Params) -> dict[str, Any]:
    tags = ctx.cloud.tags.list(ctx.caller)
    fields = {"resource-id": lambda t: t.resource_id, "resource-type": lambda t: t.resource_type,
              "key": lambda t: t.key, "value": lambda t: t.value}
    tags = apply_filters(tags, p.filters(), fields, lambda t: {})
    page, token = paginate(tags, p.int("MaxResults"), p.str("NextToken"),
                           key="DescribeTags|" + repr(sorted(p.filters().items())),
                           secret=ctx.cloud.ec2_token_secret)
    return {"tagSet": [{"resourceId": t.resource_id, "resourceType": t.resource_type,
                        "key": t.key, "value": t.value} for t in page], "nextToken": token}


# --- the cloud itself
@action("DescribeRegions")
def describe_regions(ctx: Ctx, p: Params) -> dict[str, Any]:
    region = ctx.cloud.settings.region
    wanted = p.list("RegionName")
    if wanted and region not in wanted:
        raise Ec2Error("InvalidParameterValue", f"Invalid region: {wanted[0]}")
    return {"regionInfo": [{"regionName": region, "optInStatus": "opt-in-not-required",
                            "regionEndpoint": f"{ctx.cloud.public_url()}/ec2/"}]}


@action("DescribeAvailabilityZones")
def describe_availability_zones(ctx: Ctx, p: Params) -> dict[str, Any]:
    region = ctx.cloud.settings.region
    zones = ctx.cloud.settings.zones
    wanted = p.list("ZoneName")
    unknown = [z for z in wanted if z not in zones]
    if unknown:
        raise Ec2Error("InvalidParameterValue", f"The zone '{unknown[0]}' does not exist.")
    nodes = ctx.cloud.nodes.list()
    return {"availabilityZoneInfo": [
        {"zoneName": z, "zoneState": "available" if any(n["status"] == "online" for n in nodes)
         else "impaired", "regionName": region, "zoneId": f"{region}-az{n + 1}",
         "zoneType": "availability-zone", "groupName": region, "networkBorderGroup": region,
         "optInStatus": "opt-in-not-required",
         "messageSet": [{"message": f"nodes: {', '.join(x['name'] for x in nodes)}"}]}
        for n, z in enumerate(zones) if not wanted or z in wanted]}


@action("DescribeInstanceTypes")
def describe_instance_types(ctx: Ctx, p: Params) -> dict[str, Any]:
    wanted = p.list("InstanceType")
    known = {t.name: t for t in DEFAULT_TYPES}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise Ec2Error("InvalidInstanceType",
                       f"The following supplied instance types do not exist: [{', '.join(unknown)}]")
    types = [known[w] for w in wanted] if wanted else list(DEFAULT_TYPES)
    types = apply_filters(types, p.filters(), {
        "instance-type": lambda t: t.name, "vcpu-info.default-vcpus": lambda t: t.vcpus,
        "memory-info.size-in-mib": lambda t: t.memory >> 20}, lambda t: {})
    return {"instanceTypeSet": [{
        "instanceType": t.name, "currentGeneration": True, "freeTierEligible": False,
        "supportedUsageClasses": ["on-demand"], "supportedRootDeviceTypes": ["instance-store"],
        "supportedVirtualizationTypes": ["container"], "hypervisor": "lxc",
        "bareMetal": False, "processorInfo": {"supportedArchitectures": ["x86_64", "i386"]},
        "vCpuInfo": {"defaultVCpus": max(1, round(t.vcpus)), "defaultCores": max(1, round(t.vcpus)),
                     "defaultThreadsPerCore": 1},
        "memoryInfo": {"sizeInMiB": t.memory >> 20},
        "instanceStorageSupported": True,
        "instanceStorageInfo": {"totalSizeInGB": max(1, t.disk >> 30)},
    } for t in types]}


@action("DescribeAccountAttributes")
def describe_account_attributes(ctx: Ctx, p: Params) -> dict[str, Any]:
    attrs = {"supported-platforms": ["VPC"],
             "default-vpc": [default_vpc_id(ctx.caller.project_id)],
             "max-instances": [str(ctx.cloud.settings.max_instances_per_project)],
             "vpc-max-security-groups-per-interface": ["0"], "max-elastic-ips": ["0"],
             "vpc-max-elastic-ips": ["0"]}
    wanted = p.list("AttributeName")
    return {"accountAttributeSet": [
        {"attributeName": k, "attributeValueSet": [{"attributeValue": v} for v in vals]}
        for k, vals in attrs.items() if not wanted or k in wanted]}


