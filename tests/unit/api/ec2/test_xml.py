"""EC2 XML rendering, read back by botocore's own parser against the real ec2 service model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import botocore.session
import pytest
from botocore.parsers import create_parser

from lxcloud.api.ec2 import xml
from lxcloud.api.ec2.errors import Ec2Error, dry_run_ok, to_ec2
from lxcloud.core import errors as core

_MODEL = botocore.session.get_session().get_service_model("ec2")
LAUNCH = datetime(2026, 11, 23, 2, 14, 0, 123456, tzinfo=UTC)


def parse(action: str, body: bytes) -> dict[str, Any]:
    op = _MODEL.operation_model(action)
    parsed = create_parser("ec2").parse({"body": body, "headers": {}, "status_code": 200}, op.output_shape)
    return parsed


def parse_error(body: bytes, status: int = 400) -> dict[str, Any]:
    return create_parser("ec2").parse({"body": body, "headers": {}, "status_code": status}, None)


def _instance(iid: str, *, state: tuple[int, str] = (16, "running"), tags: list | None = None) -> dict:
    return {
        "instanceId": iid, "imageId": "ami-0123456789abcdef0",
        "instanceState": {"code": state[0], "name": state[1]},
        "privateDnsName": "ip-10-250-0-5.lxcloud-1.compute.internal", "dnsName": "",
        "keyName": "mykey", "amiLaunchIndex": 0, "instanceType": "t3.micro", "launchTime": LAUNCH,
        "placement": {"availabilityZone": "lxcloud-1a", "tenancy": "default"},
        "privateIpAddress": "10.250.0.5", "ipAddress": None, "architecture": "x86_64",
        "rootDeviceType": "ebs", "hypervisor": "xen", "virtualizationType": "hvm",
        "ebsOptimized": False, "tagSet": tags or [],
    }


def test_describe_instances_parsed_by_botocore() -> None:
    body = {"reservationSet": [{
        "reservationId": "r-0123456789abcdef0", "ownerId": "000000000001", "groupSet": [],
        "instancesSet": [
            _instance("i-0123456789abcdef0", tags=[{"key": "Name", "value": "web <1> & \"2\""},
                                                  {"key": "env", "value": "prod"}]),
            _instance("i-0123456789abcdef1", state=(80, "stopped")),
        ]}], "nextToken": None}
    out = parse("DescribeInstances", xml.render("DescribeInstances", body, "req-1"))
    assert out["ResponseMetadata"]["RequestId"] == "req-1"
    assert "NextToken" not in out
    inst = out["Reservations"][0]["Instances"]
    assert out["Reservations"][0]["ReservationId"] == "r-0123456789abcdef0"
    assert out["Reservations"][0]["Groups"] == []
    assert inst[0]["State"] == {"Code": 16, "Name": "running"}
    assert inst[1]["State"] == {"Code": 80, "Name": "stopped"}
    assert inst[0]["LaunchTime"] == LAUNCH.replace(microsecond=123000)
    assert isinstance(inst[0]["LaunchTime"], datetime)
    assert inst[0]["Tags"] == [{"Key": "Name", "Value": 'web <1> & "2"'}, {"Key": "env", "Value": "prod"}]
    assert inst[0]["Placement"]["AvailabilityZone"] == "lxcloud-1a"
    assert inst[0]["PrivateIpAddress"] == "10.250.0.5"
    assert inst[0]["AmiLaunchIndex"] == 0 and inst[0]["EbsOptimized"] is False
    assert "PublicIpAddress" not in inst[0]
    assert inst[1].get("Tags", []) == []


def test_run_instances_parsed_by_botocore() -> None:
    body = {"reservationId": "r-0000000000000000a", "ownerId": "000000000001", "groupSet": [],
            "instancesSet": [_instance("i-0000000000000000a", state=(0, "pending"))]}
    out = parse("RunInstances", xml.render("RunInstances", body, "req-2"))
    assert out["ReservationId"] == "r-0000000000000000a"
    assert out["Instances"][0]["State"]["Code"] == 0
    assert out["Instances"][0]["InstanceType"] == "t3.micro"


def test_describe_key_pairs_and_create_key_pair() -> None:
    body = {"keySet": [{"keyPairId": "key-0123456789abcdef0", "keyName": "mykey",
                        "keyFingerprint": "1f:51:ae", "keyType": "rsa",
                        "createTime": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
                        "tagSet": []}]}
    out = parse("DescribeKeyPairs", xml.render("DescribeKeyPairs", body, "req-3"))
    kp = out["KeyPairs"][0]
    assert kp["KeyName"] == "mykey" and kp["KeyPairId"] == "key-0123456789abcdef0"
    assert kp["CreateTime"] == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"
    out = parse("CreateKeyPair", xml.render("CreateKeyPair", {
        "keyName": "k2", "keyFingerprint": "aa:bb", "keyMaterial": pem, "keyPairId": "key-1"}, "r"))
    assert out["KeyMaterial"] == pem


def test_terminate_instances_state_changes() -> None:
    body = {"instancesSet": [{"instanceId": "i-1", "currentState": {"code": 32, "name": "shutting-down"},
                              "previousState": {"code": 16, "name": "running"}}]}
    out = parse("TerminateInstances", xml.render("TerminateInstances", body, "r"))
    change = out["TerminatingInstances"][0]
    assert change["CurrentState"]["Code"] == 32 and change["PreviousState"]["Name"] == "running"


def test_scalar_lists_and_booleans() -> None:
    out = parse("DeleteKeyPair", xml.render("DeleteKeyPair", {"return": True, "keyPairId": "key-1"}, "r"))
    assert out["Return"] is True
    body = {"accountAttributeSet": [{"attributeName": "supported-platforms",
                                     "attributeValueSet": [{"attributeValue": "VPC"}]}]}
    out = parse("DescribeAccountAttributes", xml.render("DescribeAccountAttributes", body, "r"))
    assert out["AccountAttributes"][0]["AttributeValues"] == [{"AttributeValue": "VPC"}]


def test_error_envelope_parsed_by_botocore() -> None:
    raw = xml.render_error("InvalidInstanceID.NotFound",
                           "The instance ID 'i-1' does not exist <&>", "req-err")
    out = parse_error(raw)
    assert out["Error"]["Code"] == "InvalidInstanceID.NotFound"
    assert out["Error"]["Message"] == "The instance ID 'i-1' does not exist <&>"
    assert out["ResponseMetadata"]["RequestId"] == "req-err"


def test_envelope_shape_and_escaping() -> None:
    raw = xml.render("DescribeTags", {"tagSet": [{"key": "a&b", "value": "x\x01y"}]}, "id<1>")
    assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<DescribeTagsResponse xmlns="'
                          b'http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>id&lt;1&gt;</requestId>')
    assert b"<key>a&amp;b</key>" in raw and "x\ufffdy".encode() in raw
    assert raw.endswith(b"</DescribeTagsResponse>")
    assert xml.render("X", {"emptySet": [], "gone": None}, "r").endswith(b"<emptySet/></XResponse>")


def test_timestamp_format() -> None:
    assert xml.timestamp(datetime(2026, 11, 23, 2, 14)) == "2026-11-23T02:14:00.000Z"
    assert xml.timestamp(datetime(2026, 11, 23, 4, 14, 0, 999999, tzinfo=timezone(timedelta(hours=2)))) \
        == "2026-11-23T02:14:00.999Z"


def test_bad_element_name_is_a_bug() -> None:
    with pytest.raises(ValueError):
        xml.render("Describe", {"bad name": 1}, "r")


# --- the one error mapping ---------------------------------------------------------------------

@pytest.mark.parametrize("err, code, status", [
    (core.NotFound("no such instance", resource="instance"), "InvalidInstanceID.NotFound", 400),
    (core.NotFound("no such image", resource="image"), "InvalidAMIID.NotFound", 400),
    (core.NotFound("no such key", resource="key_pair"), "InvalidKeyPair.NotFound", 400),
    (core.NotFound("no such type", resource="instance_type"), "InvalidParameterValue", 400),
    (core.Conflict("exists", resource="key_pair"), "InvalidKeyPair.Duplicate", 400),
    (core.InvalidState("instance is stopped", state="stopped"), "IncorrectInstanceState", 400),
    (core.Busy("busy"), "IncorrectInstanceState", 400),
    (core.InvalidInput("bad"), "InvalidParameterValue", 400),
    (core.InvalidInput("need X", reason=core.Reason.MISSING_PARAMETER), "MissingParameter", 400),
    (core.InvalidInput("X with Y", reason=core.Reason.INVALID_COMBINATION),
     "InvalidParameterCombination", 400),
    (core.InvalidInput("bad id", resource="instance", reason=core.Reason.MALFORMED_ID),
     "InvalidInstanceID.Malformed", 400),
    (core.InvalidInput("bad id", resource="image", reason=core.Reason.MALFORMED_ID),
     "InvalidAMIID.Malformed", 400),
    (core.InvalidInput("bad key", reason=core.Reason.KEY_FORMAT), "InvalidKey.Format", 400),
    (core.InvalidState("protected", reason=core.Reason.TERMINATION_PROTECTED),
     "OperationNotPermitted", 400),
    (core.QuotaExceeded("too many"), "InstanceLimitExceeded", 400),
    (core.Exhausted("no ids left"), "InstanceLimitExceeded", 400),
    (core.Exhausted("no addresses left", resource="address"), "AddressLimitExceeded", 400),
    (core.QuotaExceeded("project limit", resource="address"), "AddressLimitExceeded", 400),
    (core.Conflict("associated elsewhere", resource="address"), "Resource.AlreadyAssociated", 400),
    (core.InUse("still associated", resource="address"), "InvalidIPAddress.InUse", 400),
    (core.NotFound("no such ip", resource="public_address"), "InvalidAddress.NotFound", 400),
    (core.NotFound("no such association", resource="association"),
     "InvalidAssociationID.NotFound", 400),
    (core.Unsupported("no volumes yet"), "UnsupportedOperation", 400),
    (core.InvalidCombination("kernel with container"), "InvalidParameterCombination", 400),
    (core.Unauthorized("who are you"), "AuthFailure", 401),
    (core.Forbidden("admins only"), "UnauthorizedOperation", 403),
    (core.InvalidInput("two zones", reason=core.Reason.ZONE_MISMATCH, resource="volume"),
     "InvalidVolume.ZoneMismatch", 400),
    (core.InUse("attached", resource="volume"), "VolumeInUse", 400),
    (core.InvalidState("not attached", resource="volume"), "IncorrectState", 400),
    (core.Busy("busy", target="vol-0123456789abcdef0"), "IncorrectState", 400),
    (core.Busy("busy", target="i-0123456789abcdef0"), "IncorrectInstanceState", 400),
    (core.NotFound("no such volume", resource="volume"), "InvalidVolume.NotFound", 400),
    (core.NotFound("no such snapshot", resource="snapshot"), "InvalidSnapshot.NotFound", 400),
    (core.InvalidInput("bad id", resource="volume", reason=core.Reason.MALFORMED_ID),
     "InvalidVolumeID.Malformed", 400),
    (core.InvalidInput("bad id", resource="snapshot", reason=core.Reason.MALFORMED_ID),
     "InvalidSnapshotID.Malformed", 400),
    (core.Conflict("name taken", resource="image_name"), "InvalidAMIName.Duplicate", 400),
])
def test_to_ec2_mapping(err: core.LxcloudError, code: str, status: int) -> None:
    mapped = to_ec2(err, action="RunInstances")
    assert (mapped.code, mapped.status) == (code, status)
    assert mapped.message == err.message


@pytest.mark.parametrize("err", [
    core.DriverError("lxc-start failed", command=["lxc-start", "-n", "secret-host-path"], stderr="boom"),
    core.LxcloudError("something internal at /var/lib/lxcloud/db.sqlite"),
])
def test_internal_errors_do_not_leak(err: core.LxcloudError) -> None:
    mapped = to_ec2(err, action="StartInstances")
    assert mapped.code == "InternalError" and mapped.status == 500
    assert "lxc" not in mapped.message and "/var" not in mapped.message
    parsed = parse_error(xml.render_error(mapped.code, mapped.message, "r"), mapped.status)
    assert parsed["Error"]["Code"] == "InternalError"


def test_dry_run_error() -> None:
    err = dry_run_ok()
    assert (err.code, err.status) == ("DryRunOperation", 412)
    parsed = parse_error(xml.render_error(err.code, err.message, "r"), 412)
    assert parsed["Error"]["Code"] == "DryRunOperation"


def test_ec2_error_statuses() -> None:
    assert Ec2Error("SignatureDoesNotMatch", "x").status == 403
    assert Ec2Error("MissingAuthenticationToken", "x").status == 401
    assert Ec2Error("InvalidAction", "x").status == 400
    assert Ec2Error("Whatever", "x", status=418).status == 418
