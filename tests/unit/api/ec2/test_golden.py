"""Golden EC2 responses for the main actions: our renderer's bytes must stay exactly as kept under
golden/ (LXCLOUD_REGEN_GOLDEN=1 rewrites them), and botocore's own parser must read each one into
what a boto3 user gets."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import botocore.session
import pytest
from botocore.parsers import create_parser

from lxcloud.api.ec2.attributes import instance_attribute, launch_permissions
from lxcloud.api.ec2.common import account_id
from lxcloud.api.ec2.instances import render_instance
from lxcloud.api.ec2.resources import render_image, render_key
from lxcloud.api.ec2.xml import render, render_error
from lxcloud.core.instance import Nic
from lxcloud.core.instance_types import Limits
from lxcloud.core.lifecycle import State
from lxcloud.core.models import Image, Instance
from lxcloud.services.keypairs import KeyPair

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 11, 23, 2, 14, 0, 123000, tzinfo=UTC)
RID = "7a62c49f-347e-4fc4-9331-6e8eEXAMPLE"
IID = "i-0abcdef1234567890"
AMI = "ami-0123456789abcdef0"


def _ctx() -> Any:
    images = SimpleNamespace(list=lambda: [SimpleNamespace(id=AMI, architecture="amd64")])
    settings = SimpleNamespace(region="lxcloud-1", zones=["lxcloud-1a"])
    addresses = SimpleNamespace(list=lambda caller: [])
    return SimpleNamespace(cloud=SimpleNamespace(images=images, settings=settings,
                                                 addresses=addresses), caller=None)


def _instance(state: str = "running") -> Instance:
    return Instance(id=IID, name="web", state=State(state), image_id=AMI, instance_type="t3.micro",
                    limits=Limits(vcpus=1, memory=256 << 20, swap=0, pids=512, disk=0),
                    node="local", created=T0, updated=T0, launched_at=T0,
                    nics=[Nic(network="net-1", mac="02:00:00:00:00:01", ipv4="10.99.0.5")],
                    key_name="mykey", reservation_id="r-0123456789abcdef0", zone="lxcloud-1a",
                    client_token="tok-1", launch_index=0)


def _bodies() -> dict[str, tuple[str, dict[str, Any]]]:
    inst = render_instance(_ctx(), _instance(), {"Name": "web", "env": "prod"})
    img = Image(id=AMI, name="debian-bookworm-amd64", os="debian", release="bookworm",
                architecture="amd64", format="tar.zst", size=56865087, sha256="0" * 64, created=T0)
    key = KeyPair(id="key-0123456789abcdef0", name="mykey", key_type="rsa",
                  fingerprint="1f:51:ae:28:bf:89:e9:d8:1f:25:5d:37:2d:7d:b8:ca:9f:f5:f1:6f",
                  public_key="ssh-rsa AAAA mykey", created=T0)
    owner = "123456789012"
    return {
        "DescribeInstances": ("DescribeInstances", {"reservationSet": [
            {"reservationId": "r-0123456789abcdef0", "ownerId": owner, "groupSet": [],
             "instancesSet": [inst]}]}),
        "RunInstances": ("RunInstances", {
            "reservationId": "r-0123456789abcdef0", "ownerId": owner, "groupSet": [],
            "instancesSet": [render_instance(_ctx(), _instance("pending"), {})]}),
        "StartInstances": ("StartInstances", {"instancesSet": [
            {"instanceId": IID, "currentState": {"code": 0, "name": "pending"},
             "previousState": {"code": 80, "name": "stopped"}}]}),
        "TerminateInstances": ("TerminateInstances", {"instancesSet": [
            {"instanceId": IID, "currentState": {"code": 32, "name": "shutting-down"},
             "previousState": {"code": 16, "name": "running"}}]}),
        "DescribeImages": ("DescribeImages", {"imagesSet": [render_image(img, {"team": "os"})]}),
        "DescribeKeyPairs": ("DescribeKeyPairs", {"keySet": [render_key(key, {})]}),
        "CreateKeyPair": ("CreateKeyPair", {
            "keyName": "mykey", "keyFingerprint": key.fingerprint, "keyPairId": key.id,
            "keyMaterial": "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----"}),
        "DescribeTags": ("DescribeTags", {"tagSet": [
            {"resourceId": IID, "resourceType": "instance", "key": "env", "value": "prod"}]}),
        "GetConsoleOutput": ("GetConsoleOutput", {
            "instanceId": IID, "timestamp": T0, "output": "aGVsbG8tNDIK"}),
        "GetPasswordData": ("GetPasswordData", {
            "instanceId": IID, "timestamp": T0, "passwordData": ""}),
        "DescribeInstanceAttribute": ("DescribeInstanceAttribute", {
            "instanceId": IID,
            "disableApiTermination": instance_attribute(_instance(), "disableApiTermination")}),
        "DescribeImageAttribute": ("DescribeImageAttribute", {
            "imageId": AMI, "launchPermission": launch_permissions(
                dataclasses.replace(img, launch_projects=["proj-0123456789abcdef0"]))}),
        "DescribeRegions": ("DescribeRegions", {"regionInfo": [
            {"regionName": "lxcloud-1", "regionEndpoint": "http://127.0.0.1:8080/ec2/",
             "optInStatus": "opt-in-not-required"}]}),
    }


def _golden(name: str, data: bytes) -> bytes:
    path = GOLDEN / f"{name}.xml"
    if os.environ.get("LXCLOUD_REGEN_GOLDEN") == "1" or not path.exists():
        path.write_bytes(data)
    return path.read_bytes()


def _parse(action: str, body: bytes, status: int = 200) -> dict[str, Any]:
    model = botocore.session.get_session().get_service_model("ec2")
    op = model.operation_model(action)
    parsed: dict[str, Any] = create_parser("ec2").parse(
        {"body": body, "headers": {}, "status_code": status}, op.output_shape)
    return parsed


@pytest.mark.parametrize("name", sorted(_bodies()))
def test_golden_response(name: str) -> None:
    action, body = _bodies()[name]
    data = render(action, body, RID)
    assert data == _golden(name, data), f"{name} changed: rerun with LXCLOUD_REGEN_GOLDEN=1 if meant"
    parsed = _parse(action, data)
    assert parsed["ResponseMetadata"]["RequestId"] == RID


def test_golden_parses_into_what_boto3_users_read() -> None:
    b = _bodies()
    d = _parse("DescribeInstances", render("DescribeInstances", b["DescribeInstances"][1], RID))
    i = d["Reservations"][0]["Instances"][0]
    assert i["InstanceId"] == IID and i["State"] == {"Code": 16, "Name": "running"}
    assert i["LaunchTime"] == T0 and i["KeyName"] == "mykey"
    assert i["Tags"] == [{"Key": "Name", "Value": "web"}, {"Key": "env", "Value": "prod"}]
    assert i["PrivateIpAddress"] == "10.99.0.5" and i["Architecture"] == "x86_64"
    r = _parse("RunInstances", render("RunInstances", b["RunInstances"][1], RID))
    assert r["Instances"][0]["State"]["Code"] == 0
    img = _parse("DescribeImages", render("DescribeImages", b["DescribeImages"][1], RID))["Images"][0]
    assert img["Hypervisor"] == "lxc" and img["VirtualizationType"] == "container"
    k = _parse("CreateKeyPair", render("CreateKeyPair", b["CreateKeyPair"][1], RID))
    assert k["KeyMaterial"].startswith("-----BEGIN RSA")
    out = _parse("GetConsoleOutput", render("GetConsoleOutput", b["GetConsoleOutput"][1], RID))
    assert out["Output"] == "aGVsbG8tNDIK"   # the parser leaves it base64; boto3 decodes later
    pw = _parse("GetPasswordData", render("GetPasswordData", b["GetPasswordData"][1], RID))
    assert pw["InstanceId"] == IID and pw["PasswordData"] == "" and pw["Timestamp"] == T0
    attr = _parse("DescribeInstanceAttribute",
                  render("DescribeInstanceAttribute", b["DescribeInstanceAttribute"][1], RID))
    assert attr["DisableApiTermination"] == {"Value": False}
    perms = _parse("DescribeImageAttribute",
                   render("DescribeImageAttribute", b["DescribeImageAttribute"][1], RID))
    assert perms["LaunchPermissions"] == [{"Group": "all"}, {"UserId": account_id(
        "proj-0123456789abcdef0")}]
    assert i["RootDeviceName"] == "/dev/sda1" and img["RootDeviceName"] == "/dev/sda1"


def test_golden_error_envelope() -> None:
    data = render_error("InvalidInstanceID.NotFound",
                        f"The instance ID '{IID}' does not exist", RID)
    assert data == _golden("Error", data)
    model = botocore.session.get_session().get_service_model("ec2")
    parsed = create_parser("ec2").parse({"body": data, "headers": {}, "status_code": 400},
                                        model.operation_model("DescribeInstances").output_shape)
    assert parsed["Error"]["Code"] == "InvalidInstanceID.NotFound"
    assert IID in parsed["Error"]["Message"]
