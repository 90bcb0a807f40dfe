"""EC2 XML responses: the action envelope and the error envelope.

The body is plain data whose keys are EC2's own element names (`reservationSet`, `instancesSet`,
`instanceState`, `tagSet` ...), so one renderer serves every action:

- a dict nests elements; a list under a key becomes `<key><item>...</item>...</key>`;
- bools are `true`/`false`, datetimes ISO 8601 in UTC with milliseconds (`2026-11-23T02:14:00.000Z`),
  ints and floats their text; None leaves the element out;
- text is XML-escaped and characters XML 1.0 forbids are replaced, so no value breaks a response.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
API_VERSION = "2016-11-15"
_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


def new_request_id() -> str:
    """A request id shaped like EC2's (a UUID)."""
    return str(uuid.uuid4())


def render(action: str, body: Mapping[str, Any], request_id: str) -> bytes:
    """`<{action}Response xmlns=...><requestId>...</requestId>{body}</{action}Response>` as UTF-8."""
    _check_name(action)
    parts = [_DECLARATION, f'<{action}Response xmlns="{NAMESPACE}">',
             f"<requestId>{text(request_id)}</requestId>"]
    _members(body, parts)
    parts.append(f"</{action}Response>")
    return "".join(parts).encode("utf-8")


def render_error(code: str, message: str, request_id: str) -> bytes:
    """EC2's error envelope: Response/Errors/Error/{Code,Message} and RequestID."""
    return (f"{_DECLARATION}<Response><Errors><Error><Code>{text(code)}</Code>"
            f"<Message>{text(message)}</Message></Error></Errors>"
            f"<RequestID>{text(request_id)}</RequestID></Response>").encode()


def timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and Z; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def text(value: object) -> str:
    """A scalar as escaped element text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return timestamp(value)
    return escape(_ILLEGAL.sub("\ufffd", str(value)))


def _members(body: Mapping[str, Any], parts: list[str]) -> None:
    for key, value in body.items():
        _element(key, value, parts)


def _element(key: str, value: Any, parts: list[str]) -> None:
    if value is None:
        return
    _check_name(key)
    if isinstance(value, Mapping):
        parts.append(f"<{key}>")
        _members(value, parts)
        parts.append(f"</{key}>")
    elif isinstance(value, list | tuple):
        if not value:
            parts.append(f"<{key}/>")
            return
        parts.append(f"<{key}>")
        for item in value:
            _element("item", item, parts)
        parts.append(f"</{key}>")
    else:
        parts.append(f"<{key}>{text(value)}</{key}>")


def _check_name(name: str) -> None:
    # Element names come from our code, never from users; a bad one is a bug to catch early.
    if not _NAME.match(name):
        raise ValueError(f"not a valid XML element name: {name!r}")
