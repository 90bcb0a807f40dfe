"""AWS Signature Version 4, server side: rebuild the canonical request and check the signature.

Both forms are verified: the `Authorization: AWS4-HMAC-SHA256 ...` header and the presigned
query string (`X-Amz-Algorithm`, `X-Amz-Credential`, ... `X-Amz-Signature`). The canonical form
follows AWS's specification (and its published test suite): each path segment URI-encoded after
removing dot segments and empty segments, query pairs RFC 3986-encoded and sorted by key then value,
header names lower-cased, values trimmed with inner whitespace runs collapsed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote

from lxcloud.api.ec2.errors import Ec2Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
TERMINATOR = "aws4_request"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600  # AWS's bound on X-Amz-Expires: one week

_SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. "
                       "Check your AWS Secret Access Key and signing method. "
                       "Consult the service documentation for details.")
_UNKNOWN_KEY = "AWS was not able to validate the provided access credentials"


@dataclass(frozen=True)
class Credential:
    """The `AKID/DATE/REGION/SERVICE/aws4_request` part of a signature."""

    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


@dataclass(frozen=True)
class AuthInfo:
    """What a request claims about its signature, before anything is checked against a secret."""

    credential: Credential
    amz_date: str
    signed_headers: tuple[str, ...]
    signature: str
    presigned: bool
    expires: int | None = None


# --- canonical form -------------------------------------------------------------------------

def uri_encode(value: str, *, keep_slash: bool = False) -> str:
    """RFC 3986 percent-encoding of UTF-8 bytes: only A-Z a-z 0-9 - _ . ~ stay as they are."""
    return quote(value.encode("utf-8"), safe="-_.~/" if keep_slash else "-_.~")


def canonical_uri(path: str) -> str:
    """The decoded request path with dot segments and repeated slashes removed, then encoded."""
    if not path:
        return "/"
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    trailing = "/" if path.endswith("/") and kept else ""
    return "/" + "/".join(uri_encode(s) for s in kept) + trailing


def canonical_query(query: Iterable[tuple[str, str]]) -> str:
    """Decoded query pairs, encoded and sorted by encoded key then encoded value."""
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in query)
    return "&".join(f"{k}={v}" for k, v in pairs)


def header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """All values of header `name`, in order, case-insensitively; a multidict keeps duplicates."""
    getlist = getattr(headers, "getlist", None) or getattr(headers, "get_all", None)
    if callable(getlist):
        values = getlist(name)
        if values:
            return [str(v) for v in values]
    return [v for k, v in headers.items() if k.lower() == name]


def canonical_headers(headers: Mapping[str, str], names: Sequence[str]) -> str:
    """`name:value` lines for the signed header names, values trimmed and joined by commas."""
    lines = []
    for name in sorted(names):
        values = header_values(headers, name)
        if not values:
            raise Ec2Error("SignatureDoesNotMatch",
                           f"The header '{name}' is listed in SignedHeaders but is not in the request.")
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}")
    return "\n".join(lines) + "\n"


def canonical_request(method: str, path: str, query: Iterable[tuple[str, str]],
                      headers: Mapping[str, str], signed_headers: Sequence[str],
                      payload_hash: str) -> str:
    """The canonical request of AWS's SigV4 specification, task 1."""
    names = sorted(signed_headers)
    return "\n".join([method.upper(), canonical_uri(path), canonical_query(query),
                      canonical_headers(headers, names), ";".join(names), payload_hash])


def string_to_sign(amz_date: str, scope: str, creq: str) -> str:
    """SigV4 task 2: algorithm, request time, credential scope, hash of the canonical request."""
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode("utf-8")).hexdigest()])


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """SigV4 task 3: the key derived from the secret for one day, region and service."""
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, TERMINATOR):
        key = _hmac(key, part)
    return key


def compute_signature(secret: str, credential: Credential, amz_date: str, creq: str) -> str:
    """The hex signature of a canonical request."""
    key = signing_key(secret, credential.date, credential.region, credential.service)
    sts = string_to_sign(amz_date, credential.scope, creq)
    return hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def sign(method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str],
         body: bytes, *, access_key: str, secret: str, region: str, service: str = "ec2",
         amz_date: str) -> str:
    """The Authorization header value for a request signed over all of `headers` (for tests)."""
    credential = Credential(access_key, amz_date[:8], region, service)
    names = sorted({k.lower() for k in headers})
    creq = canonical_request(method, path, query, headers, names, sha256_hex(body))
    sig = compute_signature(secret, credential, amz_date, creq)
    return (f"{ALGORITHM} Credential={access_key}/{credential.scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={sig}")


