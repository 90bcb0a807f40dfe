"""The one error hierarchy. Every API maps these once; a user never sees a traceback.

An error says what went wrong in lxcloud's terms: its class, a message, the `resource` it is about
and, where the class alone is too coarse, a `reason` (one of `Reason`). Each API picks its own
code from those (REST: `code` + HTTP status; EC2: errors.to_ec2); no service names an API's code.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why an error happened, where its class and resource do not say enough."""

    MALFORMED_ID = "malformed_id"                     # an id of the right kind, ill-formed
    KEY_FORMAT = "key_format"                         # public key material not understood
    TAG_LIMIT = "tag_limit"                           # too many tags on one resource
    TERMINATION_PROTECTED = "termination_protected"   # delete refused: protection is on
    INVALID_COMBINATION = "invalid_combination"       # valid alone, not together
    MISSING_PARAMETER = "missing_parameter"           # a required value was not given
    ZONE_MISMATCH = "zone_mismatch"                   # a volume and an instance in two zones
    OVERLAP = "overlap"                               # a subnet overlaps another or a host route
    SUBNET_RANGE = "subnet_range"                     # a subnet that is no usable IPv4 network
    ADDRESS_IN_USE = "address_in_use"                 # a fixed address another instance holds


class LxcloudError(Exception):
    """Base of every error a user may see. `code` is a stable machine-readable name."""

    code = "internal"
    http_status = 500

    def __init__(self, message: str, *, reason: Reason | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.details = details
        if reason is not None:
            self.details["reason"] = str(reason)

    def __str__(self) -> str:
        return self.message


class NotFound(LxcloudError):
    code = "not_found"
    http_status = 404


class Conflict(LxcloudError):
    code = "conflict"
    http_status = 409


class InUse(Conflict):
    """Refused while something uses the target: a volume a process inside holds open, a pool
    with instances or volumes on it. `details` say what uses it."""

    code = "in_use"


class InvalidInput(LxcloudError):
    code = "invalid_input"
    http_status = 400


class InvalidState(Conflict):
    """An action not allowed from the resource's current state (details carry `state`)."""

    code = "invalid_state"
    http_status = 409


class QuotaExceeded(LxcloudError):
    code = "quota_exceeded"
    http_status = 429


class Exhausted(QuotaExceeded):
    """A finite pool (addresses, ids) has nothing left."""

    code = "exhausted"
    http_status = 507


class Unsupported(LxcloudError):
    code = "unsupported"
    http_status = 422


class InvalidCombination(Unsupported):
    """A description the chosen drivers cannot run (an EC2 kernel with a container, a block device
    mapping a container cannot honour, a pool without quotas asked for a disk limit): refused
    before any row is written or any host touched. `details` name the capability missing."""

    code = "invalid_combination"
    http_status = 422


class Unauthorized(LxcloudError):
    code = "unauthorized"
    http_status = 401


class Busy(Conflict):
    """Another operation holds the resource's lock."""

    code = "busy"
    http_status = 409


class DriverError(LxcloudError):
    """A host-side step failed. Carries the command and its stderr when there was one."""

    code = "driver_error"
    http_status = 500

    def __init__(self, message: str, *, command: list[str] | None = None, stderr: str = "",
                 reason: Reason | None = None, **details: object) -> None:
        super().__init__(message, reason=reason, **details)
        self.command = command
        self.stderr = stderr

    def __str__(self) -> str:
        if self.stderr:
            return f"{self.message}: {self.stderr.strip()[-2000:]}"
        return self.message


class Forbidden(LxcloudError):
    """Authenticated, but this caller may not do that (e.g. a member managing users)."""

    code = "forbidden"
    http_status = 403
