"""What the EC2 action modules share: id checks, filters, tags, account ids, state codes."""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lxcloud.api.ec2.errors import Ec2Error
from lxcloud.api.ec2.params import Params
from lxcloud.core.caller import Caller
from lxcloud.core.errors import InvalidInput, Reason

INSTANCE_ID = re.compile(r"^i-([0-9a-f]{8}|[0-9a-f]{17})$")
IMAGE_ID = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
KEY_PAIR_ID = re.compile(r"^key-[0-9a-f]{17}$")
VOLUME_ID = re.compile(r"^vol-([0-9a-f]{8}|[0-9a-f]{17})$")
SNAPSHOT_ID = re.compile(r"^snap-([0-9a-f]{8}|[0-9a-f]{17})$")
SUBNET_ID = re.compile(r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$")
VPC_ID = re.compile(r"^vpc-([0-9a-f]{8}|[0-9a-f]{17})$")
NETWORK_INTERFACE_ID = re.compile(r"^eni-([0-9a-f]{8}|[0-9a-f]{17})$")

# EC2's state codes; our states without an EC2 twin show as their nearest one
STATE_CODES = {
    "pending": (0, "pending"), "running": (16, "running"), "rebooting": (16, "running"),
    "frozen": (16, "running"), "stopping": (64, "stopping"), "stopped": (80, "stopped"),
    "error": (80, "stopped"), "terminated": (48, "terminated"), "shutting-down": (32, "shutting-down"),
}


# Debian's architecture names (what images record) -> EC2's
ARCH = {"amd64": "x86_64", "i386": "i386", "arm64": "arm64"}


def ec2_arch(debian_arch: str | None) -> str:
    return ARCH.get(debian_arch or "", debian_arch or "x86_64")


def account_id(project_id: str) -> str:
    """A 12-digit EC2-style account id for a project."""
    return str(int(hashlib.sha256(project_id.encode()).hexdigest(), 16) % 10**12).zfill(12)


def owner(caller: Caller) -> str:
    return account_id(caller.project_id)


def private_dns(region: str, ipv4: str | None) -> str:
    """EC2's private DNS name of an address ("" without one)."""
    return f"ip-{ipv4.replace('.', '-')}.{region}.compute.internal" if ipv4 else ""


ID_PATTERNS: dict[str, re.Pattern[str]] = {"instance": INSTANCE_ID, "image": IMAGE_ID,
                                           "volume": VOLUME_ID, "snapshot": SNAPSHOT_ID,
                                           "subnet": SUBNET_ID, "vpc": VPC_ID,
                                           "network_interface": NETWORK_INTERFACE_ID}
PREFIXES = {"instance": "i", "image": "ami", "volume": "vol", "snapshot": "snap",
            "subnet": "subnet", "vpc": "vpc", "network_interface": "eni"}


def check_ids(ids: Iterable[str], kind: str) -> None:
    """Each id is well-formed for its kind ("instance", "image", "volume", "snapshot", "subnet",
    "vpc", "network_interface"), else the kind's Malformed error (InvalidInstanceID.Malformed,
    InvalidAMIID.Malformed, InvalidSubnetID.Malformed …), before anything is looked up."""
    for i in ids:
        if not ID_PATTERNS[kind].match(i):
            raise InvalidInput(f'Invalid id: "{i}" (expecting "{PREFIXES[kind]}-...")',
                               resource=kind, reason=Reason.MALFORMED_ID)


def not_found(code: str, noun: str, missing: list[str]) -> Ec2Error:
    """EC2's NotFound for ids asked for and missing: "The instance ID 'i-…' does not exist"."""
    names = ", ".join(f"'{m}'" for m in missing)
    many = len(missing) > 1
    return Ec2Error(code, f"The {noun} ID{'s' if many else ''} {names} "
                          f"do{'' if many else 'es'} not exist")


def tag_set(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def request_tags(p: Params, resource_type: str) -> dict[str, str]:
    """Tags of TagSpecification.N for one resource type."""
    out: dict[str, str] = {}
    for spec in p.struct_list("TagSpecification"):
        if not isinstance(spec, dict):
            continue
        rtype = spec.get("ResourceType")
        if rtype not in (resource_type, None):
            continue
        for t in spec.get("Tag", []) or []:
            if isinstance(t, dict) and t.get("Key"):
                out[str(t["Key"])] = str(t.get("Value", ""))
    return out


def match(value: Any, patterns: list[str]) -> bool:
    """EC2 filter values: any of them, with * and ? wildcards."""
    values = value if isinstance(value, list | tuple | set) else [value]
    for v in values:
        s = "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
        if any(fnmatch.fnmatchcase(s, pat) for pat in patterns):
            return True
    return False


def apply_filters(items: list[Any], filters: dict[str, list[str]],
                  fields: Mapping[str, Callable[[Any], Any]],
                  tags: Callable[[Any], Mapping[str, str]]) -> list[Any]:
    """Keeps the items that pass every filter; unknown filter names are InvalidParameterValue."""
    out = items
    for name, patterns in filters.items():
        if name.startswith("tag:"):
            key = name[4:]
            out = [i for i in out if key in tags(i) and match(tags(i)[key], patterns)]
        elif name == "tag-key":
            out = [i for i in out if match(list(tags(i)), patterns)]
        elif name == "tag-value":
            out = [i for i in out if match(list(tags(i).values()), patterns)]
        elif name in fields:
            get = fields[name]
            out = [i for i in out if match(get(i), patterns)]
        else:
            raise Ec2Error("InvalidParameterValue", f"The filter '{name}' is invalid")
    return out
