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


def idle(cloud: Cloud, *ids: str) -> None:
    """Until no operation holds these instances (a launch, start or stop runs on after EC2 has
    answered, and holds its instance until it ends)."""
    from tests.waiting import wait_for

    wait_for(lambda: not any(cloud.ops.busy(i) for i in ids), 10, f"operations on {ids} to end")


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
    idle(cloud, iid)
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
    assert code_of(ec2.copy_snapshot, SourceRegion="lxcloud-1",
                   SourceSnapshotId="snap-0123456789abcdef0") == "UnsupportedOperation"
    assert code_of(ec2.describe_volume_status) == "UnsupportedOperation"
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



# --- ids, key material, passwords ---------------------------------------------------------------

def _other_project(api: Any, ec2_server: str, name: str = "other") -> tuple[Any, str]:
    """A boto3 client of a member of a second project, and that project's EC2 account id."""
    from lxcloud.api.ec2.common import account_id
    from tests.unit.conftest import ec2_client

    project = api.post("/api/v1/projects", json={"name": name}).json()
    api.post("/api/v1/users", json={"name": f"{name}-user", "project": name})
    cred = api.get(f"/api/v1/users/{name}-user/credentials").json()
    return ec2_client(ec2_server, cred["access_key_id"], cred["secret_access_key"]), \
        account_id(project["id"])


def test_malformed_ids_are_malformed_not_missing(ec2: Any, image: dict[str, Any]) -> None:
    """An ill-formed id is refused for its shape before anything is looked up or made, with the
    code EC2 gives in that action; a well-formed unknown one is NotFound."""
    iid = run(ec2, image)["Instances"][0]["InstanceId"]
    bad_i, bad_ami, gone_i, gone_ami = "i-xyz", "ami-zzz", "i-0123456789abcdef0", \
        "ami-0123456789abcdef0"
    for call, kw in [(ec2.describe_instances, {"InstanceIds": [bad_i]}),
                     (ec2.describe_instance_status, {"InstanceIds": [bad_i]}),
                     (ec2.start_instances, {"InstanceIds": [bad_i]}),
                     (ec2.stop_instances, {"InstanceIds": [iid, bad_i]}),
                     (ec2.reboot_instances, {"InstanceIds": [bad_i]}),
                     (ec2.terminate_instances, {"InstanceIds": [iid, "web"]}),
                     (ec2.get_console_output, {"InstanceId": bad_i}),
                     (ec2.get_password_data, {"InstanceId": "i-0123456789abcdefg"})]:
        assert code_of(call, **kw) == "InvalidInstanceID.Malformed", (call, kw)
        name = "InstanceIds" if "InstanceIds" in kw else "InstanceId"
        assert code_of(call, **{name: [gone_i] if name == "InstanceIds" else gone_i}) == \
            "InvalidInstanceID.NotFound", call
    with pytest.raises(ClientError) as ei:
        ec2.run_instances(ImageId=bad_ami, MinCount=1, MaxCount=1)
    assert ei.value.response["Error"] == {
        "Code": "InvalidAMIID.Malformed", "Message": 'Invalid id: "ami-zzz" (expecting "ami-...")'}
    assert code_of(run, ec2=ec2, image={"id": "bb"}) == "InvalidAMIID.Malformed"  # a name: no
    for call, kw in [(ec2.describe_images, {"ImageIds": [bad_ami]}),
                     (ec2.deregister_image, {"ImageId": bad_ami}),
                     (ec2.describe_image_attribute, {"ImageId": bad_ami,
                                                     "Attribute": "description"}),
                     (ec2.modify_image_attribute, {"ImageId": bad_ami,
                                                   "Description": {"Value": "x"}})]:
        assert code_of(call, **kw) == "InvalidAMIID.Malformed", call
        kw = {k: ([gone_ami] if k == "ImageIds" else gone_ami) if k.startswith("Image") else v
              for k, v in kw.items()}
        assert code_of(call, **kw) == "InvalidAMIID.NotFound", call
    # the attribute actions answer as EC2's do: InvalidParameterValue naming the parameter
    for call, kw in [(ec2.describe_instance_attribute, {"Attribute": "instanceType"}),
                     (ec2.modify_instance_attribute, {"DisableApiTermination": {"Value": True}})]:
        with pytest.raises(ClientError) as ei:
            call(InstanceId=bad_i, **kw)
        assert ei.value.response["Error"] == {
            "Code": "InvalidParameterValue",
            "Message": "Value (i-xyz) for parameter instanceId is invalid. Expected: 'i-...'."}
        assert code_of(call, InstanceId=gone_i, **kw) == "InvalidInstanceID.NotFound"
    # tags take ids of any kind: an ill-formed one is InvalidID, as EC2's CreateTags answers
    for rid in (bad_i, bad_ami, "key-1", "nonsense"):
        assert code_of(ec2.create_tags, Resources=[iid, rid], Tags=[{"Key": "a", "Value": "b"}]) \
            == "InvalidID", rid
        assert code_of(ec2.delete_tags, Resources=[rid], Tags=[{"Key": "a"}]) == "InvalidID"
    assert code_of(ec2.create_tags, Resources=[gone_i], Tags=[{"Key": "a", "Value": "b"}]) == \
        "InvalidInstanceID.NotFound"
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [iid]}])["Tags"] == []
    got = ec2.describe_instances()["Reservations"]
    assert [i["InstanceId"] for r in got for i in r["Instances"]] == [iid]   # nothing else made
    assert got[0]["Instances"][0]["State"]["Name"] == "running"              # nor stopped


