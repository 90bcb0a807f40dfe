"""The EC2 Query API through boto3 (botocore parses every answer, as a real client would), over
the services and a fake node: actions, filters, pagination, DryRun, idempotency, every error code."""

from __future__ import annotations

import base64
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lxcloud.services.cloud import Cloud


def code_of(fn: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as ei:
        fn(**kw)
    return str(ei.value.response["Error"]["Code"])


def run(ec2: Any, image: dict[str, Any], **kw: Any) -> dict[str, Any]:
    kw.setdefault("MinCount", 1)
    kw.setdefault("MaxCount", 1)
    return ec2.run_instances(ImageId=image["id"], **kw)  # type: ignore[no-any-return]


def test_run_describe_tag_filter_and_names(ec2: Any, image: dict[str, Any], api: Any) -> None:
    r = run(ec2, image, InstanceType="t3.nano", UserData="#!/bin/sh\necho hi\n",
            TagSpecifications=[{"ResourceType": "instance",
                                "Tags": [{"Key": "Name", "Value": "web"}, {"Key": "env", "Value": "prod"}]}])
    inst = r["Instances"][0]
    iid = inst["InstanceId"]
    assert iid.startswith("i-") and len(iid) == 19 and r["ReservationId"].startswith("r-")
    # named after its Name tag; REST and the CLI take either the name or the EC2 id
    assert api.get("/api/v1/instances/web").json()["id"] == iid
    assert api.get(f"/api/v1/instances/{iid}").json()["name"] == "web"
    noname = run(ec2, image)["Instances"][0]["InstanceId"]
    assert api.get(f"/api/v1/instances/{noname}").json()["name"] == noname
    d = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert d["State"] == {"Code": 16, "Name": "running"}
    assert d["PrivateIpAddress"] and d["PrivateDnsName"].startswith("ip-")
    assert d["InstanceType"] == "t3.nano" and d["Placement"]["AvailabilityZone"] == "lxcloud-1a"
    assert {"Key": "env", "Value": "prod"} in d["Tags"]
    assert d["LaunchTime"].year >= 2026
    got = ec2.describe_instances(Filters=[{"Name": "tag:env", "Values": ["pr*"]}])
    assert [i["InstanceId"] for res in got["Reservations"] for i in res["Instances"]] == [iid]
    got = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["stopped"]}])
    assert got["Reservations"] == []
    ec2.create_tags(Resources=[noname], Tags=[{"Key": "team", "Value": "blue"}])
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [noname]}])["Tags"]
    assert tags == [{"Key": "team", "ResourceId": noname, "ResourceType": "instance", "Value": "blue"}]
    ec2.delete_tags(Resources=[noname], Tags=[{"Key": "team"}])
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [noname]}])["Tags"] == []
    attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert base64.b64decode(attr["UserData"]["Value"]) == b"#!/bin/sh\necho hi\n"
    out = ec2.get_console_output(InstanceId=iid)
    assert out["Output"] == "fake: booted web\n"     # botocore decodes the base64 itself
    st = ec2.describe_instance_status(InstanceIds=[iid])["InstanceStatuses"][0]
    assert st["InstanceStatus"]["Status"] == "ok"


def test_lifecycle_and_instance_states(ec2: Any, image: dict[str, Any], cloud: Cloud) -> None:
    iid = run(ec2, image)["Instances"][0]["InstanceId"]
    ops = ec2.stop_instances(InstanceIds=[iid])["StoppingInstances"][0]
    assert ops["PreviousState"]["Name"] == "running"
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig={"Delay": 0.2})
    # modify on a stopped instance
    ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t3.small"})
    assert ec2.describe_instance_attribute(InstanceId=iid, Attribute="instanceType")[
        "InstanceType"]["Value"] == "t3.small"
    ec2.start_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 0.2})
    assert code_of(ec2.modify_instance_attribute, InstanceId=iid,
                   InstanceType={"Value": "t3.nano"}) == "IncorrectInstanceState"
    ec2.reboot_instances(InstanceIds=[iid])
    t = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert t["CurrentState"]["Name"] in ("shutting-down", "terminated")
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig={"Delay": 0.2})
    # terminated instances stay visible for a while
    d = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert d["State"] == {"Code": 48, "Name": "terminated"}
    assert code_of(ec2.start_instances, InstanceIds=[iid]) == "IncorrectInstanceState"


