"""boto3 and the aws CLI drive security groups on a real `lxcloud up` against real containers:
groups made and described (the default VPC's), rules in both IpPermissions forms, instances
launched in groups (RunInstances SecurityGroupIds / SecurityGroups), real traffic allowed and
denied from inside them, ModifyInstanceAttribute groupSet applied at once, DescribeInstances'
groups, tags, and the error codes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import Cloud, running_cloud
from tests.e2e.test_ec2_storage import aws, creds, ec2  # noqa: F401 - fixtures
from tests.waiting import wait_for

WAIT = {"Delay": 0.5, "MaxAttempts": 240}


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with running_cloud("lxcloud-ec2sg-") as c:
        c.cli("image", "build", "busybox")
        yield c


def code_of(fn: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as ei:
        fn(**kw)
    return str(ei.value.response["Error"]["Code"])


def fetch(cloud: Cloud, src: str, ip: str) -> bool:
    # (busybox 1.35's wget segfaults with -T: timeout(1) bounds it)
    cp = cloud.cli("exec", src, "--", "timeout", "3", "wget", "-qO-", f"http://{ip}:8080/",
                   check=False)
    return cp.returncode == 0 and "hello" in cp.stdout


def test_security_groups_over_ec2(aws: Any, ec2: Any, cloud: Cloud) -> None:  # noqa: F811
    ami = aws("describe-images", "--owners", "self",
              "--filters", "Name=name,Values=busybox")["Images"][0]["ImageId"]
    vpc = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["VpcId"]
    # the aws CLI, flat flags (the old form on the wire)
    web = aws("create-security-group", "--group-name", "e2e-web", "--description", "web",
              "--vpc-id", vpc)["GroupId"]
    aws("authorize-security-group-ingress", "--group-id", web, "--protocol", "tcp",
        "--port", "8080", "--source-group", "default")
    # boto3, the structured form
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1,
         "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "ping"}]}])
    other = ec2.create_security_group(GroupName="e2e-other", Description="others")["GroupId"]
    ec2.create_tags(Resources=[web], Tags=[{"Key": "tier", "Value": "front"}])

    www = aws("run-instances", "--image-id", ami, "--count", "1", "--security-group-ids", web,
              "--tag-specifications", "ResourceType=instance,Tags=[{Key=Name,Value=e2e-www}]"
              )["Instances"][0]["InstanceId"]
    client = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    stranger = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1,
                                 SecurityGroups=["e2e-other"])["Instances"][0]["InstanceId"]
    try:
        ec2.get_waiter("instance_running").wait(InstanceIds=[www, client, stranger],
                                                WaiterConfig=WAIT)
        res = ec2.describe_instances(InstanceIds=[www])["Reservations"][0]
        assert [g["GroupId"] for g in res["Groups"]] == [web]
        inst = res["Instances"][0]
        assert inst["SecurityGroups"] == [{"GroupId": web, "GroupName": "e2e-web"}]
        ip = inst["PrivateIpAddress"]
        got = aws("describe-instances", "--instance-ids", client)
        assert got["Reservations"][0]["Instances"][0]["SecurityGroups"][0]["GroupName"] == \
            "default"
        cloud.cli("exec", www, "--", "sh", "-c",
                  "mkdir -p /srv && echo hello > /srv/index.html && httpd -p 8080 -h /srv")
        # ingress from the default group's members only; ICMP from anywhere
        wait_for(lambda: fetch(cloud, client, ip), 10, "the client to reach e2e-www")
        assert not fetch(cloud, stranger, ip)
        assert cloud.cli("exec", stranger, "--", "ping", "-c1", "-W1", ip,
                         check=False).returncode == 0
        # the stranger joins default as well: at once
        default = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]
        ec2.modify_instance_attribute(InstanceId=stranger, Groups=[other, default["GroupId"]])
        assert fetch(cloud, stranger, ip)
        attr = aws("describe-instance-attribute", "--instance-id", stranger,
                   "--attribute", "groupSet")
        assert [g["GroupId"] for g in attr["Groups"]] == [other, default["GroupId"]]
        # revoking a rule denies at once (the old flat form through boto3)
        ec2.revoke_security_group_ingress(GroupId=web, IpProtocol="tcp", FromPort=8080,
                                          ToPort=8080, SourceSecurityGroupName="default")
        assert not fetch(cloud, client, ip)
        described = aws("describe-security-groups", "--filters", "Name=tag:tier,Values=front")
        (g,) = described["SecurityGroups"]
        assert g["GroupId"] == web and g["VpcId"] == vpc
        assert g["IpPermissions"][0]["IpProtocol"] == "icmp"
        assert g["IpPermissions"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0", "Description": "ping"}]
        # the error codes
        assert code_of(ec2.delete_security_group, GroupId=web) == "InvalidGroup.InUse"
        assert code_of(ec2.create_security_group, GroupName="e2e-web", Description="x") == \
            "InvalidGroup.Duplicate"
        assert code_of(ec2.describe_security_groups, GroupIds=["sg-12"]) == \
            "InvalidGroupId.Malformed"
        assert code_of(ec2.delete_security_group, GroupId="sg-0123456789abcdef0") == \
            "InvalidGroup.NotFound"
        assert code_of(ec2.authorize_security_group_ingress, GroupId=web, IpPermissions=[
            {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]) == "InvalidPermission.Duplicate"
        assert code_of(ec2.revoke_security_group_egress, GroupId=web, IpPermissions=[
            {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53,
             "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]) == "InvalidPermission.NotFound"
        assert code_of(ec2.authorize_security_group_ingress, GroupId=web, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 70000, "ToPort": 70001,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]) == "InvalidParameterValue"
        bad = aws("run-instances", "--image-id", ami, "--count", "1", "--security-groups", "nope",
                  check=False)
        assert "InvalidGroup.NotFound" in bad.stderr
    finally:
        ec2.terminate_instances(InstanceIds=[www, client, stranger])
        ec2.get_waiter("instance_terminated").wait(InstanceIds=[www, client, stranger],
                                                   WaiterConfig=WAIT)
    wait_for(lambda: _deleted(ec2, web), 30, "e2e-web to be deletable once its instance is gone")
    aws("delete-security-group", "--group-name", "e2e-other")
    assert [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]] == \
        ["default"]


def _deleted(client: Any, gid: str) -> bool:
    try:
        client.delete_security_group(GroupId=gid)
    except ClientError as e:
        if e.response["Error"]["Code"] == "InvalidGroup.InUse":
            return False
        raise
    return True
