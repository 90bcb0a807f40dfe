"""SigV4 verification: AWS's published test-suite vectors, then requests signed by botocore itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.datastructures import Headers

from lxcloud.api.ec2 import sigv4
from lxcloud.api.ec2.errors import Ec2Error
from tests.unit.api.ec2 import aws4_vectors as av

VECTOR_NOW = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
VECTORS = av.VECTORS


def _headers(vector: dict) -> Headers:
    """A multidict like the server's, so repeated headers stay repeated."""
    raw = [(k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in vector["headers"]]
    return Headers(raw=raw)


def _vector_headers_with_auth(vector: dict) -> Headers:
    raw = list(_headers(vector).raw) + [(b"authorization", vector["authz"].encode())]
    return Headers(raw=raw)


def _signed_names(vector: dict) -> list[str]:
    return vector["authz"].split("SignedHeaders=")[1].split(",")[0].split(";")


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_canonical_request_matches_vector(vector: dict) -> None:
    creq = sigv4.canonical_request(vector["method"], vector["path"], vector["query"], _headers(vector),
                                   _signed_names(vector), sigv4.sha256_hex(vector["body"].encode()))
    assert creq == vector["creq"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_string_to_sign_and_signature_match_vector(vector: dict) -> None:
    cred = sigv4.Credential(av.ACCESS_KEY, av.AMZ_DATE[:8], av.REGION, av.SERVICE)
    assert sigv4.string_to_sign(av.AMZ_DATE, cred.scope, vector["creq"]) == vector["sts"]
    assert sigv4.compute_signature(av.SECRET_KEY, cred, av.AMZ_DATE, vector["creq"]) == vector["signature"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_verifies_end_to_end(vector: dict) -> None:
    akid = sigv4.verify(vector["method"], vector["path"], vector["query"], _vector_headers_with_auth(vector),
                        vector["body"].encode(), secret_for={av.ACCESS_KEY: av.SECRET_KEY}.get,
                        region=av.REGION, service=av.SERVICE, now=VECTOR_NOW)
    assert akid == av.ACCESS_KEY


def test_vector_with_other_secret_fails() -> None:
    vector = next(v for v in VECTORS if v["name"] == "get-vanilla")
    with pytest.raises(Ec2Error) as e:
        sigv4.verify("GET", "/", [], _vector_headers_with_auth(vector), b"",
                     secret_for=lambda _: av.SECRET_KEY + "x", region=av.REGION, service=av.SERVICE,
                     now=VECTOR_NOW)
    assert e.value.code == "SignatureDoesNotMatch" and e.value.status == 403


def test_sign_helper_reproduces_vector() -> None:
    vector = next(v for v in VECTORS if v["name"] == "post-x-www-form-urlencoded")
    authz = sigv4.sign("POST", "/", [], dict(vector["headers"]), vector["body"].encode(),
                       access_key=av.ACCESS_KEY, secret=av.SECRET_KEY, region=av.REGION,
                       service=av.SERVICE, amz_date=av.AMZ_DATE)
    assert authz == vector["authz"]


# --- requests signed by botocore -------------------------------------------------------------------

AKID = "AKIALXCLOUDTEST00001"
SECRET = "s3cr3t/Secret+Key0123456789abcdefghijklm"
REGION = "lxcloud-1"
ENDPOINT = "http://127.0.0.1:8080/ec2/"
BODY = {"Action": "DescribeInstances", "Version": "2016-11-15", "InstanceId.1": "i-0123456789abcdef0",
        "Filter.1.Name": "tag:Name", "Filter.1.Value.1": "web server/ü"}


def _secrets(key: str) -> str | None:
    return SECRET if key == AKID else None


class Signed:
    """A request as the server sees it: method, decoded path and query, headers, body bytes."""

    def __init__(self, req: AWSRequest) -> None:
        prepared = req.prepare()
        parts = urlsplit(prepared.url)
        self.method = prepared.method
        self.path = parts.path
        self.query = parse_qsl(parts.query, keep_blank_values=True)
        self.headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in prepared.headers.items()}
        self.headers.setdefault("Host", parts.netloc)  # the HTTP client adds it on the wire
        body = prepared.body or b""
        self.body = body.encode() if isinstance(body, str) else body

    def verify(self, **kw: object) -> str:
        args: dict = {"secret_for": _secrets, "region": REGION}
        args.update(kw)
        return sigv4.verify(self.method, self.path, self.query, self.headers, self.body, **args)


def _header_signed(secret: str = SECRET, region: str = REGION, service: str = "ec2",
                   data: dict | None = None, key: str = AKID) -> Signed:
    req = AWSRequest(method="POST", url=ENDPOINT, data=data if data is not None else dict(BODY),
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(key, secret), service, region).add_auth(req)
    return Signed(req)


def _query_signed(expires: int = 300, region: str = REGION) -> Signed:
    req = AWSRequest(method="GET", url=ENDPOINT, params=dict(BODY))
    SigV4QueryAuth(Credentials(AKID, SECRET), "ec2", region, expires=expires).add_auth(req)
    return Signed(req)


def _code(signed: Signed, **kw: object) -> str:
    with pytest.raises(Ec2Error) as e:
        signed.verify(**kw)
    return e.value.code


def test_botocore_header_signed_request_verifies() -> None:
    assert _header_signed().verify() == AKID


def test_botocore_presigned_request_verifies() -> None:
    signed = _query_signed()
    assert any(k == "X-Amz-Signature" for k, _ in signed.query)
    assert signed.verify() == AKID


def test_content_sha256_header_must_match_body() -> None:
    signed = _header_signed()
    signed.headers["X-Amz-Content-SHA256"] = sigv4.sha256_hex(signed.body)
    # The header is not signed here, but it is declared: a correct one still verifies …
    assert signed.verify() == AKID
    signed.headers["X-Amz-Content-SHA256"] = sigv4.sha256_hex(b"something else")
    assert _code(signed) == "SignatureDoesNotMatch"


def test_unsigned_payload_refused_in_header_form() -> None:
    signed = _header_signed()
    signed.headers["X-Amz-Content-SHA256"] = sigv4.UNSIGNED_PAYLOAD
    assert _code(signed) == "SignatureDoesNotMatch"


def test_wrong_secret() -> None:
    assert _code(_header_signed(secret=SECRET + "x")) == "SignatureDoesNotMatch"


def test_tampered_body() -> None:
    signed = _header_signed()
    signed.body = signed.body.replace(b"i-0123456789abcdef0", b"i-0123456789abcdef1")
    assert _code(signed) == "SignatureDoesNotMatch"


def test_tampered_query_param() -> None:
    signed = _query_signed()
    signed.query = [(k, "i-0000000000000000f" if k == "InstanceId.1" else v) for k, v in signed.query]
    assert _code(signed) == "SignatureDoesNotMatch"


def test_tampered_signed_header() -> None:
    signed = _header_signed()
    signed.headers["Content-Type"] = "text/plain"
    assert _code(signed) == "SignatureDoesNotMatch"


def test_wrong_region() -> None:
    with pytest.raises(Ec2Error) as e:
        _header_signed(region="us-east-1").verify()
    assert e.value.code == "AuthFailure" and e.value.status == 401
    assert "Credential should be scoped to a valid region, not 'us-east-1'" in e.value.message


def test_wrong_service() -> None:
    with pytest.raises(Ec2Error) as e:
        _header_signed(service="s3").verify()
    assert e.value.code == "AuthFailure" and "service" in e.value.message


def test_presigned_wrong_region() -> None:
    assert _code(_query_signed(region="eu-west-1")) == "AuthFailure"


def test_expired_header_request() -> None:
    signed = _header_signed()
    with pytest.raises(Ec2Error) as e:
        signed.verify(now=datetime.now(UTC) + timedelta(minutes=10))
    assert e.value.code == "RequestExpired" and e.value.status == 400
    assert e.value.message.startswith("Request has expired")


def test_future_header_request() -> None:
    signed = _header_signed()
    with pytest.raises(Ec2Error) as e:
        signed.verify(now=datetime.now(UTC) - timedelta(minutes=10))
    assert e.value.code == "RequestExpired" and "not yet current" in e.value.message


def test_within_skew_is_fine() -> None:
    assert _header_signed().verify(now=datetime.now(UTC) + timedelta(minutes=4)) == AKID


def test_presigned_expiry() -> None:
    signed = _query_signed(expires=60)
    assert signed.verify(now=datetime.now(UTC) + timedelta(seconds=30)) == AKID
    with pytest.raises(Ec2Error) as e:
        signed.verify(now=datetime.now(UTC) + timedelta(minutes=10))
    assert e.value.code == "RequestExpired" and e.value.message.startswith("Request has expired")


def test_missing_auth() -> None:
    signed = _header_signed()
    del signed.headers["Authorization"]
    with pytest.raises(Ec2Error) as e:
        signed.verify()
    assert e.value.code == "MissingAuthenticationToken" and e.value.status == 401


def test_unknown_key() -> None:
    with pytest.raises(Ec2Error) as e:
        _header_signed(key="AKIAUNKNOWN000000000").verify()
    assert e.value.code == "AuthFailure"
    assert e.value.message == "AWS was not able to validate the provided access credentials"


@pytest.mark.parametrize("authz", [
    "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/ec2, SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA256 Credential=AKID/2015083/lxcloud-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
    "AWS4-HMAC-SHA256 Credential=AKID/20150830/lxcloud-1/ec2/aws4_request, Signature=00",
    "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA1 Credential=AKID/20150830/lxcloud-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
])
def test_malformed_authorization(authz: str) -> None:
    signed = _header_signed()
    signed.headers["Authorization"] = authz
    assert _code(signed) == "IncompleteSignature"


def test_host_must_be_signed() -> None:
    amz_date = datetime.now(UTC).strftime(sigv4.AMZ_DATE_FORMAT)
    headers = {"X-Amz-Date": amz_date, "Host": "127.0.0.1:8080"}
    authz = sigv4.sign("POST", "/ec2/", [], {"X-Amz-Date": amz_date}, b"", access_key=AKID, secret=SECRET,
                       region=REGION, amz_date=amz_date)
    with pytest.raises(Ec2Error) as e:
        sigv4.verify("POST", "/ec2/", [], {**headers, "Authorization": authz}, b"",
                     secret_for=_secrets, region=REGION)
    assert e.value.code == "IncompleteSignature"


def test_date_header_instead_of_x_amz_date() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    amz_date = now.strftime(sigv4.AMZ_DATE_FORMAT)
    headers = {"Host": "127.0.0.1:8080", "Date": now.strftime("%a, %d %b %Y %H:%M:%S GMT")}
    authz = sigv4.sign("POST", "/ec2/", [], headers, b"Action=DescribeRegions", access_key=AKID,
                       secret=SECRET, region=REGION, amz_date=amz_date)
    assert sigv4.verify("POST", "/ec2/", [], {**headers, "Authorization": authz}, b"Action=DescribeRegions",
                        secret_for=_secrets, region=REGION) == AKID


def test_scope_date_must_match_request_date() -> None:
    signed = _header_signed()
    signed.headers["Authorization"] = signed.headers["Authorization"].replace(
        f"/{signed.headers['X-Amz-Date'][:8]}/", "/20000101/")
    assert _code(signed) == "SignatureDoesNotMatch"


def test_canonical_uri_encoding_and_normalisation() -> None:
    assert sigv4.canonical_uri("") == "/"
    assert sigv4.canonical_uri("/ec2/") == "/ec2/"
    assert sigv4.canonical_uri("/a b/ü/$x") == "/a%20b/%C3%BC/%24x"
    assert sigv4.canonical_uri("//a/./b/../c//") == "/a/c/"


def test_canonical_query_sorts_after_encoding() -> None:
    assert sigv4.canonical_query([("b", "2"), ("a", "z y"), ("a", "x"), ("A", "1")]) == \
        "A=1&a=x&a=z%20y&b=2"


def test_real_boto3_client_request_verifies() -> None:
    """The whole boto3 pipeline (its own headers, body and signer), captured before it hits the wire."""
    import boto3
    from botocore.awsrequest import AWSResponse

    from lxcloud.api.ec2 import xml

    seen: list[str] = []

    def answer(request: object, **_: object) -> AWSResponse:
        prepared = request  # an AWSPreparedRequest
        parts = urlsplit(prepared.url)  # type: ignore[attr-defined]
        headers = {k: v.decode() if isinstance(v, bytes) else v
                   for k, v in prepared.headers.items()}  # type: ignore[attr-defined]
        headers.setdefault("Host", parts.netloc)
        body = prepared.body or b""  # type: ignore[attr-defined]
        body = body.encode() if isinstance(body, str) else body
        seen.append(sigv4.verify(prepared.method, parts.path,  # type: ignore[attr-defined]
                                 parse_qsl(parts.query, keep_blank_values=True), headers, body,
                                 secret_for=_secrets, region=REGION))
        payload = xml.render("DescribeRegions", {"regionInfo": [
            {"regionName": REGION, "regionEndpoint": ENDPOINT, "optInStatus": "opt-in-not-required"}]}, "rid")
        raw = type("Raw", (), {"stream": lambda self, **k: iter([payload])})()
        return AWSResponse(prepared.url, 200, {}, raw)  # type: ignore[attr-defined]

    client = boto3.session.Session().client(
        "ec2", region_name=REGION, endpoint_url=ENDPOINT,
        aws_access_key_id=AKID, aws_secret_access_key=SECRET)
    client.meta.events.register("before-send.ec2.DescribeRegions", answer)
    out = client.describe_regions(RegionNames=["lxcloud-1", "ü and spaces"])
    assert seen == [AKID]
    assert out["Regions"][0]["RegionName"] == REGION
    assert out["ResponseMetadata"]["RequestId"] == "rid"
