"""The EC2 instance metadata service: each instance sees its own data, found by its source address.

The controller serves this app on <network gateway>:<metadata port>; the network's nftables rules
DNAT instances' http://169.254.169.254/ onto it, keeping the source address, so the address a request
comes from names the instance it is for. Nothing here keeps state: IMDSv2 tokens are an HMAC over the
client address and the expiry, so a restart of the controller with the same secret keeps them valid.

Paths follow EC2's (and what cloud-init's Ec2 datasource crawls): `/{version}/meta-data/...` where
version is `latest` or any `YYYY-MM-DD`; a directory answers its listing, one entry per line, sub
directories with a trailing `/`; `public-keys/` lists `0=keyname`, as EC2 does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import Response

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TTL = 21600
VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# What `GET /` lists on EC2 (abridged); any YYYY-MM-DD is served as well.
VERSIONS = ("1.0", "2007-01-19", "2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23", "latest")
TEXT = "text/plain"


@dataclass(frozen=True)
class MetadataView:
    """What the metadata service tells one instance about itself."""

    instance_id: str
    hostname: str
    local_ipv4: str
    mac: str
    instance_type: str
    ami_id: str
    availability_zone: str
    region: str
    reservation_id: str
    public_keys: dict[str, str] = field(default_factory=dict)   # key name -> OpenSSH public key
    user_data: bytes | None = None
    security_groups: list[str] = field(default_factory=list)
    launch_index: int = 0
    account_id: str = ""
    # optional extras: EC2 has them, nothing requires them
    subnet_cidr: str | None = None        # "10.213.4.0/24" -> subnet-ipv4-cidr-block
    architecture: str = "x86_64"
    pending_time: datetime | None = None  # launch time, for the identity document
    public_ipv4: str | None = None        # its NIC's public address, once it has one
    # the asking NIC as EC2 names it (network/interfaces/macs/<mac>/): its ENI, subnet and VPC ids
    interface_id: str = ""
    subnet_id: str = ""
    vpc_id: str = ""
    device_number: int = 0                # N of ethN


Lookup = Callable[[str], MetadataView | None]


# --- IMDSv2 tokens --------------------------------------------------------------------------------

def _sig(secret: bytes, client_ip: str, expiry: int) -> bytes:
    return hmac.new(secret, f"{client_ip}|{expiry}".encode(), hashlib.sha256).digest()


def issue_token(secret: bytes, client_ip: str, ttl: int, now: float | None = None) -> str:
    """A token valid for `ttl` seconds, for `client_ip` only: base64url(expiry ‖ HMAC(ip|expiry))."""
    expiry = int(now if now is not None else time.time()) + ttl
    raw = struct.pack(">Q", expiry) + _sig(secret, client_ip, expiry)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def verify_token(secret: bytes, client_ip: str, token: str, now: float | None = None) -> bool:
    """True when `token` was issued with `secret` for `client_ip` and has not expired."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return False
    if len(raw) != 8 + hashlib.sha256().digest_size:
        return False
    (expiry,) = struct.unpack(">Q", raw[:8])
    if not hmac.compare_digest(raw[8:], _sig(secret, client_ip, expiry)):
        return False
    return (now if now is not None else time.time()) < expiry


# --- the tree -------------------------------------------------------------------------------------

@dataclass
class _Dir:
    entries: dict[str, _Node]
    labels: dict[str, str] = field(default_factory=dict)   # entry -> its line in the listing

    def listing(self) -> bytes:
        lines = []
        for name in sorted(self.entries):
            if name in self.labels:
                lines.append(self.labels[name])
            else:
                lines.append(name + "/" if isinstance(self.entries[name], _Dir) else name)
        return "\n".join(lines).encode()


_Node = _Dir | bytes


def _b(s: object) -> bytes:
    return str(s).encode()


def identity_document(v: MetadataView) -> dict[str, object]:
    """The instance identity document, with EC2's keys."""
    pending = (v.pending_time or datetime.fromtimestamp(0, UTC)).astimezone(UTC)
    return {
        "accountId": v.account_id, "architecture": v.architecture,
        "availabilityZone": v.availability_zone, "billingProducts": None,
        "devpayProductCodes": None, "marketplaceProductCodes": None, "imageId": v.ami_id,
        "instanceId": v.instance_id, "instanceType": v.instance_type, "kernelId": None,
        "pendingTime": pending.strftime("%Y-%m-%dT%H:%M:%SZ"), "privateIp": v.local_ipv4,
        "ramdiskId": None, "region": v.region, "version": "2017-09-30",
    }