def test_import_key_pair_refuses_empty_or_bad_material(ec2: Any, ec2_server: str,
                                                       cloud: Cloud) -> None:
    for material in (b"", b" ", b"ssh-rsa", b"ssh-rsa AAAA", b"ssh-rsa !!notbase64!!",
                     b"ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==", b"\xff\xfe\x00binary",
                     b"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"):
        with pytest.raises(ClientError) as ei:
            ec2.import_key_pair(KeyName="k", PublicKeyMaterial=material)
        assert ei.value.response["Error"]["Code"] == "InvalidKey.Format", material
    assert ec2.describe_key_pairs()["KeyPairs"] == []      # nothing half-stored
    # absent (not empty) material is a missing parameter; boto3 refuses to send that itself
    import httpx
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = "Action=ImportKeyPair&Version=2016-11-15&KeyName=k"
    req = AWSRequest("POST", f"{ec2_server}/ec2/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(Credentials(cloud.admin_key.access_key_id, cloud.admin_key.secret_access_key),
              "ec2", "lxcloud-1").add_auth(req)
    resp = httpx.post(f"{ec2_server}/ec2/", content=body, headers=dict(req.headers))
    assert _parse_error(resp.content, "ImportKeyPair")["Code"] == "MissingParameter"


def _parse_error(body: bytes, action: str) -> dict[str, Any]:
    """botocore's own reading of an EC2 error body."""
    import botocore.session
    from botocore.parsers import create_parser

    model = botocore.session.get_session().get_service_model("ec2").operation_model(action)
    parsed = create_parser("ec2").parse({"body": body, "headers": {}, "status_code": 400},
                                        model.output_shape)
    return parsed["Error"]  # type: ignore[no-any-return]


def test_get_password_data(ec2: Any, image: dict[str, Any], cloud: Cloud) -> None:
    iid = run(ec2, image)["Instances"][0]["InstanceId"]
    idle(cloud, iid)          # launched: its launch time is the one it keeps
    launched = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
        "LaunchTime"]
    pw = ec2.get_password_data(InstanceId=iid)
    # a Linux instance has no generated password: empty, with its timestamp, as on EC2
    assert pw["InstanceId"] == iid and pw["PasswordData"] == "" and pw["Timestamp"] == launched
    assert code_of(ec2.get_password_data, InstanceId=iid, DryRun=True) == "DryRunOperation"


# --- instance attributes -----------------------------------------------------------------------

def _attr(ec2: Any, iid: str, name: str) -> Any:
    out = ec2.describe_instance_attribute(InstanceId=iid, Attribute=name)
    out.pop("ResponseMetadata")
    assert out.pop("InstanceId") == iid
    return out


