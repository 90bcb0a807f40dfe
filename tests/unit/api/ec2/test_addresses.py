"""EC2 Elastic IP actions through boto3 over the services and the fake node: allocate (Domain,
pool, tags), associate (by AllocationId or PublicIp, AllowReassociation), describe (ids, IPs,
filters), disassociate (AssociationId or PublicIp), release, PublicIpAddress in
DescribeInstances, tags, and every error code."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from lxcloud.services.cloud import Cloud
from tests.unit.api.ec2.test_storage import code_of, running
from tests.unit.fakes import FakeNode

MISSING_ALLOC = "eipalloc-0123456789abcdef0"


@pytest.fixture
def pool(cloud: Cloud) -> None:
    cloud.addresses.create_pool("public", "eth0", "198.51.100.10-198.51.100.13")


def test_allocate_associate_describe_disassociate_release(
        ec2: Any, image: dict[str, Any], cloud: Cloud, node: FakeNode, pool: None) -> None:
    a = ec2.allocate_address(Domain="vpc", TagSpecifications=[
        {"ResourceType": "elastic-ip", "Tags": [{"Key": "Name", "Value": "front"}]}])
    assert a["Domain"] == "vpc" and a["AllocationId"].startswith("eipalloc-")
    assert a["PublicIp"] == "198.51.100.10" and a["PublicIpv4Pool"] == "public"
    classic = ec2.allocate_address(Domain="standard")
    assert classic["Domain"] == "standard" and classic["PublicIp"] == "198.51.100.11"
    assert code_of(ec2.allocate_address, Domain="galaxy") == "InvalidParameterValue"
    assert code_of(ec2.allocate_address, Address=a["PublicIp"]) == "InvalidParameterValue"

    iid = running(ec2, image, cloud)
    other = running(ec2, image, cloud)
    r = ec2.associate_address(AllocationId=a["AllocationId"], InstanceId=iid)
    assoc = r["AssociationId"]
    assert assoc.startswith("eipassoc-")
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst["PublicIpAddress"] == a["PublicIp"]
    found = ec2.describe_instances(Filters=[{"Name": "ip-address", "Values": [a["PublicIp"]]}])
    assert [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]] == [iid]
    [eni] = inst["NetworkInterfaces"]
    assert eni["Association"]["PublicIp"] == a["PublicIp"]
    assert eni["PrivateIpAddresses"][0]["Association"]["PublicIp"] == a["PublicIp"]
    [desc_eni] = ec2.describe_network_interfaces(
        NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"]
    assert desc_eni["Association"] == {
        "PublicIp": a["PublicIp"], "PublicDnsName": "", "IpOwnerId": eni["OwnerId"],
        "AllocationId": a["AllocationId"], "AssociationId": assoc}
    # by its network interface, as EC2 tooling does
    assert code_of(ec2.associate_address, AllocationId=a["AllocationId"],
                   NetworkInterfaceId="eni-0123456789abcdef0") == \
        "InvalidNetworkInterfaceID.NotFound"
    assert node.public_nat.associations[a["PublicIp"]].private_ip == inst["PrivateIpAddress"]

    [d] = ec2.describe_addresses(AllocationIds=[a["AllocationId"]])["Addresses"]
    assert (d["PublicIp"], d["InstanceId"], d["AssociationId"], d["Domain"]) == (
        a["PublicIp"], iid, assoc, "vpc")
    assert d["PrivateIpAddress"] == inst["PrivateIpAddress"]
    assert d["Tags"] == [{"Key": "Name", "Value": "front"}]
    assert [x["AllocationId"] for x in ec2.describe_addresses(
        PublicIps=[classic["PublicIp"]])["Addresses"]] == [classic["AllocationId"]]
    assert len(ec2.describe_addresses()["Addresses"]) == 2
    for flt, n in ((("instance-id", iid), 1), (("domain", "vpc"), 2), (("tag:Name", "front"), 1),
                   (("association-id", assoc), 1), (("public-ip", "198.51.100.1*"), 2)):
        got = ec2.describe_addresses(Filters=[{"Name": flt[0], "Values": [flt[1]]}])
        assert len(got["Addresses"]) == n, flt
    ec2.create_tags(Resources=[classic["AllocationId"]], Tags=[{"Key": "env", "Value": "x"}])
    tags = ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["elastic-ip"]}])
    assert {(t["ResourceId"], t["Key"]) for t in tags["Tags"]} == {
        (a["AllocationId"], "Name"), (classic["AllocationId"], "env")}

    # taken elsewhere: refused without AllowReassociation; by PublicIp (EC2-Classic style) too
    assert code_of(ec2.associate_address, PublicIp=a["PublicIp"],
                   InstanceId=other) == "Resource.AlreadyAssociated"
    r2 = ec2.associate_address(PublicIp=a["PublicIp"], InstanceId=other, AllowReassociation=True)
    assert r2["AssociationId"] != assoc
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert "PublicIpAddress" not in inst
    # associated: not released
    assert code_of(ec2.release_address,
                   AllocationId=a["AllocationId"]) == "InvalidIPAddress.InUse"
    assert code_of(ec2.disassociate_address,
                   AssociationId=assoc) == "InvalidAssociationID.NotFound"   # replaced
    ec2.disassociate_address(AssociationId=r2["AssociationId"])
    assert "InstanceId" not in ec2.describe_addresses(
        AllocationIds=[a["AllocationId"]])["Addresses"][0]
    ec2.associate_address(PublicIp=classic["PublicIp"],
                          NetworkInterfaceId=eni["NetworkInterfaceId"])
    got = ec2.describe_addresses(PublicIps=[classic["PublicIp"]])["Addresses"][0]
    assert (got["InstanceId"], got["NetworkInterfaceId"]) == (iid, eni["NetworkInterfaceId"])
    ec2.disassociate_address(PublicIp=classic["PublicIp"])
    assert node.public_nat.associations == {}
    ec2.release_address(AllocationId=a["AllocationId"])
    ec2.release_address(PublicIp=classic["PublicIp"])
    assert ec2.describe_addresses()["Addresses"] == []


def test_error_codes(ec2: Any, image: dict[str, Any], cloud: Cloud, pool: None) -> None:
    cloud.settings.max_addresses_per_project = 1
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    assert code_of(ec2.allocate_address, Domain="vpc") == "AddressLimitExceeded"
    cloud.settings.max_addresses_per_project = 10
    for _ in range(3):
        ec2.allocate_address()
    assert code_of(ec2.allocate_address) == "AddressLimitExceeded"       # the pool is empty
    iid = running(ec2, image, cloud)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("describe_addresses", {"AllocationIds": [MISSING_ALLOC]}, "InvalidAllocationID.NotFound"),
        ("describe_addresses", {"AllocationIds": ["eipalloc-zz"]}, "InvalidAllocationID.Malformed"),
        ("describe_addresses", {"PublicIps": ["203.0.113.9"]}, "InvalidAddress.NotFound"),
        ("describe_addresses", {"Filters": [{"Name": "colour", "Values": ["x"]}]},
         "InvalidParameterValue"),
        ("associate_address", {"AllocationId": MISSING_ALLOC, "InstanceId": iid},
         "InvalidAllocationID.NotFound"),
        ("associate_address", {"PublicIp": "203.0.113.9", "InstanceId": iid},
         "InvalidAddress.NotFound"),
        ("associate_address", {"AllocationId": alloc, "InstanceId": "i-0123456789abcdef0"},
         "InvalidInstanceID.NotFound"),
        ("associate_address", {"AllocationId": alloc}, "MissingParameter"),
        ("associate_address", {"InstanceId": iid}, "MissingParameter"),
        ("associate_address", {"AllocationId": alloc, "InstanceId": iid,
                               "PrivateIpAddress": "10.0.0.99"}, "InvalidParameterValue"),
        ("disassociate_address", {"AssociationId": "eipassoc-0123456789abcdef0"},
         "InvalidAssociationID.NotFound"),
        ("disassociate_address", {"PublicIp": "203.0.113.9"}, "InvalidAddress.NotFound"),
        ("release_address", {"AllocationId": MISSING_ALLOC}, "InvalidAllocationID.NotFound"),
        ("release_address", {"PublicIp": "not-an-ip"}, "InvalidParameterValue"),
        ("release_address", {}, "MissingParameter"),
        ("create_tags", {"Resources": [MISSING_ALLOC], "Tags": [{"Key": "a", "Value": "b"}]},
         "InvalidAllocationID.NotFound"),
    ]
    for method, kw, code in cases:
        assert code_of(getattr(ec2, method), **kw) == code, (method, kw)
    with pytest.raises(ClientError) as ei:
        ec2.allocate_address(DryRun=True)
    assert ei.value.response["Error"]["Code"] == "DryRunOperation"