def meta_data_tree(v: MetadataView) -> _Dir:
    """meta-data/ of one instance, shaped as EC2's."""
    mac = v.mac.lower()
    groups = "\n".join(v.security_groups).encode()
    iface: dict[str, _Node] = {
        "device-number": _b(v.device_number), "local-hostname": _b(v.hostname),
        "local-ipv4s": _b(v.local_ipv4), "mac": _b(mac), "owner-id": _b(v.account_id),
    }
    for key, value in (("interface-id", v.interface_id), ("subnet-id", v.subnet_id),
                       ("vpc-id", v.vpc_id)):
        if value:
            iface[key] = _b(value)
    if v.subnet_cidr:
        iface["subnet-ipv4-cidr-block"] = _b(v.subnet_cidr)
    if v.public_ipv4:
        iface["public-ipv4s"] = _b(v.public_ipv4)
    md: dict[str, _Node] = {
        "ami-id": _b(v.ami_id), "ami-launch-index": _b(v.launch_index),
        "ami-manifest-path": b"(unknown)", "hostname": _b(v.hostname), "instance-action": b"none",
        "instance-id": _b(v.instance_id), "instance-life-cycle": b"on-demand",
        "instance-type": _b(v.instance_type), "local-hostname": _b(v.hostname),
        "local-ipv4": _b(v.local_ipv4), "mac": _b(mac),
        "network": _Dir({"interfaces": _Dir({"macs": _Dir({mac: _Dir(iface)})})}),
        "placement": _Dir({"availability-zone": _b(v.availability_zone), "region": _b(v.region)}),
        "reservation-id": _b(v.reservation_id),
    }
    if v.public_ipv4:   # EC2 lists public-ipv4 only once the instance has one
        md["public-ipv4"] = _b(v.public_ipv4)
    if v.security_groups:   # once the instance is in groups
        md["security-groups"] = iface["security-groups"] = groups
    if v.public_keys:   # EC2 lists public-keys/ only when the instance has a key
        keys: dict[str, _Node] = {}
        labels = {}
        for i, (name, key) in enumerate(v.public_keys.items()):
            keys[str(i)] = _Dir({"openssh-key": key.strip().encode()})
            labels[str(i)] = f"{i}={name}"
        md["public-keys"] = _Dir(keys, labels)
    return _Dir(md)


def version_tree(v: MetadataView) -> _Dir:
    """Everything under /{version}/."""
    doc = json.dumps(identity_document(v), indent=2).encode()
    root: dict[str, _Node] = {
        "meta-data": meta_data_tree(v),
        "dynamic": _Dir({"instance-identity": _Dir({"document": doc})}),
    }
    if v.user_data:
        root["user-data"] = v.user_data
    return _Dir(root)


def _resolve(node: _Node, parts: list[str]) -> _Node | None:
    for p in parts:
        if not isinstance(node, _Dir) or p not in node.entries:
            return None
        node = node.entries[p]
    return node


# --- the app --------------------------------------------------------------------------------------

def _text(body: bytes | str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=body, status_code=status, media_type=TEXT, headers=headers)


def create_metadata_app(lookup: Lookup, token_secret: bytes,
                        clock: Callable[[], float] = time.time) -> FastAPI:
    """The IMDS app. `lookup(client_ip)` finds the caller's instance (None: 404 for every path).

    GET without a token is allowed (IMDSv1, EC2's default "optional"); a GET carrying
    X-aws-ec2-metadata-token needs a valid, unexpired token issued to the same address (else 401).
    `PUT /latest/api/token` with X-aws-ec2-metadata-token-ttl-seconds in 1..21600 issues one (400
    otherwise; 403 when the request carries X-Forwarded-For, as EC2 refuses proxied token requests).
    """
    app = FastAPI(title="lxcloud instance metadata", docs_url=None, redoc_url=None, openapi_url=None)

    @app.api_route("/{path:path}", methods=["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"])
    async def serve(path: str, request: Request) -> Response:
        ip = request.client.host if request.client else ""
        view = lookup(ip)
        if view is None:
            return _text("Not Found", 404)
        if request.method == "PUT":
            return _put(path, request, ip)
        if request.method not in ("GET", "HEAD"):
            return _text("Method Not Allowed", 405, {"Allow": "GET, HEAD, PUT"})
        token = request.headers.get(TOKEN_HEADER)
        if token is not None and not verify_token(token_secret, ip, token, clock()):
            return _text("Unauthorized", 401)
        return _get(path, view)

    def _put(path: str, request: Request, ip: str) -> Response:
        if path.strip("/") != "latest/api/token":
            return _text("Method Not Allowed", 405, {"Allow": "GET, HEAD"})
        if "x-forwarded-for" in request.headers:
            return _text("Forbidden", 403)
        raw = request.headers.get(TTL_HEADER)
        try:
            ttl = int(raw) if raw is not None else 0
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= MAX_TTL:
            return _text("Bad Request", 400)
        return _text(issue_token(token_secret, ip, ttl, clock()), 200, {TTL_HEADER: str(ttl)})

    def _get(path: str, view: MetadataView) -> Response:
        parts = [p for p in path.split("/") if p]
        if not parts:
            return _text("\n".join(VERSIONS))
        version, rest = parts[0], parts[1:]
        if version != "latest" and not VERSION_RE.match(version):
            return _text("Not Found", 404)
        node = _resolve(version_tree(view), rest)
        if node is None:
            return _text("Not Found", 404)
        if isinstance(node, _Dir):
            return _text(node.listing())
        return _text(node)

    return app