def test_termination_protection(ec2: Any, image: dict[str, Any], api: Any, cloud: Cloud) -> None:
    a, b = (i["InstanceId"] for i in run(ec2, image, MinCount=2, MaxCount=2)["Instances"])
    idle(cloud, a, b)
    assert _attr(ec2, a, "disableApiTermination") == {"DisableApiTermination": {"Value": False}}
    ec2.modify_instance_attribute(InstanceId=a, DisableApiTermination={"Value": True})
    assert _attr(ec2, a, "disableApiTermination") == {"DisableApiTermination": {"Value": True}}
    # EC2 refuses the whole request, naming the protected instance; the other one is kept too
    with pytest.raises(ClientError) as ei:
        ec2.terminate_instances(InstanceIds=[b, a])
    assert ei.value.response["Error"] == {
        "Code": "OperationNotPermitted",
        "Message": f"The instance '{a}' may not be terminated. Modify its 'disableApiTermination' "
                   "instance attribute and try again."}
    # the rule lives in the service: REST refuses the delete too, forced or not
    for force in ("false", "true"):
        r = api.delete(f"/api/v1/instances/{a}", params={"force": force})
        assert r.status_code == 409 and r.json()["details"]["reason"] == "termination_protected"
        assert "may not be terminated" in r.json()["error"]
    states = {i["InstanceId"]: i["State"]["Name"] for res in ec2.describe_instances()[
        "Reservations"] for i in res["Instances"]}
    assert states == {a: "running", b: "running"}
    # stopping is still allowed; the Attribute/Value form turns protection off
    ec2.stop_instances(InstanceIds=[a])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[a], WaiterConfig={"Delay": 0.2})
    ec2.modify_instance_attribute(InstanceId=a, Attribute="disableApiTermination", Value="false")
    ec2.terminate_instances(InstanceIds=[a, b])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[a, b], WaiterConfig={"Delay": 0.2})
    assert code_of(ec2.modify_instance_attribute, InstanceId=a,
                   DisableApiTermination={"Value": True}) == "IncorrectInstanceState"
    # RunInstances sets it from the start
    c = run(ec2, image, DisableApiTermination=True)["Instances"][0]["InstanceId"]
    assert _attr(ec2, c, "disableApiTermination") == {"DisableApiTermination": {"Value": True}}
    assert code_of(ec2.terminate_instances, InstanceIds=[c]) == "OperationNotPermitted"
    assert code_of(ec2.terminate_instances, InstanceIds=[c], DryRun=True) == "DryRunOperation"


def test_shutdown_behaviour_applies_when_the_instance_halts_itself(
        ec2: Any, image: dict[str, Any], cloud: Cloud, node: Any) -> None:
    from lxcloud.drivers.compute.base import HostState

    stays, goes, protected = (i["InstanceId"] for i in run(ec2, image, MinCount=3,
                                                         MaxCount=3)["Instances"])
    key = "instanceInitiatedShutdownBehavior"
    assert _attr(ec2, stays, key) == {"InstanceInitiatedShutdownBehavior": {"Value": "stop"}}
    ec2.modify_instance_attribute(InstanceId=goes,
                                  InstanceInitiatedShutdownBehavior={"Value": "terminate"})
    ec2.modify_instance_attribute(InstanceId=protected, Attribute=key, Value="terminate")
    ec2.modify_instance_attribute(InstanceId=protected, DisableApiTermination={"Value": True})
    assert _attr(ec2, goes, key) == {"InstanceInitiatedShutdownBehavior": {"Value": "terminate"}}
    idle(cloud, stays, goes, protected)
    assert code_of(ec2.modify_instance_attribute, InstanceId=goes,
                   InstanceInitiatedShutdownBehavior={"Value": "explode"}) == \
        "InvalidParameterValue"
    assert code_of(run, ec2=ec2, image=image, InstanceInitiatedShutdownBehavior="explode") == \
        "InvalidParameterValue"
    # a halt seen at start-up may be the host's own reboot: never taken for the instance's wish
    node.set_state(goes, HostState.STOPPED)
    cloud.reconciler.run_once(startup=True)
    assert ec2.describe_instances(InstanceIds=[goes])["Reservations"][0]["Instances"][0][
        "State"]["Name"] == "stopped"
    ec2.start_instances(InstanceIds=[goes])
    ec2.get_waiter("instance_running").wait(InstanceIds=[goes], WaiterConfig={"Delay": 0.2})
    idle(cloud, goes)
    # each one's init halts it; the reconciler sees that and applies the behaviour
    for iid in (stays, goes, protected):
        node.set_state(iid, HostState.STOPPED)
    cloud.reconcile()
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[goes, protected],
                                               WaiterConfig={"Delay": 0.2})
    got = {i["InstanceId"]: i for r in ec2.describe_instances(
        InstanceIds=[stays, goes, protected])["Reservations"] for i in r["Instances"]}
    assert got[stays]["State"]["Name"] == "stopped"
    for iid in (stays, goes, protected):   # termination protection does not stop that, as on EC2
        assert got[iid]["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    on_host = node.list_instances()
    assert stays in on_host and goes not in on_host and protected not in on_host
    # a stop asked for through the API is no halt from inside
    ec2.start_instances(InstanceIds=[stays])
    ec2.get_waiter("instance_running").wait(InstanceIds=[stays], WaiterConfig={"Delay": 0.2})
    idle(cloud, stays)
    ec2.modify_instance_attribute(InstanceId=stays, Attribute=key, Value="terminate")
    ec2.stop_instances(InstanceIds=[stays])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[stays], WaiterConfig={"Delay": 0.2})
    idle(cloud, stays)
    cloud.reconcile()
    assert ec2.describe_instances(InstanceIds=[stays])["Reservations"][0]["Instances"][0][
        "State"]["Name"] == "stopped"


