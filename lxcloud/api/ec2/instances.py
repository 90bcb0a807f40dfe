"""EC2 instance actions over the instance service."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Any

from lxcloud.api.ec2.app import Ctx, action
from lxcloud.api.ec2.common import (
    ROOT_DEVICE,
    STATE_CODES,
    apply_filters,
    check_ids,
    ec2_arch,
    owner,
    request_tags,
    tag_set,
)
from lxcloud.api.ec2.errors import Ec2Error, dry_run_ok
from lxcloud.api.ec2.pagination import paginate
from lxcloud.api.ec2.params import Params
from lxcloud.core.errors import InvalidState, NotFound
from lxcloud.core.ids import valid_name
from lxcloud.core.instance_types import DEFAULT_TYPE, get_type
from lxcloud.core.models import Instance
from lxcloud.services.instances import LaunchInput
from lxcloud.services.reconciler import SELF_SHUTDOWN

TERMINATED_VISIBLE = timedelta(hours=1)


def _state(inst: Instance) -> dict[str, Any]:
    code, name = STATE_CODES.get(inst.state, (80, "stopped"))
    return {"code": code, "name": name}


def _dns(ctx: Ctx, inst: Instance) -> str:
    return f"ip-{inst.ipv4.replace('.', '-')}.{ctx.cloud.settings.region}.compute.internal" \
        if inst.ipv4 else ""


def render_instance(ctx: Ctx, inst: Instance, tags: dict[str, str]) -> dict[str, Any]:
    image = _image(ctx, inst.image_id)
    reason = None
    if inst.state_reason == SELF_SHUTDOWN and inst.state in ("stopped", "terminated"):
        reason = {"code": "Client.InstanceInitiatedShutdown",
                  "message": "Client.InstanceInitiatedShutdown: Instance initiated shutdown"}
    elif inst.state in ("error", "terminated") and inst.state_reason:
        reason = {"code": "Server.InternalError" if inst.state == "error"
                  else "Client.UserInitiatedShutdown", "message": inst.state_reason[:255]}
    return {
        "instanceId": inst.id, "imageId": inst.image_id, "instanceState": _state(inst),
        "privateDnsName": _dns(ctx, inst), "dnsName": "", "reason": inst.state_reason or "",
        "keyName": _key_name(ctx, inst), "amiLaunchIndex": _launch_index(ctx, inst),
        "instanceType": inst.instance_type, "launchTime": inst.launched_at or inst.created,
        "placement": {"availabilityZone": _zone(ctx, inst), "tenancy": "default"},
        "monitoring": {"state": "disabled"}, "privateIpAddress": inst.ipv4,
        "architecture": ec2_arch(image.get("architecture", "")), "rootDeviceType": "instance-store",
        "rootDeviceName": ROOT_DEVICE,
        "hypervisor": "lxc", "virtualizationType": "container", "groupSet": [],
        "tagSet": tag_set(tags), "stateReason": reason,
        "clientToken": _row(ctx, inst).get("client_token") or "",
        "cpuOptions": {"coreCount": max(1, int(inst.limits.get("vcpus", 1))), "threadsPerCore": 1},
    }


def _row(ctx: Ctx, inst: Instance) -> dict[str, Any]:
    """The EC2-only columns of an instance (key, reservation, zone, client token, index)."""
    cache: dict[str, dict[str, Any]] = ctx.__dict__.setdefault("_rows", {})  # per request
    if inst.id not in cache:
        from lxcloud.db.tables import InstanceRow

        with ctx.cloud.db.reader() as s:
            r = s.get(InstanceRow, inst.id)
            cache[inst.id] = {} if r is None else {
                "key_name": r.key_name, "reservation_id": r.reservation_id, "zone": r.zone,
                "client_token": r.client_token, "launch_index": r.launch_index}
    return cache[inst.id]


def _key_name(ctx: Ctx, inst: Instance) -> str | None:
    return _row(ctx, inst).get("key_name")


def _launch_index(ctx: Ctx, inst: Instance) -> int:
    return int(_row(ctx, inst).get("launch_index") or 0)


def _zone(ctx: Ctx, inst: Instance) -> str:
    return _row(ctx, inst).get("zone") or ctx.cloud.settings.zones[0]


def _reservation(ctx: Ctx, inst: Instance) -> str:
    return _row(ctx, inst).get("reservation_id") or "r-" + inst.id[2:]


def _image(ctx: Ctx, image_id: str) -> dict[str, Any]:
    try:
        img = ctx.cloud.images.get(image_id)
        return {"architecture": img.architecture, "os": img.os}
    except NotFound:
        return {}


def _visible(ctx: Ctx, ids: list[str] | None) -> list[Instance]:
    """The caller's instances, terminated ones included for an hour, as EC2 shows them."""
    cutoff = datetime.now(UTC) - TERMINATED_VISIBLE
    out = []
    for i in ctx.cloud.instances.list(include_terminated=True, caller=ctx.caller, ids=ids):
        if i.state == "terminated":
            t = i.terminated_at
            if t is None or (t if t.tzinfo else t.replace(tzinfo=UTC)) < cutoff:
                continue
        out.append(i)
    return out


