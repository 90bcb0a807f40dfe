"""EC2 attribute actions: Describe/ModifyInstanceAttribute, Describe/ModifyImageAttribute, and
GetPasswordData. The rules (what may change, when, who may launch an image) live in the instance
and image services; this module reads EC2's parameters and renders EC2's answers."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from lxcloud.api.ec2.common import INSTANCE_ID, account_id, check_ids
from lxcloud.api.ec2.dispatch import Ctx, action
from lxcloud.api.ec2.errors import Ec2Error, dry_run_ok
from lxcloud.api.ec2.instances import _find
from lxcloud.api.ec2.params import Params, missing
from lxcloud.api.ec2.security_groups import group_set, modify_groups
from lxcloud.core.errors import NotFound
from lxcloud.core.instance import ROOT_DEVICE
from lxcloud.core.instance_types import get_type
from lxcloud.core.models import Image, Instance

# --- instances -----------------------------------------------------------------------------------

# Every attribute EC2 knows. The ones a container has no use for answer their constant values
# (no block devices, no product codes, source/destination checked by the port guard).
_FIXED: dict[str, Any] = {
    "blockDeviceMapping": [], "productCodes": [],
    "sourceDestCheck": {"value": True}, "ebsOptimized": {"value": False},
    "sriovNetSupport": {}, "enaSupport": {"value": False}, "enclaveOptions": {"enabled": False},
    "disableApiStop": {"value": False},
}
# attribute -> the parameter that carries its new value (`<Param>.Value`)
_MODIFIABLE = {
    "instanceType": "InstanceType", "userData": "UserData",
    "disableApiTermination": "DisableApiTermination",
    "instanceInitiatedShutdownBehavior": "InstanceInitiatedShutdownBehavior",
    "kernel": "Kernel", "ramdisk": "Ramdisk",
}
# valid on EC2, not changeable on a container instance here
_FIXED_PARAMS = {
    "sourceDestCheck": "SourceDestCheck", "ebsOptimized": "EbsOptimized",
    "sriovNetSupport": "SriovNetSupport", "enaSupport": "EnaSupport",
    "blockDeviceMapping": "BlockDeviceMapping", "disableApiStop": "DisableApiStop",
    "enclaveOptions": "EnclaveOptions",
}


def _instance(ctx: Ctx, p: Params) -> Instance:
    """The instance of an attribute action. An ill-formed id is InvalidParameterValue here (EC2's
    attribute actions answer so, not InvalidInstanceID.Malformed)."""
    iid = p.req("InstanceId")
    if not INSTANCE_ID.match(iid):
        raise Ec2Error("InvalidParameterValue",
                       f"Value ({iid}) for parameter instanceId is invalid. Expected: 'i-...'.")
    return _find(ctx, [iid])[0]


def _unknown_instance_attribute(attr: str) -> Ec2Error:
    return Ec2Error("InvalidParameterValue",
                    f"Value ({attr}) for parameter attribute is invalid. Unknown attribute.")


def instance_attribute(inst: Instance, attr: str) -> Any:
    """The value of one instance attribute as DescribeInstanceAttribute renders it."""
    if attr == "instanceType":
        return {"value": inst.instance_type}
    if attr == "userData":
        ud = inst.user_data
        return {"value": base64.b64encode(ud.encode()).decode()} if ud else {}
    if attr == "disableApiTermination":
        return {"value": inst.disable_api_termination}
    if attr == "instanceInitiatedShutdownBehavior":
        return {"value": inst.shutdown_behavior}
    if attr == "rootDeviceName":
        return {"value": ROOT_DEVICE}
    if attr in ("kernel", "ramdisk"):
        return {}        # a container boots no kernel or ramdisk of its own
    if attr in _FIXED:
        return _FIXED[attr]
    raise _unknown_instance_attribute(attr)


@action("DescribeInstanceAttribute")
def describe_instance_attribute(ctx: Ctx, p: Params) -> dict[str, Any]:
    inst = _instance(ctx, p)
    attr = p.req("Attribute")
    value = group_set(ctx, [inst])[inst.id] if attr == "groupSet" \
        else instance_attribute(inst, attr)
    if p.dry_run():
        raise dry_run_ok()
    return {"instanceId": inst.id, attr: value}


def _requested_change(p: Params) -> tuple[str, str]:
    """(attribute, raw value) of a ModifyInstanceAttribute request: `<Param>.Value` or the
    `Attribute` + `Value` form; exactly one attribute per request, as on EC2."""
    given: dict[str, str] = {}
    for name, param in _MODIFIABLE.items():
        value = p.str(f"{param}.Value")
        if value is not None:
            given[name] = value
    fixed = [a for a, param in _FIXED_PARAMS.items() if p.has(param)]
    attr = p.str("Attribute")
    if attr is not None:
        if attr in _FIXED_PARAMS or attr in ("rootDeviceName", "productCodes"):
            fixed.append(attr)
        elif attr not in _MODIFIABLE:
            raise _unknown_instance_attribute(attr)
        elif attr not in given:
            given[attr] = p.req("Value")
    if fixed:
        raise Ec2Error("UnsupportedOperation",
                       f"The attribute '{fixed[0]}' cannot be changed on a container instance.")
    if not given:
        raise Ec2Error("InvalidParameterCombination", "No attributes specified.")
    if len(given) > 1:
        raise Ec2Error("InvalidParameterCombination",
                       "Only one attribute can be modified at a time: "
                       + ", ".join(sorted(given)))
    return next(iter(given.items()))


def _bool(attr: str, value: str) -> bool:
    if value.strip().lower() not in ("true", "false"):
        raise Ec2Error("InvalidParameterValue",
                       f"Value ({value}) for parameter {attr} is invalid. Expected 'true' or 'false'.")
    return value.strip().lower() == "true"


# attribute -> the instance service's keyword for it
_SERVICE_KW = {
    "instanceType": "instance_type", "userData": "user_data",
    "disableApiTermination": "disable_api_termination",
    "instanceInitiatedShutdownBehavior": "shutdown_behavior", "kernel": "kernel",
    "ramdisk": "ramdisk",
}


def _decoded(attr: str, value: str) -> Any:
    """The value of one attribute in the service's terms, checked as EC2 checks it."""
    if attr == "instanceType":
        try:
            get_type(value)
        except NotFound:
            raise Ec2Error("InvalidParameterValue",
                           f"Invalid value '{value}' for InstanceType.") from None
    elif attr == "userData":
        try:
            return base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Ec2Error("InvalidParameterValue", "Invalid BASE64 encoding of user data.") \
                from None
    elif attr == "disableApiTermination":
        return _bool(attr, value)
    return value