def test_instance_attributes_of_a_container(ec2: Any, image: dict[str, Any]) -> None:
    iid = run(ec2, image)["Instances"][0]["InstanceId"]
    assert _attr(ec2, iid, "rootDeviceName") == {"RootDeviceName": {"Value": "/dev/sda1"}}
    assert _attr(ec2, iid, "kernel") == {"KernelId": {}}
    assert _attr(ec2, iid, "ramdisk") == {"RamdiskId": {}}
    assert _attr(ec2, iid, "blockDeviceMapping") == {"BlockDeviceMappings": []}
    assert _attr(ec2, iid, "sourceDestCheck") == {"SourceDestCheck": {"Value": True}}
    d = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert d["RootDeviceName"] == "/dev/sda1" and d["RootDeviceType"] == "instance-store"
    with pytest.raises(ClientError) as ei:
        ec2.describe_instance_attribute(InstanceId=iid, Attribute="flavour")
    assert ei.value.response["Error"] == {
        "Code": "InvalidParameterValue",
        "Message": "Value (flavour) for parameter attribute is invalid. Unknown attribute."}
    for kw in ({"Kernel": {"Value": "aki-12345678"}}, {"Ramdisk": {"Value": "ari-12345678"}},
               {"Attribute": "kernel", "Value": "aki-12345678"}):
        assert code_of(ec2.modify_instance_attribute, InstanceId=iid, **kw) == \
            "InvalidParameterCombination", kw
    assert code_of(ec2.modify_instance_attribute, InstanceId=iid) == \
        "InvalidParameterCombination"      # no attribute: EC2's "No attributes specified."
    assert code_of(ec2.modify_instance_attribute, InstanceId=iid,
                   DisableApiTermination={"Value": True},
                   InstanceInitiatedShutdownBehavior={"Value": "stop"}) == \
        "InvalidParameterCombination"      # one at a time
    assert code_of(ec2.modify_instance_attribute, InstanceId=iid,
                   SourceDestCheck={"Value": False}) == "UnsupportedOperation"
    assert code_of(ec2.modify_instance_attribute, InstanceId=iid, Attribute="rootDeviceName",
                   Value="/dev/sda1") == "UnsupportedOperation"
    assert code_of(ec2.modify_instance_attribute, InstanceId=iid, Attribute="flavour",
                   Value="x") == "InvalidParameterValue"
    assert _attr(ec2, iid, "disableApiTermination") == {"DisableApiTermination": {"Value": False}}


# --- image attributes --------------------------------------------------------------------------

