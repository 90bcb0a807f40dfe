"""boto3 and the aws CLI drive Elastic IPs on a real `lxcloud up` with a real container: the aws
CLI allocates and associates an address, the outside (a namespace beyond a veth standing in for
the host's public interface) reaches the container through it once the group allows, the
container's metadata tells its public-ipv4 and DescribeInstances its PublicIpAddress; boto3 tags
and filters it, disassociates (the outside is cut off) and releases it; and the error codes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import Cloud
from tests.e2e.test_cli_addresses import serve_hello
from tests.e2e.test_ec2_clients import aws, creds, ec2, image_id  # noqa: F401 - fixtures
from tests.integration.outside import Outside, outside_world
from tests.waiting import wait_for

FAST = {"Delay": 0.5, "MaxAttempts": 240}


@pytest.fixture(scope="module")
def world() -> Iterator[Outside]:
    with outside_world() as w:
        yield w


def code_of(fn: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as ei:
        fn(**kw)
    return str(ei.value.response["Error"]["Code"])


def test_elastic_ips_with_boto3_and_the_aws_cli(
        cloud: Cloud, world: Outside, ec2: Any, aws: Any) -> None:  # noqa: F811 - the fixtures
    cloud.cli("image", "build", "busybox", timeout=300)
    cloud.cli("address", "pool", "create", "public", "--interface", world.interface, "--range",
              world.range)
    r = ec2.run_instances(ImageId=image_id(ec2, "busybox"), MinCount=1, MaxCount=1,
                          InstanceType="t3.nano", TagSpecifications=[
                              {"ResourceType": "instance", "Tags": [{"Key": "Name",
                                                                     "Value": "eipweb"}]}])
    iid = r["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    serve_hello(cloud, "eipweb")
    [group] = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"]
    ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 7000, "ToPort": 7000,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])

    alloc = aws("allocate-address", "--domain", "vpc")
    ip, alloc_id = alloc["PublicIp"], alloc["AllocationId"]
    assert alloc["Domain"] == "vpc" and ip == world.public(0)
    assoc = aws("associate-address", "--instance-id", iid, "--allocation-id", alloc_id)
    assert assoc["AssociationId"].startswith("eipassoc-")
    assert wait_for(lambda: world.ask(ip, 7000) == "instance", 20, "the outside via the EIP")
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst["PublicIpAddress"] == ip
    [desc] = aws("describe-addresses", "--public-ips", ip)["Addresses"]
    assert (desc["InstanceId"], desc["AllocationId"], desc["AssociationId"]) == (
        iid, alloc_id, assoc["AssociationId"])
    assert desc["PrivateIpAddress"] == inst["PrivateIpAddress"]

    # the instance learns its public address from the metadata service
    def meta(path: str) -> str:
        res = cloud.cli("exec", "eipweb", "--", "wget", "-qO-",
                        f"http://169.254.169.254/latest/meta-data/{path}", check=False)
        return res.stdout if res.returncode == 0 else ""
    assert wait_for(lambda: meta("public-ipv4"), 20, "public-ipv4 in the metadata") == ip
    assert "public-ipv4" in meta("").splitlines()

    ec2.create_tags(Resources=[alloc_id], Tags=[{"Key": "Name", "Value": "front"}])
    got = ec2.describe_addresses(Filters=[{"Name": "tag:Name", "Values": ["front"]}])["Addresses"]
    assert [a["PublicIp"] for a in got] == [ip]
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [alloc_id]}])["Tags"]
    assert [(t["ResourceType"], t["Key"]) for t in tags] == [("elastic-ip", "Name")]

    assert code_of(ec2.release_address, AllocationId=alloc_id) == "InvalidIPAddress.InUse"
    other = ec2.allocate_address(Domain="vpc")
    assert code_of(ec2.associate_address, AllocationId=other["AllocationId"],
                   InstanceId="i-0123456789abcdef0") == "InvalidInstanceID.NotFound"
    ec2.disassociate_address(AssociationId=assoc["AssociationId"])
    assert world.ask(ip, 7000).startswith("error")
    assert "PublicIpAddress" not in ec2.describe_instances(
        InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert code_of(ec2.disassociate_address,
                   AssociationId=assoc["AssociationId"]) == "InvalidAssociationID.NotFound"
    ec2.release_address(AllocationId=alloc_id)
    aws("release-address", "--public-ip", other["PublicIp"])
    assert code_of(ec2.release_address, AllocationId=alloc_id) == "InvalidAllocationID.NotFound"
    assert code_of(ec2.describe_addresses, PublicIps=[ip]) == "InvalidAddress.NotFound"
    assert ec2.describe_addresses()["Addresses"] == []
    ec2.terminate_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)
    cloud.cli("address", "pool", "delete", "public")