def test_error_codes(ec2: Any, image: dict[str, Any], ec2_server: str, cloud: Cloud) -> None:
    missing = "i-0123456789abcdef0"
    assert code_of(ec2.describe_instances, InstanceIds=[missing]) == "InvalidInstanceID.NotFound"
    assert code_of(ec2.describe_instances, InstanceIds=["i-xyz"]) == "InvalidInstanceID.Malformed"
    assert code_of(ec2.stop_instances, InstanceIds=[missing]) == "InvalidInstanceID.NotFound"
    assert code_of(ec2.run_instances, ImageId="ami-0123456789abcdef0", MinCount=1,
                   MaxCount=1) == "InvalidAMIID.NotFound"
    assert code_of(ec2.describe_images, ImageIds=["ami-0123456789abcdef0"]) == "InvalidAMIID.NotFound"
    assert code_of(run, ec2=ec2, image=image, InstanceType="x9.huge") == "InvalidParameterValue"
    assert code_of(run, ec2=ec2, image=image, KernelId="aki-12345678") == \
        "InvalidParameterCombination"
    assert code_of(run, ec2=ec2, image=image, RamdiskId="ari-12345678") == \
        "InvalidParameterCombination"
    assert code_of(run, ec2=ec2, image=image, KeyName="nope") == "InvalidKeyPair.NotFound"
    assert code_of(run, ec2=ec2, image=image, MinCount=5000, MaxCount=5000) == \
        "InstanceLimitExceeded"
    assert code_of(run, ec2=ec2, image=image, Placement={"AvailabilityZone": "mars-1a"}) == \
        "InvalidParameterValue"
    assert code_of(run, ec2=ec2, image=image, DryRun=True) == "DryRunOperation"
    assert ec2.describe_instances()["Reservations"] == []   # nothing made by any of the above
    ec2.create_key_pair(KeyName="k1")
    assert code_of(ec2.create_key_pair, KeyName="k1") == "InvalidKeyPair.Duplicate"
    assert code_of(ec2.describe_key_pairs, KeyNames=["nope"]) == "InvalidKeyPair.NotFound"
    assert code_of(ec2.create_volume, AvailabilityZone="lxcloud-1a", Size=1) == "UnsupportedOperation"
    assert code_of(ec2.describe_security_groups) == "UnsupportedOperation"
    # MissingParameter and InvalidAction come from hand-made requests (boto3 validates its input)
    import httpx
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = Credentials(cloud.admin_key.access_key_id, cloud.admin_key.secret_access_key)

    def raw(body: str, region: str = "lxcloud-1", key: Credentials = creds) -> httpx.Response:
        req = AWSRequest("POST", f"{ec2_server}/ec2/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        SigV4Auth(key, "ec2", region).add_auth(req)
        return httpx.post(f"{ec2_server}/ec2/", content=body, headers=dict(req.headers))

    def code(resp: httpx.Response) -> str:
        return resp.text.split("<Code>")[1].split("</Code>")[0]

    assert code(raw("Action=RunInstances&Version=2016-11-15&MinCount=1&MaxCount=1")) == \
        "MissingParameter"
    assert code(raw("Action=FlyToTheMoon&Version=2016-11-15")) == "InvalidAction"
    assert code(raw("Action=DescribeInstances&Version=2016-11-15", region="us-east-1")) == \
        "AuthFailure"
    bad = Credentials(cloud.admin_key.access_key_id, "wrong-secret")
    assert code(raw("Action=DescribeInstances&Version=2016-11-15", key=bad)) == \
        "SignatureDoesNotMatch"
    unknown = Credentials("LXCKNOSUCHKEY0000000", "x")
    assert code(raw("Action=DescribeInstances&Version=2016-11-15", key=unknown)) == "AuthFailure"
    assert code(httpx.post(f"{ec2_server}/ec2/", data={"Action": "DescribeInstances"})) == \
        "MissingAuthenticationToken"


def test_pagination_and_client_token(ec2: Any, image: dict[str, Any]) -> None:
    ids = [i["InstanceId"] for i in run(ec2, image, MinCount=7, MaxCount=7)["Instances"]]
    assert len(ids) == 7
    seen, token = [], None
    while True:
        kw = {"MaxResults": 5}
        if token:
            kw["NextToken"] = token
        page = ec2.describe_instances(**kw)
        seen += [i["InstanceId"] for r in page["Reservations"] for i in r["Instances"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(ids)
    assert code_of(ec2.describe_instances, MaxResults=5, NextToken="garbage") == \
        "InvalidParameterValue"
    first = run(ec2, image, ClientToken="same-token")["Instances"][0]["InstanceId"]
    again = run(ec2, image, ClientToken="same-token")["Instances"][0]["InstanceId"]
    assert first == again


def test_key_pairs_images_regions_types(ec2: Any, image: dict[str, Any], tmp_path: Any) -> None:
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    k = ec2.create_key_pair(KeyName="mine")
    assert "PRIVATE KEY" in k["KeyMaterial"] and k["KeyPairId"].startswith("key-")
    pub = (tmp_path / "k.pub").read_text()
    imp = ec2.import_key_pair(KeyName="imported", PublicKeyMaterial=pub.encode())
    assert imp["KeyFingerprint"].count(":") == 15
    names = sorted(x["KeyName"] for x in ec2.describe_key_pairs()["KeyPairs"])
    assert names == ["imported", "mine"]
    ec2.delete_key_pair(KeyName="imported")
    ec2.delete_key_pair(KeyName="imported")       # EC2: deleting a missing key is not an error
    assert [x["KeyName"] for x in ec2.describe_key_pairs()["KeyPairs"]] == ["mine"]
    assert code_of(ec2.import_key_pair, KeyName="junk", PublicKeyMaterial=b"not a key") == \
        "InvalidKey.Format"
    imgs = ec2.describe_images(Owners=["self"])["Images"]
    assert imgs[0]["ImageId"] == image["id"] and imgs[0]["Hypervisor"] == "lxc"
    assert imgs[0]["VirtualizationType"] == "container"
    assert ec2.describe_images(Filters=[{"Name": "name", "Values": ["nope*"]}])["Images"] == []
    assert ec2.describe_regions()["Regions"][0]["RegionName"] == "lxcloud-1"
    assert ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"] == "lxcloud-1a"
    types = {t["InstanceType"]: t for t in ec2.describe_instance_types()["InstanceTypes"]}
    assert types["t3.micro"]["MemoryInfo"]["SizeInMiB"] == 256
    attrs = ec2.describe_account_attributes()["AccountAttributes"]
    assert any(a["AttributeName"] == "max-instances" for a in attrs)
    ec2.deregister_image(ImageId=image["id"])
    assert code_of(ec2.describe_images, ImageIds=[image["id"]]) == "InvalidAMIID.NotFound"


def test_projects_are_isolated(ec2: Any, ec2_server: str, image: dict[str, Any], api: Any,
                               cloud: Cloud) -> None:
    iid = run(ec2, image)["Instances"][0]["InstanceId"]
    ec2.create_key_pair(KeyName="admins")
    api.post("/api/v1/projects", json={"name": "other"})
    api.post("/api/v1/users", json={"name": "mallory", "project": "other"})
    cred = api.get("/api/v1/users/mallory/credentials").json()
    theirs = boto3.client("ec2", endpoint_url=f"{ec2_server}/ec2/", region_name="lxcloud-1",
                          aws_access_key_id=cred["access_key_id"],
                          aws_secret_access_key=cred["secret_access_key"])
    assert theirs.describe_instances()["Reservations"] == []
    assert code_of(theirs.describe_instances, InstanceIds=[iid]) == "InvalidInstanceID.NotFound"
    assert code_of(theirs.terminate_instances, InstanceIds=[iid]) == "InvalidInstanceID.NotFound"
    assert code_of(theirs.create_tags, Resources=[iid], Tags=[{"Key": "a", "Value": "b"}]) == \
        "InvalidInstanceID.NotFound"
    assert theirs.describe_key_pairs()["KeyPairs"] == []
    theirs.create_key_pair(KeyName="admins")   # names are per project
    assert ec2.describe_instances(InstanceIds=[iid])["Reservations"]


def test_query_string_get_and_header_signed_get(ec2_server: str, cloud: Cloud) -> None:
    """The Query protocol over GET: presigned (X-Amz-* in the URL) and header-signed alike."""
    import httpx
    from botocore.auth import SigV4Auth, SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = Credentials(cloud.admin_key.access_key_id, cloud.admin_key.secret_access_key)
    url = f"{ec2_server}/ec2/?Action=DescribeRegions&Version=2016-11-15"
    req = AWSRequest("GET", url)
    SigV4QueryAuth(creds, "ec2", "lxcloud-1", expires=60).add_auth(req)
    r = httpx.get(req.url)
    assert r.status_code == 200 and "<regionName>lxcloud-1</regionName>" in r.text
    tampered = req.url.replace("DescribeRegions", "DescribeImages")
    assert "SignatureDoesNotMatch" in httpx.get(tampered).text
    req = AWSRequest("GET", url)
    SigV4Auth(creds, "ec2", "lxcloud-1").add_auth(req)
    r = httpx.get(url, headers=dict(req.headers))
    assert r.status_code == 200 and "DescribeRegionsResponse" in r.text