def test_image_description_and_launch_permissions(ec2: Any, ec2_server: str, api: Any,
                                                  image: dict[str, Any]) -> None:
    ami = image["id"]
    theirs, their_account = _other_project(api, ec2_server)

    def img(client: Any = ec2) -> dict[str, Any]:
        return client.describe_images(ImageIds=[ami])["Images"][0]  # type: ignore[no-any-return]

    # the description: none set shows the template's own words, then the one set
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="description")["Description"] == {}
    ec2.modify_image_attribute(ImageId=ami, Description={"Value": "a tiny busybox"})
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="description")[
        "Description"] == {"Value": "a tiny busybox"}
    assert img()["Description"] == "a tiny busybox"
    ec2.modify_image_attribute(ImageId=ami, Attribute="description", Value="busybox, small")
    assert img()["Description"] == "busybox, small"
    assert code_of(ec2.modify_image_attribute, ImageId=ami,
                   Description={"Value": "x" * 256}) == "InvalidParameterValue"
    # an admin's image is public: Group=all toggles that
    perms = ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission")
    assert perms["LaunchPermissions"] == [{"Group": "all"}] and img()["Public"] is True
    assert img(theirs)["ImageId"] == ami
    ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Remove": [{"Group": "all"}]})
    assert img()["Public"] is False
    assert code_of(theirs.describe_images, ImageIds=[ami]) == "InvalidAMIID.NotFound"
    assert code_of(run, ec2=theirs, image=image) == "InvalidAMIID.NotFound"
    # UserId: another project's account id may launch it, and only that project
    ec2.modify_image_attribute(ImageId=ami, Attribute="launchPermission", OperationType="add",
                               UserIds=[their_account])
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission")[
        "LaunchPermissions"] == [{"UserId": their_account}]
    assert img(theirs)["Public"] is False
    assert [i["ImageId"] for i in theirs.describe_images(ExecutableUsers=["self"])["Images"]] == \
        [ami]
    assert [i["ImageId"] for i in ec2.describe_images(ExecutableUsers=[their_account])[
        "Images"]] == [ami]
    iid = run(theirs, image)["Instances"][0]["InstanceId"]
    assert theirs.describe_instances(InstanceIds=[iid])["Reservations"]
    # who may launch it is the owner's business; only the owner changes it
    assert code_of(theirs.describe_image_attribute, ImageId=ami,
                   Attribute="launchPermission") == "InvalidAMIID.NotFound"
    assert code_of(theirs.modify_image_attribute, ImageId=ami,
                   LaunchPermission={"Add": [{"Group": "all"}]}) == "InvalidAMIID.NotFound"
    assert code_of(theirs.modify_image_attribute, ImageId=ami,
                   Description={"Value": "mine now"}) == "InvalidAMIID.NotFound"
    assert theirs.describe_image_attribute(ImageId=ami, Attribute="description")[
        "Description"] == {"Value": "busybox, small"}
    # bad items are refused whole, before anything changes
    for items in ([{"Group": "everyone"}], [{"UserId": "12345"}],
                  [{"UserId": their_account}, {"UserId": "999999999999"}]):
        assert code_of(ec2.modify_image_attribute, ImageId=ami,
                       LaunchPermission={"Add": items}) == "InvalidAMIAttributeItemValue", items
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission")[
        "LaunchPermissions"] == [{"UserId": their_account}]
    ec2.modify_image_attribute(ImageId=ami, LaunchPermission={
        "Remove": [{"UserId": their_account}], "Add": [{"Group": "all"}]})
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="launchPermission")[
        "LaunchPermissions"] == [{"Group": "all"}]
    ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Remove": [{"Group": "all"}]})
    assert code_of(theirs.describe_images, ImageIds=[ami]) == "InvalidAMIID.NotFound"


