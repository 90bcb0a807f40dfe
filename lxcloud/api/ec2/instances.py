"""EC2 instance actions over the instance service."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Any

from lxcloud.api.ec2.addresses import public_ip
from lxcloud.api.ec2.common import (
    STATE_CODES,
    apply_filters,
    check_ids,
    ec2_arch,
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
from lxcloud.api.ec2.security_groups import group_set, launch_groups
from lxcloud.api.ec2.vpc import INSTANCE_FILTERS as NETWORK_FILTERS
from lxcloud.api.ec2.vpc import instance_network, launch_nics
from lxcloud.core.errors import InvalidState
from lxcloud.core.instance import ROOT_DEVICE, BlockDevice, BootOptions, Kind
from lxcloud.core.models import Instance
from lxcloud.services.instances import LaunchRequest
from lxcloud.services.reconciler import SELF_SHUTDOWN

TERMINATED_VISIBLE = timedelta(hours=1)


def _state(inst: Instance) -> dict[str, Any]:
    code, name = STATE_CODES.get(inst.state, (80, "stopped"))
    return {"code": code, "name": name}


def _dns(ctx: Ctx, inst: Instance) -> str:
    return private_dns(ctx.cloud.settings.region, inst.ipv4)


def render_instance(ctx: Ctx, inst: Instance, tags: dict[str, str],
                    groups: list[dict[str, str]] | None = None) -> dict[str, Any]:
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
        "keyName": inst.key_name, "amiLaunchIndex": inst.launch_index,
        "instanceType": inst.instance_type, "launchTime": inst.launched_at or inst.created,
        "placement": {"availabilityZone": _zone(ctx, inst), "tenancy": "default"},
        "monitoring": {"state": "disabled"}, "privateIpAddress": inst.ipv4,
        "ipAddress": public_ip(ctx, inst.id),
        "architecture": ec2_arch(_arch(ctx, inst.image_id)), "rootDeviceType": "instance-store",
        "rootDeviceName": ROOT_DEVICE,
        "hypervisor": "lxc" if inst.kind == Kind.CONTAINER else "kvm",
        "virtualizationType": "container" if inst.kind == Kind.CONTAINER else "hvm",
        "blockDeviceMapping": _block_device_mapping(ctx, inst) or None,
        "groupSet": groups or [], "tagSet": tag_set(tags), "stateReason": reason,
        "clientToken": inst.client_token or "",
        "cpuOptions": {"coreCount": max(1, int(inst.limits.vcpus)), "threadsPerCore": 1},
        **instance_network(ctx, inst, groups or []),
    }


def _block_device_mapping(ctx: Ctx, inst: Instance) -> list[dict[str, Any]]:
    """The instance's volumes, under the device names they were attached with (their mount path
    when none was given)."""
    vols = [d for d in inst.disks if not d.is_root]
    if not vols:
        return []
    # attach times, from one listing of the caller's attachments per request
    times: dict[tuple[str, str], datetime] = ctx.__dict__.setdefault("_attached", {})
    if not times:
        for v in ctx.cloud.volumes.list(caller=ctx.caller):
            times.update({(a.volume_id, a.instance_id): a.created for a in v.attachments})
        times[("", "")] = inst.created
    return [{"deviceName": d.device or d.path,
             "ebs": {"volumeId": d.name, "status": "attached", "deleteOnTermination": False,
                     "attachTime": times.get((d.name, inst.id))}} for d in vols]


def _zone(ctx: Ctx, inst: Instance) -> str:
    return inst.zone or ctx.cloud.settings.zones[0]


def _reservation(inst: Instance) -> str:
    return inst.reservation_id or "r-" + inst.id[2:]


def _arch(ctx: Ctx, image_id: str) -> str:
    """An image's architecture, from one listing of the images per request."""
    cache: dict[str, str] = ctx.__dict__.setdefault("_arch", {})
    if not cache:
        cache.update({i.id: i.architecture for i in ctx.cloud.images.list()})
        cache.setdefault("", "")
    return cache.get(image_id, "")


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
        raise not_found("InvalidInstanceID.NotFound", "instance", missing)
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
        "key-name": lambda i: i.key_name, "availability-zone": lambda i: _zone(ctx, i),
        "reservation-id": _reservation, "private-dns-name": lambda i: _dns(ctx, i),
        "architecture": lambda i: ec2_arch(_arch(ctx, i.image_id)),
        "ip-address": lambda i: public_ip(ctx, i.id),
    })
    fields.update(NETWORK_FILTERS)
    items = apply_filters(items, filters, fields, lambda i: tags.get(i.id, {}))
    key = "DescribeInstances|" + repr(sorted(filters.items()))
    page, token = paginate(items, max_results, p.str("NextToken"), key=key,
                           secret=ctx.cloud.ec2_token_secret)
    reservations: dict[str, list[Instance]] = {}
    for i in page:
        reservations.setdefault(_reservation(i), []).append(i)
    groups = group_set(ctx, page)
    return {"reservationSet": [
        {"reservationId": rid, "ownerId": owner(ctx.caller),
         "groupSet": groups.get(insts[0].id, []),
         "instancesSet": [render_instance(ctx, i, tags.get(i.id, {}), groups.get(i.id))
                          for i in insts]}
        for rid, insts in reservations.items()], "nextToken": token}


