"""MaxResults / NextToken pagination with opaque tokens bound to the query they came from.

A token is base64url of `offset:mac`, where mac is a short HMAC over the offset and the caller's
query `key` (the action plus its filters, in a stable form), keyed with the cloud's token secret
(kept in its data dir, so a token outlives a restart). A token handed back with another query,
or edited, fails with InvalidParameterValue, as EC2's do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from typing import TypeVar

from lxcloud.api.ec2.errors import Ec2Error

T = TypeVar("T")

MIN_RESULTS = 5
MAX_RESULTS = 1000
_MAC_BYTES = 12


def make_token(offset: int, key: str, secret: bytes) -> str:
    """The opaque token that resumes the query `key` at `offset`."""
    raw = f"{offset}:{_mac(offset, key, secret)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_token(token: str, key: str, secret: bytes) -> int:
    """The offset inside a token made for the same `key`; anything else is InvalidParameterValue."""
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        offset_text, mac = text.split(":", 1)
        offset = int(offset_text)
    except (ValueError, binascii.Error, UnicodeError):
        raise _bad_token(token) from None
    if offset < 0 or not hmac.compare_digest(mac, _mac(offset, key, secret)):
        raise _bad_token(token)
    return offset


def paginate(items: Sequence[T], max_results: int | None, next_token: str | None, *,
             key: str, secret: bytes) -> tuple[list[T], str | None]:
    """One page of `items` and the token of the next page (None on the last page).

    Without MaxResults and NextToken everything is returned at once, as EC2 does. MaxResults
    must be within 5..1000 (EC2's rule for DescribeInstances).
    """
    if max_results is not None and not MIN_RESULTS <= max_results <= MAX_RESULTS:
        raise Ec2Error("InvalidParameterValue",
                       f"Value ( {max_results} ) for parameter maxResults is invalid. "
                       f"Expecting a value greater than {MIN_RESULTS - 1} and less than "
                       f"{MAX_RESULTS + 1}.")
    start = read_token(next_token, key, secret) if next_token else 0
    if max_results is None:
        return list(items[start:]), None
    end = start + max_results
    page = list(items[start:end])
    return page, make_token(end, key, secret) if end < len(items) else None


def _mac(offset: int, key: str, secret: bytes) -> str:
    digest = hmac.new(secret, f"{offset}\n{key}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode()


def _bad_token(token: str) -> Ec2Error:
    return Ec2Error("InvalidParameterValue", f"The token '{token}' is invalid.")