def test_image_attribute_codes(ec2: Any, image: dict[str, Any]) -> None:
    ami = image["id"]
    attr = ec2.describe_image_attribute(ImageId=ami, Attribute="kernel")
    assert attr["KernelId"] == {} and attr["ImageId"] == ami
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="productCodes")[
        "ProductCodes"] == []
    with pytest.raises(ClientError) as ei:
        ec2.describe_image_attribute(ImageId=ami, Attribute="flavour")
    assert ei.value.response["Error"]["Code"] == "InvalidRequest"
    assert ei.value.response["Error"]["Message"].startswith("The request received was invalid.")
    assert code_of(ec2.describe_image_attribute, ImageId=ami, Attribute="blockDeviceMapping") == \
        "AuthFailure"
    assert code_of(ec2.modify_image_attribute, ImageId=ami, Attribute="flavour",
                   Value="x") == "InvalidRequest"
    assert code_of(ec2.modify_image_attribute, ImageId=ami, Attribute="kernel",
                   Value="aki-12345678") == "InvalidRequest"
    assert code_of(ec2.modify_image_attribute, ImageId=ami) == "InvalidParameterCombination"
    assert code_of(ec2.modify_image_attribute, ImageId=ami, Description={"Value": "x"},
                   LaunchPermission={"Add": [{"Group": "all"}]}) == "InvalidParameterCombination"
    assert code_of(ec2.modify_image_attribute, ImageId=ami, Attribute="launchPermission",
                   OperationType="grant", UserGroups=["all"]) == "InvalidParameterValue"
    assert code_of(ec2.modify_image_attribute, ImageId=ami,
                   ImdsSupport={"Value": "v2.0"}) == "UnsupportedOperation"
    assert code_of(ec2.modify_image_attribute, ImageId=ami, Description={"Value": "x"},
                   DryRun=True) == "DryRunOperation"
    assert ec2.describe_image_attribute(ImageId=ami, Attribute="description")["Description"] == {}


# --- signatures and pagination -------------------------------------------------------------------

def test_expired_signatures_are_request_expired(ec2: Any, ec2_server: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    import botocore.auth
    import httpx

    def clock(minutes: int) -> Any:
        def now(remove_tzinfo: bool = True) -> dt.datetime:
            t = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
            return t.replace(tzinfo=None) if remove_tzinfo else t
        return now

    for skew in (-10, 10):       # signed ten minutes ago, or ten minutes ahead
        monkeypatch.setattr(botocore.auth, "get_current_datetime", clock(skew))
        assert code_of(ec2.describe_regions) == "RequestExpired", skew
    # a presigned URL past its expiry
    monkeypatch.setattr(botocore.auth, "get_current_datetime", clock(-10))
    url = ec2.generate_presigned_url("describe_regions", ExpiresIn=60)
    monkeypatch.undo()
    # botocore signs a Query-protocol URL for POST (its body moved into the query string)
    resp = httpx.post(url)
    assert resp.status_code == 400
    assert _parse_error(resp.content, "DescribeRegions")["Code"] == "RequestExpired"
    fresh = httpx.post(ec2.generate_presigned_url("describe_regions", ExpiresIn=60))
    assert fresh.status_code == 200 and b"<regionName>lxcloud-1</regionName>" in fresh.content


def test_pagination_tokens_survive_a_restart(ec2: Any, image: dict[str, Any], cloud: Cloud,
                                             node: Any, tmp_path: Any) -> None:
    """A NextToken made before a restart resumes the listing after it: the secret that signs
    tokens is kept in the data dir, not made per process."""
    from lxcloud.config import Settings
    from tests.unit.conftest import ec2_client, serve

    ids = [i["InstanceId"] for i in run(ec2, image, MinCount=7, MaxCount=7)["Instances"]]
    first = ec2.describe_instances(MaxResults=5)
    token = first["NextToken"]
    seen = [i["InstanceId"] for r in first["Reservations"] for i in r["Instances"]]
    key = cloud.admin_key
    secret_file = cloud.settings.ec2_token_secret_file
    assert secret_file.stat().st_mode & 0o777 == 0o600
    again = Cloud(Settings.load(cloud.settings.data_dir, reconcile_interval=0), node)
    try:
        again.startup(reconcile_loop=False)
        with serve(again) as url:
            after = ec2_client(url, key.access_key_id, key.secret_access_key)
            rest = after.describe_instances(MaxResults=5, NextToken=token)
            seen += [i["InstanceId"] for r in rest["Reservations"] for i in r["Instances"]]
            assert "NextToken" not in rest and sorted(seen) == sorted(ids)
    finally:
        again.close()
    # another cloud (another data dir, another secret) does not take it
    elsewhere = Cloud(Settings.load(tmp_path / "elsewhere", default_network_cidr="10.251.8.0/28",
                                    reconcile_interval=0), node)
    try:
        elsewhere.startup(reconcile_loop=False)
        with serve(elsewhere) as url:
            k = elsewhere.admin_key
            other = ec2_client(url, k.access_key_id, k.secret_access_key)
            assert code_of(other.describe_instances, MaxResults=5, NextToken=token) == \
                "InvalidParameterValue"
    finally:
        elsewhere.close()