@action("RunInstances")
def run_instances(ctx: Ctx, p: Params) -> dict[str, Any]:
    """A translation: every rule (counts, type, image, key, name, user data, zone, quota, what a
    container can honour) is the instance service's."""
    image_id = p.req("ImageId")
    check_ids([image_id], "image")
    min_count = p.int("MinCount", min=1, required=True)
    max_count = p.int("MaxCount", min=1, required=True)
    assert min_count is not None and max_count is not None
    tags = request_tags(p, "instance")
    features = frozenset(name for param, name in (
        ("CpuOptions", "cpu_options"), ("HibernationOptions", "hibernation"),
        ("EnclaveOptions", "enclave")) if p.has(param))
    req = LaunchRequest(
        image=image_id, name=tags.get("Name"), name_from_tag=True,
        instance_type=p.str("InstanceType"), user_data=_user_data(p.str("UserData")),
        key_name=p.str("KeyName"), zone=p.str("Placement.AvailabilityZone") or None,
        client_token=p.str("ClientToken"), tags=tags or None,
        min_count=min_count, max_count=max_count,
        nics=launch_nics(p),
        boot=BootOptions(kernel_id=p.str("KernelId") or None,
                         ramdisk_id=p.str("RamdiskId") or None, features=features),
        block_devices=_block_devices(p),
        security_groups=launch_groups(p),
        disable_api_termination=p.bool("DisableApiTermination"),
        shutdown_behavior=p.str("InstanceInitiatedShutdownBehavior") or "stop")
    launched = ctx.cloud.instances.launch(req, caller=ctx.caller, dry_run=p.dry_run())
    if not launched:
        raise dry_run_ok()
    insts = [i for i, _ in launched]
    all_tags = ctx.cloud.tags.of(ctx.caller, [i.id for i in insts])
    groups = group_set(ctx, insts)
    return {"reservationId": _reservation(insts[0]), "ownerId": owner(ctx.caller),
            "groupSet": groups.get(insts[0].id, []),
            "instancesSet": [render_instance(ctx, i, all_tags.get(i.id, {}), groups.get(i.id))
                             for i in insts]}


def _user_data(b64: str | None) -> str | None:
    """EC2 sends user data base64-encoded."""
    if not b64:
        return None
    try:
        return base64.b64decode(b64, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Ec2Error("InvalidParameterValue", "Invalid BASE64 encoding of user data.") from None


def _block_devices(p: Params) -> tuple[BlockDevice, ...]:
    out = []
    for m in p.struct_list("BlockDeviceMapping"):
        if not isinstance(m, dict):
            continue
        ebs: dict[str, Any] = m["Ebs"] if isinstance(m.get("Ebs"), dict) else {}
        size = ebs.get("VolumeSize")
        try:
            size_bytes = int(size) * 1024**3 if size not in (None, "") else None
        except (TypeError, ValueError):
            raise Ec2Error("InvalidParameterValue",
                           f"Invalid value '{size}' for BlockDeviceMapping VolumeSize.") from None
        out.append(BlockDevice(device_name=str(m.get("DeviceName") or ""), size=size_bytes,
                               snapshot_id=ebs.get("SnapshotId") or None,
                               no_device="NoDevice" in m,
                               virtual_name=m.get("VirtualName") or None))
    return tuple(out)


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
