"""EC2 security-group actions through boto3 over the services and the fake node: both forms of
IpPermissions, every error code, RunInstances / DescribeInstances / ModifyInstanceAttribute with
groups, tags; and what reaches the host's firewall (a recording driver on the fake node)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from lxcloud.api.ec2.vpc import default_vpc_id
from lxcloud.drivers.network.secgroups import GroupPolicy, PortPolicy
from lxcloud.services.cloud import Cloud
from tests.unit.fakes import FakeNode
from tests.waiting import wait_for

FAST = {"Delay": 0.1, "MaxAttempts": 100}


class RecordingFirewall:
    """Stands in for drivers/network/secgroups.SecurityGroups on the fake node."""

    def __init__(self) -> None:
        self.groups: dict[str, GroupPolicy] = {}
        self.ports: dict[str, PortPolicy] = {}

    def apply(self, table: str, ports: list[PortPolicy], groups: list[GroupPolicy]) -> None:
        self.ports = {p.port: p for p in ports}
        self.groups = {g.id: g for g in groups}

    def add_port(self, table: str, port: PortPolicy, groups: list[GroupPolicy]) -> None:
        self.ports[port.port] = port
        self.groups.update({g.id: g for g in groups})

    def update_group(self, table: str, group: GroupPolicy) -> None:
        self.groups[group.id] = group

    def remove_ports(self, table: str, ports: list[str]) -> None:
        for p in ports:
            self.ports.pop(p, None)

    def remove_group(self, table: str, gid: str) -> None:
        self.groups.pop(gid, None)


@pytest.fixture
def fw(node: FakeNode) -> RecordingFirewall:
    node.secgroups = RecordingFirewall()
    return node.secgroups  # type: ignore[no-any-return]


def code_of(fn: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as ei:
        fn(**kw)
    return str(ei.value.response["Error"]["Code"])


def perm(proto: str, lo: int | None, hi: int | None, cidr: str | None = None,
         group: str | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"IpProtocol": proto}
    if lo is not None:
        p["FromPort"], p["ToPort"] = lo, hi
    if cidr:
        p["IpRanges"] = [{"CidrIp": cidr}]
    if group:
        p["UserIdGroupPairs"] = [{"GroupId": group}]
    return p


def test_groups_rules_and_errors(ec2: Any, cloud: Cloud, fw: RecordingFirewall) -> None:
    default = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]
    vpc = default["VpcId"]
    assert default["GroupName"] == "default"
    assert vpc == default_vpc_id(cloud.accounts.caller_for_key(
        cloud.admin_key.access_key_id).project_id)
    assert default["IpPermissionsEgress"][0]["IpProtocol"] == "-1"
    assert default["IpPermissionsEgress"][0]["IpRanges"][0]["CidrIp"] == "0.0.0.0/0"
    assert default["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"] == default["GroupId"]

    web = ec2.create_security_group(GroupName="web", Description="web servers",
                                    TagSpecifications=[{"ResourceType": "security-group",
                                                        "Tags": [{"Key": "tier", "Value": "1"}]}]
                                    )["GroupId"]
    assert code_of(ec2.create_security_group, GroupName="web", Description="x") == \
        "InvalidGroup.Duplicate"
    # the new form: a port range from a CIDR and ICMP from a group
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        perm("tcp", 8000, 8080, cidr="10.0.0.0/8"), perm("icmp", 8, -1, group=default["GroupId"])])
    # the old flat form
    ec2.authorize_security_group_ingress(GroupName="web", IpProtocol="tcp", FromPort=22,
                                         ToPort=22, CidrIp="192.0.2.0/24")
    ec2.authorize_security_group_ingress(GroupName="web", SourceSecurityGroupName="default",
                                         IpProtocol="udp", FromPort=53, ToPort=53)
    assert code_of(ec2.authorize_security_group_ingress, GroupId=web, IpProtocol="tcp",
                   FromPort=22, ToPort=22, CidrIp="192.0.2.0/24") == "InvalidPermission.Duplicate"
    assert code_of(ec2.revoke_security_group_ingress, GroupId=web, IpProtocol="tcp",
                   FromPort=23, ToPort=23, CidrIp="192.0.2.0/24") == "InvalidPermission.NotFound"
    assert code_of(ec2.authorize_security_group_ingress, GroupId=web, IpProtocol="gre",
                   CidrIp="0.0.0.0/0") == "InvalidParameterValue"
    assert code_of(ec2.authorize_security_group_ingress, GroupId=web, IpPermissions=[
        perm("tcp", 10, 5, cidr="0.0.0.0/0")]) == "InvalidParameterValue"
    ec2.authorize_security_group_egress(GroupId=web, IpPermissions=[perm("-1", None, None,
                                                                         cidr="10.9.0.0/16")])
    ec2.revoke_security_group_egress(GroupId=web, IpPermissions=[perm("-1", None, None,
                                                                      cidr="0.0.0.0/0")])
    g = ec2.describe_security_groups(GroupIds=[web])["SecurityGroups"][0]
    ingress = {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")): p for p in g["IpPermissions"]}
    assert ingress[("tcp", 8000, 8080)]["IpRanges"] == [{"CidrIp": "10.0.0.0/8"}]
    assert ingress[("icmp", 8, -1)]["UserIdGroupPairs"][0]["GroupId"] == default["GroupId"]
    assert ingress[("udp", 53, 53)]["UserIdGroupPairs"][0]["GroupName"] == "default"
    assert g["IpPermissionsEgress"] == [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.9.0.0/16"}],
                                         "Ipv6Ranges": [], "PrefixListIds": [],
                                         "UserIdGroupPairs": []}]
    assert g["Tags"] == [{"Key": "tier", "Value": "1"}]
    # every rule change reached the host's firewall at once
    assert len(fw.groups[web].rules) == 5
    # filters
    names = lambda **kw: sorted(x["GroupName"] for x in  # noqa: E731
                                ec2.describe_security_groups(**kw)["SecurityGroups"])
    assert names(Filters=[{"Name": "group-name", "Values": ["w*"]}]) == ["web"]
    assert names(Filters=[{"Name": "vpc-id", "Values": [vpc]}]) == ["default", "web"]
    assert names(Filters=[{"Name": "tag:tier", "Values": ["1"]}]) == ["web"]
    assert names(Filters=[{"Name": "group-id", "Values": [web]}]) == ["web"]
    # ids and their errors
    assert code_of(ec2.describe_security_groups, GroupIds=["sg-nothex"]) == \
        "InvalidGroupId.Malformed"
    assert code_of(ec2.describe_security_groups, GroupIds=["sg-0123456789abcdef0"]) == \
        "InvalidGroup.NotFound"
    assert code_of(ec2.describe_security_groups, GroupNames=["nope"]) == "InvalidGroup.NotFound"
    assert code_of(ec2.delete_security_group, GroupName="default") == "CannotDelete"
    assert code_of(ec2.create_security_group, GroupName="x", Description="x",
                   VpcId="vpc-0123456789abcdef0") == "InvalidVpcID.NotFound"
    ec2.create_tags(Resources=[web], Tags=[{"Key": "k", "Value": "v"}])
    assert {t["Key"] for t in ec2.describe_tags(Filters=[{"Name": "resource-id",
                                                           "Values": [web]}])["Tags"]} == \
        {"tier", "k"}
    ec2.delete_security_group(GroupId=web)
    assert names() == ["default"]
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [web]}])["Tags"] == []


def test_instances_in_groups(ec2: Any, cloud: Cloud, image: dict[str, Any],
                             fw: RecordingFirewall) -> None:
    web = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    db = ec2.create_security_group(GroupName="db", Description="db")["GroupId"]
    res = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1, SecurityGroupIds=[web],
                            SecurityGroups=["db"])
    iid = res["Instances"][0]["InstanceId"]
    assert [g["GroupId"] for g in res["Groups"]] == [web, db]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]
    assert [g["GroupName"] for g in inst["Groups"]] == ["web", "db"]
    assert [g["GroupName"] for g in inst["Instances"][0]["SecurityGroups"]] == ["web", "db"]
    assert inst["Instances"][0]["NetworkInterfaces"][0]["Groups"] == [
        {"GroupId": web, "GroupName": "web"}, {"GroupId": db, "GroupName": "db"}]
    # the host's firewall had the instance's port before it ran
    (port,) = fw.ports.values()
    assert port.groups == (web, db) and port.addresses == (inst["Instances"][0]["PrivateIpAddress"],)
    assert code_of(ec2.delete_security_group, GroupId=web) == "InvalidGroup.InUse"
    # the metadata service names them
    from lxcloud.api.metadata.app import meta_data_tree
    from lxcloud.api.metadata.lookup import make_lookup

    view = make_lookup(cloud)(inst["Instances"][0]["PrivateIpAddress"])
    assert view is not None and view.security_groups == ["web", "db"]
    assert meta_data_tree(view).entries["security-groups"] == b"web\ndb"
    # without groups: the project's default
    other = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1)["Instances"][0]
    assert [g["GroupName"] for g in other["SecurityGroups"]] == ["default"]
    assert code_of(ec2.run_instances, ImageId=image["id"], MinCount=1, MaxCount=1,
                   SecurityGroups=["nope"]) == "InvalidGroup.NotFound"
    # the groups of a network interface are the instance's
    eni = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1, NetworkInterfaces=[
        {"DeviceIndex": 0, "Groups": [db]}])["Instances"][0]
    assert [g["GroupId"] for g in eni["SecurityGroups"]] == [db]
    assert code_of(ec2.run_instances, ImageId=image["id"], MinCount=1, MaxCount=1,
                   SecurityGroupIds=[web], NetworkInterfaces=[{"DeviceIndex": 0, "Groups": [db]}]
                   ) == "InvalidParameterCombination"
    # groupSet
    ec2.modify_instance_attribute(InstanceId=iid, Groups=[db])
    attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="groupSet")
    assert [g["GroupId"] for g in attr["Groups"]] == [db]
    assert fw.ports[port.port].groups == (db,)
    ec2.delete_security_group(GroupId=web)      # no longer in use
    # a terminated instance leaves its groups
    done = [iid, eni["InstanceId"]]
    ec2.terminate_instances(InstanceIds=done)
    ec2.get_waiter("instance_terminated").wait(InstanceIds=done, WaiterConfig=FAST)
    wait_for(lambda: not any(cloud.ops.busy(i) for i in done), 10, "the terminations to end")
    ec2.delete_security_group(GroupId=db)
    assert port.port not in fw.ports


def _serialized(op: str, params: dict[str, Any]) -> Any:
    """The Query parameters botocore sends for `op` (the same serializer the aws CLI uses)."""
    import botocore.session
    from botocore import serialize

    from lxcloud.api.ec2.params import Params

    model = botocore.session.get_session().get_service_model("ec2").operation_model(op)
    body = serialize.create_serializer("ec2").serialize_to_request(params, model)["body"]
    return Params({k: str(v) for k, v in body.items()})


def test_both_forms_of_ip_permissions_as_botocore_sends_them() -> None:
    from lxcloud.api.ec2.errors import Ec2Error
    from lxcloud.api.ec2.security_groups import permissions
    from lxcloud.services.security_groups import RuleSpec

    new = _serialized("AuthorizeSecurityGroupIngress", {"GroupId": "sg-1", "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 81,
         "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "lan"}],
         "UserIdGroupPairs": [{"GroupId": "sg-0123456789abcdef0"}]},
        {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1},
        {"IpProtocol": "-1"}]})
    assert permissions(new, "ingress") == [
        RuleSpec("ingress", "tcp", 80, 81, cidr="10.0.0.0/8", description="lan"),
        RuleSpec("ingress", "tcp", 80, 81, source_group="sg-0123456789abcdef0"),
        RuleSpec("ingress", "icmp", 8, -1, cidr="0.0.0.0/0"),
        RuleSpec("ingress", "all", None, None, cidr="0.0.0.0/0")]
    flat = _serialized("AuthorizeSecurityGroupIngress", {
        "GroupName": "web", "IpProtocol": "6", "FromPort": 22, "ToPort": 22,
        "SourceSecurityGroupName": "default"})
    assert permissions(flat, "ingress") == [RuleSpec("ingress", "tcp", 22, 22,
                                                     source_group="default")]
    egress = _serialized("AuthorizeSecurityGroupEgress", {"GroupId": "sg-1", "IpPermissions": [
        {"IpProtocol": "udp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "1.1.1.1/32"}]}
    ]})
    assert permissions(egress, "egress") == [RuleSpec("egress", "udp", 0, 65535,
                                                      cidr="1.1.1.1/32")]
    v6 = _serialized("AuthorizeSecurityGroupIngress", {"GroupId": "sg-1", "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]})
    with pytest.raises(Ec2Error) as e:
        permissions(v6, "ingress")
    assert e.value.code == "InvalidParameterValue"
    assert _serialized("RunInstances", {"ImageId": "ami-1", "MinCount": 1, "MaxCount": 1,
                                        "SecurityGroupIds": ["sg-0123456789abcdef0"],
                                        "SecurityGroups": ["web"]}).list("SecurityGroup") == ["web"]