def _find(ctx: Ctx, ids: list[str]) -> list[Instance]:
    """Exactly these instances of the caller, or InvalidInstanceID.NotFound naming the missing."""
    check_ids(ids, "instance")
    found = {i.id: i for i in _visible(ctx, ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        raise Ec2Error("InvalidInstanceID.NotFound",
                       f"The instance ID{'s' if len(missing) > 1 else ''} {names} "
                       f"do{'' if len(missing) > 1 else 'es'} not exist")
    return [found[i] for i in ids]


INSTANCE_FILTERS = {
    "instance-id": lambda i: i.id, "instance-state-name": lambda i: STATE_CODES[i.state][1],
    "instance-state-code": lambda i: STATE_CODES[i.state][0], "instance-type": lambda i: i.instance_type,
    "image-id": lambda i: i.image_id, "private-ip-address": lambda i: i.ipv4,
    "ip-address": lambda i: None,
}


@action("DescribeInstances")
def describe_instances(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.list("InstanceId")
    max_results = p.int("MaxResults")
    if ids and max_results is not None:
        raise Ec2Error("InvalidParameterCombination",
                       "The parameter instancesSet cannot be used with the parameter maxResults")
    items = _find(ctx, ids) if ids else _visible(ctx, None)
    filters = p.filters()
    tags = ctx.cloud.tags.of(ctx.caller, [i.id for i in items])
    fields = dict(INSTANCE_FILTERS)
    fields.update({
        "key-name": lambda i: _key_name(ctx, i), "availability-zone": lambda i: _zone(ctx, i),
        "reservation-id": lambda i: _reservation(ctx, i), "private-dns-name": lambda i: _dns(ctx, i),
        "architecture": lambda i: ec2_arch(_image(ctx, i.image_id).get("architecture", "")),
    })
    items = apply_filters(items, filters, fields, lambda i: tags.get(i.id, {}))
    key = "DescribeInstances|" + repr(sorted(filters.items()))
    page, token = paginate(items, max_results, p.str("NextToken"), key=key,
                           secret=ctx.cloud.ec2_token_secret)
    reservations: dict[str, list[Instance]] = {}
    for i in page:
        reservations.setdefault(_reservation(ctx, i), []).append(i)
    return {"reservationSet": [
        {"reservationId": rid, "ownerId": owner(ctx.caller), "groupSet": [],
         "instancesSet": [render_instance(ctx, i, tags.get(i.id, {})) for i in insts]}
        for rid, insts in reservations.items()], "nextToken": token}


@action("RunInstances")
def run_instances(ctx: Ctx, p: Params) -> dict[str, Any]:
    image_id = p.req("ImageId")
    check_ids([image_id], "image")
    min_count = p.int("MinCount", min=1, required=True)
    max_count = p.int("MaxCount", min=1, required=True)
    assert min_count is not None and max_count is not None
    if max_count < min_count:
        raise Ec2Error("InvalidParameterValue", "MaxCount must be greater than or equal to MinCount")
    for opt in ("KernelId", "RamdiskId"):
        if p.str(opt):
            raise Ec2Error("InvalidParameterCombination",
                           f"{opt} can't be used with a container image: containers run on the "
                           "host's kernel and have no boot ramdisk")
    for vm_only in ("BlockDeviceMapping", "CpuOptions", "HibernationOptions", "EnclaveOptions"):
        if p.has(vm_only):
            raise Ec2Error("InvalidParameterCombination",
                           f"{vm_only} applies to virtual machines, not to container instances")
    itype = p.str("InstanceType") or DEFAULT_TYPE
    try:
        get_type(itype)
    except NotFound:
        raise Ec2Error("InvalidParameterValue",
                       f"Invalid value '{itype}' for InstanceType.") from None
    zone = p.str("Placement.AvailabilityZone")
    if zone and zone not in ctx.cloud.settings.zones:
        raise Ec2Error("InvalidParameterValue", f"Invalid availability zone: [{zone}]")
    user_data = None
    if p.str("UserData"):
        try:
            user_data = base64.b64decode(p.req("UserData"), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Ec2Error("InvalidParameterValue",
                           "Invalid BASE64 encoding of user data.") from None
    image = ctx.cloud.images.get(image_id, caller=ctx.caller)   # InvalidAMIID.NotFound
    key_name = p.str("KeyName")
    if key_name is not None:
        ctx.cloud.keypairs.get(key_name, ctx.caller)           # InvalidKeyPair.NotFound
    tags = request_tags(p, "instance")
    name = tags.get("Name")
    if name is not None and (not valid_name(name) or _name_taken(ctx, name)):
        name = None        # EC2 Name tags are free text; an instance name must be a hostname
    protect = p.bool("DisableApiTermination") if p.has("DisableApiTermination") else None
    on_halt = p.str("InstanceInitiatedShutdownBehavior")
    ctx.cloud.instances.validate_attributes(shutdown_behavior=on_halt)
    if p.dry_run():
        raise dry_run_ok()
    inp = LaunchInput(image=image.id, name=name, instance_type=itype, user_data=user_data,
                      key_name=key_name, zone=zone, client_token=p.str("ClientToken"),
                      tags=tags or None)
    launched = ctx.cloud.instances.launch_many(inp, min_count, max_count, caller=ctx.caller)
    if protect is not None or on_halt is not None:
        for i, _ in launched:
            if i.state != "terminated":    # a repeated ClientToken answers the first launch
                ctx.cloud.instances.set_attributes(i.id, disable_api_termination=protect,
                                                   shutdown_behavior=on_halt, caller=ctx.caller)
    insts = [ctx.cloud.instances.get(i.id, caller=ctx.caller) for i, _ in launched]
    all_tags = ctx.cloud.tags.of(ctx.caller, [i.id for i in insts])
    return {"reservationId": _reservation(ctx, insts[0]), "ownerId": owner(ctx.caller),
            "groupSet": [],
            "instancesSet": [render_instance(ctx, i, all_tags.get(i.id, {})) for i in insts]}


def _name_taken(ctx: Ctx, name: str) -> bool:
    try:
        ctx.cloud.instances.get(name)
        return True
    except NotFound:
        return False


def _changes(ctx: Ctx, p: Params, verb: str, **kw: Any) -> dict[str, Any]:
    ids = p.list("InstanceId", required=True)
    insts = _find(ctx, ids)
    if p.dry_run():
        raise dry_run_ok()
    if verb == "terminate":   # all or none: a protected one refuses the whole request
        ctx.cloud.instances.check_deletable([i.id for i in insts], caller=ctx.caller)
    out = []
    for inst in insts:
        before = _state(inst)
        current = before
        if verb == "terminate":
            if inst.state != "terminated":
                ctx.cloud.instances.delete(inst.id, force=True, caller=ctx.caller)
                current = {"code": 32, "name": "shutting-down"}
        elif (verb, inst.state) in (("start", "running"), ("stop", "stopped"), ("stop", "stopping"),
                                    ("start", "pending")):
            pass   # already there: EC2 answers with the current state, not an error
        else:
            try:
                ctx.cloud.instances.action(inst.id, verb, caller=ctx.caller, **kw)
            except InvalidState as e:
                raise Ec2Error("IncorrectInstanceState",
                               f"The instance '{inst.id}' is not in a state from which it can be "
                               f"{'started' if verb == 'start' else verb + 'ped'} ({e})") from None
            current = _state(ctx.cloud.instances.get(inst.id, caller=ctx.caller))
        out.append({"instanceId": inst.id, "currentState": current, "previousState": before})
    return {"instancesSet": out}


@action("StartInstances")
def start_instances(ctx: Ctx, p: Params) -> dict[str, Any]:
    return _changes(ctx, p, "start")


@action("StopInstances")
def stop_instances(ctx: Ctx, p: Params) -> dict[str, Any]:
    return _changes(ctx, p, "stop", force=p.bool("Force"))


@action("TerminateInstances")
def terminate_instances(ctx: Ctx, p: Params) -> dict[str, Any]:
    return _changes(ctx, p, "terminate")


@action("RebootInstances")
def reboot_instances(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.list("InstanceId", required=True)
    for inst in _find(ctx, ids):
        if inst.state != "running":
            raise Ec2Error("IncorrectInstanceState",
                           f"The instance '{inst.id}' is not in the 'running' state.")
    if p.dry_run():
        raise dry_run_ok()
    for i in ids:
        ctx.cloud.instances.action(i, "reboot", caller=ctx.caller)
    return {"return": True}


@action("GetConsoleOutput")
def get_console_output(ctx: Ctx, p: Params) -> dict[str, Any]:
    inst = _find(ctx, [p.req("InstanceId")])[0]
    try:
        log = ctx.cloud.instances.console_log(inst.id, caller=ctx.caller)
    except InvalidState:
        log = b""
    return {"instanceId": inst.id, "timestamp": datetime.now(UTC),
            "output": base64.b64encode(log[-65536:]).decode()}


@action("DescribeInstanceStatus")
def describe_instance_status(ctx: Ctx, p: Params) -> dict[str, Any]:
    ids = p.list("InstanceId")
    insts = _find(ctx, ids) if ids else _visible(ctx, None)
    if not p.bool("IncludeAllInstances"):
        insts = [i for i in insts if i.state in ("running", "rebooting", "frozen")]
    filters = p.filters()
    fields = dict(INSTANCE_FILTERS)
    fields["availability-zone"] = lambda i: _zone(ctx, i)
    insts = apply_filters(insts, filters, fields, lambda i: {})
    page, token = paginate(insts, p.int("MaxResults"), p.str("NextToken"),
                           key="DescribeInstanceStatus|" + repr(sorted(filters.items())),
                           secret=ctx.cloud.ec2_token_secret)

    def status(i: Instance) -> dict[str, Any]:
        ok = i.state in ("running", "rebooting", "frozen")
        st = "ok" if ok else "not-applicable"
        det = [{"name": "reachability", "status": "passed" if ok else "not-applicable"}]
        return {"status": st, "details": det}

    return {"instanceStatusSet": [
        {"instanceId": i.id, "availabilityZone": _zone(ctx, i), "instanceState": _state(i),
         "systemStatus": status(i), "instanceStatus": status(i)} for i in page], "nextToken": token}