@action("ModifyInstanceAttribute")
def modify_instance_attribute(ctx: Ctx, p: Params) -> dict[str, Any]:
    inst = _instance(ctx, p)
    if p.has("GroupId") or p.str("Attribute") == "groupSet":   # the instance's security groups
        return modify_groups(ctx, inst, p)
    attr, raw = _requested_change(p)
    change = {_SERVICE_KW[attr]: _decoded(attr, raw)}
    svc = ctx.cloud.instances
    if attr in ("instanceType", "userData"):      # these change on a stopped instance only
        if p.dry_run():
            raise dry_run_ok()
        svc.modify(inst.id, caller=ctx.caller, **change)
        return {"return": True}
    svc.validate_attributes(**{k: v for k, v in change.items()
                               if k != "disable_api_termination"})
    if p.dry_run():
        raise dry_run_ok()
    svc.set_attributes(inst.id, caller=ctx.caller, **change)
    return {"return": True}


@action("GetPasswordData")
def get_password_data(ctx: Ctx, p: Params) -> dict[str, Any]:
    """A Linux instance has no generated administrator password: EC2 answers an empty one."""
    inst = _find(ctx, [p.req("InstanceId")])[0]
    if p.dry_run():
        raise dry_run_ok()
    return {"instanceId": inst.id, "timestamp": inst.launched_at or inst.created,
            "passwordData": ""}


# --- images ----------------------------------------------------------------------------------------

_IMAGE_ATTRIBUTES = ("description", "kernel", "ramdisk", "launchPermission", "productCodes",
                     "blockDeviceMapping", "sriovNetSupport", "bootMode", "tpmSupport", "uefiData",
                     "lastLaunchedTime", "imdsSupport", "deregistrationProtection")
ACCOUNT_ID = re.compile(r"^[0-9]{12}$")


def _image(ctx: Ctx, p: Params) -> Image:
    image_id = p.req("ImageId")
    check_ids([image_id], "image")
    return ctx.cloud.images.get(image_id, caller=ctx.caller)


def _invalid_request(detail: str) -> Ec2Error:
    return Ec2Error("InvalidRequest", f"The request received was invalid. {detail}")


def launch_permissions(img: Image) -> list[dict[str, str]]:
    return ([{"group": "all"}] if img.public else []) + \
        [{"userId": account_id(pid)} for pid in img.launch_projects]


@action("DescribeImageAttribute")
def describe_image_attribute(ctx: Ctx, p: Params) -> dict[str, Any]:
    attr = p.req("Attribute")
    img = _image(ctx, p)
    if attr not in _IMAGE_ATTRIBUTES:
        raise _invalid_request(f"Unknown image attribute '{attr}'.")
    if attr == "blockDeviceMapping":   # EC2 refuses it too (DescribeImages shows the mappings)
        raise Ec2Error("AuthFailure", "Unauthorized attempt to access restricted resource")
    if p.dry_run():
        raise dry_run_ok()
    value: Any = {}
    if attr == "description":
        value = {"value": img.description}
    elif attr == "launchPermission":
        # who else may launch it is the owner's business: others see "not found"
        value = launch_permissions(ctx.cloud.images.owned(img.id, caller=ctx.caller))
    elif attr == "productCodes":
        value = []
    elif attr == "deregistrationProtection":
        value = {"value": "disabled"}
    return {"imageId": img.id, attr: value}