# --- parsing what the request claims -----------------------------------------------------------

def parse_credential(value: str, where: str) -> Credential:
    """Split `AKID/DATE/REGION/SERVICE/aws4_request`; anything else is an IncompleteSignature."""
    parts = value.split("/")
    if len(parts) != 5 or parts[4] != TERMINATOR or not all(parts[:4]) or not _is_date(parts[1]):
        raise Ec2Error("IncompleteSignature",
                       f"{where}: Credential must have exactly 5 slash-delimited elements, "
                       f"e.g. keyid/date/region/service/{TERMINATOR}, got '{value}'")
    return Credential(*parts[:4])


def _is_date(value: str) -> bool:
    return len(value) == 8 and value.isdigit()


def parse_authorization(value: str, headers: Mapping[str, str]) -> AuthInfo:
    """Parse the header form; the request time comes from X-Amz-Date, else from Date."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise Ec2Error("IncompleteSignature", f"Unsupported authorization type: '{algorithm}'")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            fields[key.strip()] = val.strip()
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise Ec2Error("IncompleteSignature", " ".join(
            f"Authorization header requires '{k}' parameter." for k in missing)
            + f" Authorization={value}")
    return AuthInfo(credential=parse_credential(fields["Credential"], "Authorization header"),
                    amz_date=_request_date(headers), signed_headers=_signed(fields["SignedHeaders"]),
                    signature=fields["Signature"], presigned=False)


def _request_date(headers: Mapping[str, str]) -> str:
    amz = header_values(headers, "x-amz-date")
    if amz:
        _parse_amz_date(amz[0])
        return amz[0].strip()
    date = header_values(headers, "date")
    if not date:
        raise Ec2Error("IncompleteSignature",
                       "Authorization header requires existence of either a 'X-Amz-Date' or a "
                       "'Date' header.")
    try:
        parsed = parsedate_to_datetime(date[0])
    except (TypeError, ValueError):
        raise Ec2Error("IncompleteSignature", f"Invalid 'Date' header: '{date[0]}'") from None
    return parsed.astimezone(UTC).strftime(AMZ_DATE_FORMAT)


def _parse_amz_date(value: str) -> datetime:
    try:
        return datetime.strptime(value.strip(), AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise Ec2Error("IncompleteSignature",
                       f"Invalid X-Amz-Date '{value}': expected the form 20150830T123600Z") from None


def _signed(value: str) -> tuple[str, ...]:
    names = tuple(n.strip().lower() for n in value.split(";") if n.strip())
    if not names:
        raise Ec2Error("IncompleteSignature", "SignedHeaders must name at least the 'host' header.")
    return names


def parse_presigned(query: Sequence[tuple[str, str]]) -> AuthInfo:
    """Parse the presigned form from the query parameters."""
    params: dict[str, str] = {}
    for key, val in query:
        params.setdefault(key, val)
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise Ec2Error("IncompleteSignature",
                       f"Unsupported X-Amz-Algorithm: '{params.get('X-Amz-Algorithm', '')}'")
    missing = [k for k in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature")
               if not params.get(k)]
    if missing:
        raise Ec2Error("IncompleteSignature",
                       "AWS query-string parameters must include " + ", ".join(f"'{k}'" for k in missing)
                       + ". Re-examine the query-string parameters.")
    _parse_amz_date(params["X-Amz-Date"])
    return AuthInfo(credential=parse_credential(params["X-Amz-Credential"], "X-Amz-Credential"),
                    amz_date=params["X-Amz-Date"], signed_headers=_signed(params["X-Amz-SignedHeaders"]),
                    signature=params["X-Amz-Signature"], presigned=True,
                    expires=_expires(params.get("X-Amz-Expires")))


def _expires(value: str | None) -> int:
    if value is None:
        raise Ec2Error("IncompleteSignature", "AWS query-string parameters must include 'X-Amz-Expires'.")
    if not value.isdigit() or not 1 <= int(value) <= MAX_PRESIGN_EXPIRES:
        raise Ec2Error("AuthFailure",
                       f"X-Amz-Expires must be a number of seconds between 1 and {MAX_PRESIGN_EXPIRES}, "
                       f"not '{value}'")
    return int(value)


# --- the checks ----------------------------------------------------------------------------------

def check_scope(credential: Credential, amz_date: str, *, region: str, service: str) -> None:
    """The scope must be for our region and service and for the day the request was made."""
    if credential.region != region:
        raise Ec2Error("AuthFailure",
                       f"Credential should be scoped to a valid region, not '{credential.region}'. ")
    if credential.service != service:
        raise Ec2Error("AuthFailure",
                       f"Credential should be scoped to correct service: '{service}'. ")
    if credential.date != amz_date[:8]:
        raise Ec2Error("SignatureDoesNotMatch",
                       "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                       f"date from HTTP: '{credential.date}' != '{amz_date[:8]}', from '{amz_date}'.")


def check_time(info: AuthInfo, now: datetime, max_skew: timedelta) -> None:
    """Header form: the request time within ±max_skew; presigned: not yet expired, not from the future.
    Outside those bounds EC2 answers RequestExpired (its code for a stale, expired or future
    date stamp alike)."""
    signed_at = _parse_amz_date(info.amz_date)
    fmt = AMZ_DATE_FORMAT
    if signed_at - now > max_skew:
        raise Ec2Error("RequestExpired",
                       f"Signature not yet current: {info.amz_date} is still later than "
                       f"{(now + max_skew).strftime(fmt)} ({now.strftime(fmt)} + {_minutes(max_skew)}).")
    if info.presigned:
        assert info.expires is not None
        if now > signed_at + timedelta(seconds=info.expires):
            raise Ec2Error("RequestExpired",
                           f"Request has expired: signed at {info.amz_date}, valid for {info.expires} "
                           f"seconds, now {now.strftime(fmt)}.")
    elif now - signed_at > max_skew:
        raise Ec2Error("RequestExpired",
                       f"Request has expired. Signature expired: {info.amz_date} is now earlier than "
                       f"{(now - max_skew).strftime(fmt)} ({now.strftime(fmt)} - {_minutes(max_skew)}).")


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} min"


def payload_hashes(headers: Mapping[str, str], body: bytes, *, presigned: bool) -> list[str]:
    """The payload hashes the signature may have used; a declared hash must match the body."""
    actual = sha256_hex(body)
    declared = header_values(headers, "x-amz-content-sha256")
    if declared:
        value = declared[0].strip()
        if value == UNSIGNED_PAYLOAD and presigned:
            return [value]
        if value.lower() != actual:
            raise Ec2Error("SignatureDoesNotMatch",
                           "The provided 'x-amz-content-sha256' header does not match what was computed.")
        return [value]
    # A presigned URL is made without knowing the body: botocore hashes the (empty) body, S3-style
    # signers write UNSIGNED-PAYLOAD. Both are accepted.
    return [actual, UNSIGNED_PAYLOAD] if presigned else [actual]


def verify(method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str],
           body: bytes, *, secret_for: Callable[[str], str | None], region: str, service: str = "ec2",
           now: datetime | None = None, max_skew: timedelta = timedelta(minutes=5)) -> str:
    """Verify a SigV4-signed request and return its access key id.

    `query` holds the decoded query pairs in order; `headers` is looked up case-insensitively
    (a multidict with `getlist`, like Starlette's, keeps repeated headers). `secret_for` maps an
    access key id to its secret, or None when the key is unknown. Raises `Ec2Error`:
    MissingAuthenticationToken (no signature at all), IncompleteSignature (malformed),
    AuthFailure (unknown key, wrong region or service), RequestExpired (outside the time window,
    expired URL),
    SignatureDoesNotMatch (wrong signature or payload hash).
    """
    info = _parse(query, headers)
    check_scope(info.credential, info.amz_date, region=region, service=service)
    check_time(info, now or datetime.now(UTC), max_skew)
    if "host" not in info.signed_headers:
        raise Ec2Error("IncompleteSignature", "'Host' must be a 'SignedHeader' in the AWS Authorization.")
    secret = secret_for(info.credential.access_key)
    if secret is None:
        raise Ec2Error("AuthFailure", _UNKNOWN_KEY)
    signed_query = [(k, v) for k, v in query if not (info.presigned and k == "X-Amz-Signature")]
    ok = False
    for payload in payload_hashes(headers, body, presigned=info.presigned):
        creq = canonical_request(method, path, signed_query, headers, info.signed_headers, payload)
        expected = compute_signature(secret, info.credential, info.amz_date, creq)
        # Constant time, and every candidate computed, so timing says nothing about the secret.
        ok = hmac.compare_digest(expected, info.signature.lower()) or ok
    if not ok:
        raise Ec2Error("SignatureDoesNotMatch", _SIGNATURE_MISMATCH)
    return info.credential.access_key


def _parse(query: Sequence[tuple[str, str]], headers: Mapping[str, str]) -> AuthInfo:
    authorization = header_values(headers, "authorization")
    if authorization:
        return parse_authorization(authorization[0], headers)
    if any(k == "X-Amz-Algorithm" for k, _ in query):
        return parse_presigned(query)
    raise Ec2Error("MissingAuthenticationToken", "Request is missing Authentication Token")
