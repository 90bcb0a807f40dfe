"""EC2 errors: the one mapping of lxcloud's core errors to EC2 error codes.

Every EC2 action raises or is translated into `Ec2Error`; the transport renders it with
`xml.render_error` and its `status`. Services never name an EC2 code: a core error carries its
class, its `resource` and, where needed, a `reason` (core.errors.Reason), and this module picks
the code from those, here and nowhere else.
"""

from __future__ import annotations

from lxcloud.core import errors as core

# HTTP statuses as EC2 answers them. botocore only reads the XML, but curl users see these.
_STATUS: dict[str, int] = {
    "AuthFailure": 401,
    "MissingAuthenticationToken": 401,
    "SignatureDoesNotMatch": 403,
    "UnauthorizedOperation": 403,
    "OptInRequired": 403,
    "DryRunOperation": 412,
    "InternalError": 500,
    "InsufficientInstanceCapacity": 500,
    "Unavailable": 503,
    "RequestLimitExceeded": 503,
}

# NotFound codes by the `resource` detail the services set.
_NOT_FOUND: dict[str, str] = {
    "instance": "InvalidInstanceID.NotFound",
    "image": "InvalidAMIID.NotFound",
    "key_pair": "InvalidKeyPair.NotFound",
    "volume": "InvalidVolume.NotFound",
    "snapshot": "InvalidSnapshot.NotFound",
    "security_group": "InvalidGroup.NotFound",
    "security_group_rule": "InvalidPermission.NotFound",
    "address": "InvalidAllocationID.NotFound",
    "public_address": "InvalidAddress.NotFound",
    "address_name": "InvalidAddress.NotFound",
    "association": "InvalidAssociationID.NotFound",
    "reservation": "InvalidReservationID.NotFound",
    "zone": "InvalidZone.NotFound",
    "network": "InvalidSubnetID.NotFound",
    "subnet": "InvalidSubnetID.NotFound",
    "vpc": "InvalidVpcID.NotFound",
    "network_interface": "InvalidNetworkInterfaceID.NotFound",
    "instance_type": "InvalidParameterValue",
    "tag": "InvalidParameterValue",
    "project": "AuthFailure",
    "user": "AuthFailure",
}

# Conflict codes by resource (a duplicate name or an object still in use).
_CONFLICT: dict[str, str] = {
    "key_pair": "InvalidKeyPair.Duplicate",
    "security_group": "InvalidGroup.Duplicate",
    "security_group_in_use": "InvalidGroup.InUse",
    "security_group_default": "CannotDelete",
    "security_group_rule": "InvalidPermission.Duplicate",
    "image": "InvalidAMIName.Duplicate",
    "image_name": "InvalidAMIName.Duplicate",
    "volume": "VolumeInUse",
    "instance": "IncorrectInstanceState",
    "address": "Resource.AlreadyAssociated",
    "address_forwards": "InvalidIPAddress.InUse",
}


class Ec2Error(Exception):
    """An error as EC2 reports it: a code from EC2's catalogue, a message and an HTTP status."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else status_for(code)


def status_for(code: str) -> int:
    """The HTTP status EC2 uses for `code`: 400 unless it is an auth or server-side error."""
    return _STATUS.get(code, 400)


def to_ec2(err: core.LxcloudError, *, action: str) -> Ec2Error:
    """Translate a core error raised while serving `action` into the EC2 error a client expects.

    Internal errors keep their details to the server log; the client gets EC2's generic text.
    """
    code = _code_for(err)
    if code == "InternalError":
        return Ec2Error(code, f"An internal error has occurred while processing {action}.")
    return Ec2Error(code, err.message)


# Codes by reason, for a reason whose code does not depend on the resource.
_REASON: dict[core.Reason, str] = {
    core.Reason.KEY_FORMAT: "InvalidKey.Format",
    core.Reason.TAG_LIMIT: "TagLimitExceeded",
    core.Reason.TERMINATION_PROTECTED: "OperationNotPermitted",
    core.Reason.INVALID_COMBINATION: "InvalidParameterCombination",
    core.Reason.MISSING_PARAMETER: "MissingParameter",
    core.Reason.ZONE_MISMATCH: "InvalidVolume.ZoneMismatch",
    core.Reason.OVERLAP: "InvalidSubnet.Conflict",
    core.Reason.SUBNET_RANGE: "InvalidSubnet.Range",
    core.Reason.ADDRESS_IN_USE: "InvalidIPAddress.InUse",
}

# Codes of an object refused while others use it (core.InUse), by resource.
_IN_USE: dict[str, str] = {
    "network": "DependencyViolation",
}

# Malformed-id codes by resource.
_MALFORMED: dict[str, str] = {
    "instance": "InvalidInstanceID.Malformed",
    "image": "InvalidAMIID.Malformed",
    "volume": "InvalidVolumeID.Malformed",
    "snapshot": "InvalidSnapshotID.Malformed",
    "security_group": "InvalidGroupId.Malformed",
    "key_pair": "InvalidKeyPair.Format",
    "reservation": "InvalidReservationID.Malformed",
    "resource": "InvalidID",           # an id of any kind (CreateTags' ResourceId)
    "address": "InvalidAllocationID.Malformed",
    "subnet": "InvalidSubnetID.Malformed",
    "vpc": "InvalidVpcID.Malformed",
    "network_interface": "InvalidNetworkInterfaceID.Malformed",
}


def _code_for(err: core.LxcloudError) -> str:
    """The mapping: a reason first, then the class; order matters (InvalidState is a Conflict)."""
    resource = str(err.details.get("resource", ""))
    if err.reason is core.Reason.MALFORMED_ID:
        return _MALFORMED.get(resource, "InvalidParameterValue")
    if err.reason in _REASON:
        return _REASON[err.reason]
    if isinstance(err, core.InvalidCombination):
        return "InvalidParameterCombination"
    if isinstance(err, core.InUse) and resource in _IN_USE:
        return _IN_USE[resource]
    if isinstance(err, core.NotFound):
        return _NOT_FOUND.get(resource, "InvalidParameterValue")
    if isinstance(err, core.InvalidState):
        return "IncorrectInstanceState" if resource in ("", "instance") else "IncorrectState"
    if isinstance(err, core.Busy):     # a volume or snapshot busy is IncorrectState on EC2
        target = str(err.details.get("target", ""))
        return "IncorrectState" if target.startswith(("vol-", "snap-")) \
            else "IncorrectInstanceState"
    if isinstance(err, core.InUse) and resource in ("address", "address_forwards"):
        return "InvalidIPAddress.InUse"      # releasing an address still in use
    if isinstance(err, core.Conflict):
        return _CONFLICT.get(resource, "InvalidParameterValue")
    if isinstance(err, core.InvalidInput):
        return "InvalidParameterValue"
    if isinstance(err, core.QuotaExceeded) and resource in ("address", "addresses"):
        return "AddressLimitExceeded"        # the project's limit, or no pool has one left
    if isinstance(err, core.QuotaExceeded):
        return "InstanceLimitExceeded"
    if isinstance(err, core.Unsupported):
        return "UnsupportedOperation"
    if isinstance(err, core.Unauthorized):
        return "AuthFailure"
    if isinstance(err, core.Forbidden):
        return "UnauthorizedOperation"
    return "InternalError"


def dry_run_ok() -> Ec2Error:
    """What EC2 answers when `DryRun=true` and the request would have succeeded."""
    return Ec2Error("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