def _permission_items(p: Params) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(add, remove) launch permission items from either request form: `LaunchPermission.Add.N` /
    `.Remove.N`, or `OperationType` with `UserId.N` / `UserGroup.N`."""
    lp = p.struct("LaunchPermission")
    add = [i for i in lp.get("Add", []) if isinstance(i, dict)]
    remove = [i for i in lp.get("Remove", []) if isinstance(i, dict)]
    users, groups = p.list("UserId"), p.list("UserGroup")
    if users or groups:
        op = p.str("OperationType")
        if op is None:
            raise missing("OperationType")
        if op not in ("add", "remove"):
            raise Ec2Error("InvalidParameterValue",
                           f"Value ({op}) for parameter operationType is invalid. "
                           "Expected 'add' or 'remove'.")
        items = [{"UserId": u} for u in users] + [{"Group": g} for g in groups]
        (add if op == "add" else remove).extend(items)
    return add, remove


def _bad_item(kind: str, value: object) -> Ec2Error:
    return Ec2Error("InvalidAMIAttributeItemValue",
                    f'Invalid attribute item value "{value}" for {kind} item type.')


def _launch_change(ctx: Ctx, add: list[dict[str, Any]], remove: list[dict[str, Any]],
                   ) -> tuple[bool | None, list[str], list[str]]:
    """(public, projects to grant, projects to revoke) from permission items; a group other than
    `all`, an ill-formed account id, an account of no project here, or an organization (there are
    none) is InvalidAMIAttributeItemValue, before anything changes."""
    projects = {account_id(pr.id): pr.id for pr in ctx.cloud.accounts.list_projects()}
    public: bool | None = None
    grant: list[str] = []
    revoke: list[str] = []
    for items, adding in ((add, True), (remove, False)):
        for item in items:
            for key in ("OrganizationArn", "OrganizationalUnitArn"):
                if key in item:
                    raise _bad_item(key[0].lower() + key[1:], item[key])
            if "Group" in item:
                if item["Group"] != "all":
                    raise _bad_item("group", item["Group"])
                public = adding
            if "UserId" in item:
                acct = str(item["UserId"])
                if not ACCOUNT_ID.match(acct):
                    raise _bad_item("userId", acct)
                if acct in projects:
                    (grant if adding else revoke).append(projects[acct])
                elif adding:
                    raise _bad_item("userId", acct)
    return public, grant, revoke


@action("ModifyImageAttribute")
def modify_image_attribute(ctx: Ctx, p: Params) -> dict[str, Any]:
    img = _image(ctx, p)
    attr = p.str("Attribute")
    description = p.str("Description.Value")
    add, remove = _permission_items(p)
    wanted: set[str] = set()
    if description is not None:
        wanted.add("description")
    if add or remove:
        wanted.add("launchPermission")
    if p.has("ImdsSupport") or p.list("ProductCode") or p.has("OrganizationArn") \
            or p.has("OrganizationalUnitArn"):
        wanted.add("unsupported")
    if attr is not None:
        if attr not in _IMAGE_ATTRIBUTES:
            raise _invalid_request(f"Unknown image attribute '{attr}'.")
        if attr not in ("description", "launchPermission"):
            raise _invalid_request(f"The image attribute '{attr}' cannot be modified here "
                                   "(description and launchPermission can).")
        if attr == "description" and description is None:
            description = p.req("Value")
        wanted.add(attr)
    if "unsupported" in wanted:
        raise Ec2Error("UnsupportedOperation",
                       "Only the description and launchPermission of an image can be modified "
                       "here (no IMDS requirement, product codes or organizations).")
    if not wanted:
        raise Ec2Error("InvalidParameterCombination", "No attributes specified.")
    if len(wanted) > 1:
        raise Ec2Error("InvalidParameterCombination",
                       "Only one attribute can be modified at a time.")
    if "launchPermission" in wanted and not (add or remove):
        raise missing("LaunchPermission")
    public, grant, revoke = _launch_change(ctx, add, remove)
    if p.dry_run():
        raise dry_run_ok()
    if description is not None:
        ctx.cloud.images.set_description(img.id, description, caller=ctx.caller)
    else:
        ctx.cloud.images.change_launch_permission(img.id, public=public, grant=grant,
                                                  revoke=revoke, caller=ctx.caller)
    return {"return": True}
