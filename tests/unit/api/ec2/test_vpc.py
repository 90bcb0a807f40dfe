"""The EC2 VPC skin through boto3 over the services and the fake node: the project's default VPC
and its subnets as tooling looks them up, CreateSubnet / DeleteSubnet as network create / delete
(overlaps, bad ranges, in use), RunInstances into a subnet with a fixed address and with several
network interfaces, the instance's ENIs in DescribeInstances and DescribeNetworkInterfaces, every
error code; and responses rendered by our XML renderer read back by botocore's own parser."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lxcloud.api.ec2.instances import render_instance
from lxcloud.api.ec2.vpc import default_vpc_id, render_network_interface, subnet_id, vpc_cidrs
from lxcloud.api.ec2.xml import render
from lxcloud.core.instance import Nic
from lxcloud.core.models import Network
from lxcloud.services.cloud import Cloud
from tests.unit.api.ec2.test_actions import _other_project
from tests.unit.api.ec2.test_golden import RID, _ctx, _instance, _parse
from tests.unit.fakes import FakeNode

FAST = {"Delay": 0.1, "MaxAttempts": 100}
DEFAULT_CIDR = "10.251.7.0/28"    # the unit cloud's default network (tests/unit/conftest.py)


def code_of(fn: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as ei:
        fn(**kw)
    return str(ei.value.response["Error"]["Code"])


def _project_vpc(cloud: Cloud) -> str:
    """The admin's project's default VPC."""
    key = cloud.admin_key
    return default_vpc_id(cloud.accounts.caller_for_key(key.access_key_id).project_id)


def subnet(ec2: Any, vpc: str, cidr: str, name: str | None = None) -> dict[str, Any]:
    tags = [{"ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": name}]}] if name else []
    return ec2.create_subnet(VpcId=vpc, CidrBlock=cidr,  # type: ignore[no-any-return]
                             TagSpecifications=tags)["Subnet"]


def test_the_default_vpc_and_subnet_as_tooling_looks_them_up(ec2: Any, cloud: Cloud) -> None:
    vpc = _project_vpc(cloud)
    attrs = {a["AttributeName"]: [v["AttributeValue"] for v in a["AttributeValues"]]
             for a in ec2.describe_account_attributes()["AccountAttributes"]}
    assert attrs["supported-platforms"] == ["VPC"] and attrs["default-vpc"] == [vpc]
    assert "max-instances" in attrs          # the attributes answered before are kept
    only = ec2.describe_account_attributes(AttributeNames=["default-vpc"])["AccountAttributes"]
    assert [a["AttributeName"] for a in only] == ["default-vpc"]
    # what configuration tools do: the default VPC, then its default subnet in the zone
    [v] = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    assert (v["VpcId"], v["IsDefault"], v["State"], v["CidrBlock"]) == (
        vpc, True, "available", "10.0.0.0/8")
    assert v["CidrBlockAssociationSet"][0]["CidrBlockState"]["State"] == "associated"
    assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["VpcId"] == vpc
    assert ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["false"]}])["Vpcs"] == []
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Vpcs"][0]["IsDefault"]
    [s] = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                        {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    default = cloud.networks.get("default")
    assert s["SubnetId"] == subnet_id(default.id) == "subnet-" + default.id[4:]
    assert (s["CidrBlock"], s["AvailabilityZone"], s["VpcId"], s["State"]) == (
        DEFAULT_CIDR, "lxcloud-1a", vpc, "available")
    assert s["DefaultForAz"] is True and s["MapPublicIpOnLaunch"] is False
    assert s["AvailableIpAddressCount"] == 13        # a /28: 16 less network, gateway, broadcast
    assert {"Key": "Name", "Value": "default"} in s["Tags"]
    for filters in ([{"Name": "availability-zone", "Values": ["lxcloud-1a"]}],
                    [{"Name": "cidr-block", "Values": [DEFAULT_CIDR]}],
                    [{"Name": "subnet-id", "Values": [s["SubnetId"]]}],
                    [{"Name": "tag:Name", "Values": ["def*"]}]):
        assert [x["SubnetId"] for x in ec2.describe_subnets(Filters=filters)["Subnets"]] == \
            [s["SubnetId"]], filters
    assert ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": ["vpc-0"]}])["Subnets"] == []


@pytest.mark.parametrize("call, kw, code", [
    ("describe_vpcs", {"VpcIds": ["vpc-0123456789abcdef0"]}, "InvalidVpcID.NotFound"),
    ("describe_vpcs", {"VpcIds": ["vpc-nothex"]}, "InvalidVpcID.Malformed"),
    ("describe_vpcs", {"Filters": [{"Name": "color", "Values": ["x"]}]}, "InvalidParameterValue"),
    ("describe_subnets", {"SubnetIds": ["subnet-0123456789abcdef0"]}, "InvalidSubnetID.NotFound"),
    ("describe_subnets", {"SubnetIds": ["subnet-zz"]}, "InvalidSubnetID.Malformed"),
    ("delete_subnet", {"SubnetId": "subnet-0123456789abcdef0"}, "InvalidSubnetID.NotFound"),
    ("describe_network_interfaces", {"NetworkInterfaceIds": ["eni-0123456789abcdef0"]},
     "InvalidNetworkInterfaceID.NotFound"),
    ("describe_network_interfaces", {"NetworkInterfaceIds": ["eni-x"]},
     "InvalidNetworkInterfaceID.Malformed"),
    ("create_vpc", {"CidrBlock": "10.9.0.0/16"}, "UnsupportedOperation"),
    ("delete_vpc", {"VpcId": "vpc-0123456789abcdef0"}, "InvalidVpcID.NotFound"),
    ("create_subnet", {"VpcId": "vpc-0123456789abcdef0", "CidrBlock": "10.252.20.0/24"},
     "InvalidVpcID.NotFound"),
])
def test_error_codes(ec2: Any, call: str, kw: dict[str, Any], code: str) -> None:
    assert code_of(getattr(ec2, call), **kw) == code


def test_the_default_vpc_and_subnet_are_not_deleted(ec2: Any, cloud: Cloud) -> None:
    assert code_of(ec2.delete_vpc, VpcId=_project_vpc(cloud)) == "DependencyViolation"
    assert len(ec2.describe_vpcs()["Vpcs"]) == 1
    default = subnet_id(cloud.networks.get("default").id)
    assert code_of(ec2.delete_subnet, SubnetId=default) == "InvalidParameterValue"
    assert ec2.describe_subnets(SubnetIds=[default])["Subnets"][0]["DefaultForAz"] is True


def test_subnets_page(ec2: Any, cloud: Cloud) -> None:
    vpc = _project_vpc(cloud)
    made = [subnet(ec2, vpc, f"10.252.{100 + n}.0/24")["SubnetId"] for n in range(6)]
    first = ec2.describe_subnets(MaxResults=5)
    rest = ec2.describe_subnets(MaxResults=5, NextToken=first["NextToken"])
    assert len(first["Subnets"]) == 5 and "NextToken" not in rest
    got = [x["SubnetId"] for x in first["Subnets"] + rest["Subnets"]]
    assert sorted(got) == sorted([subnet_id(cloud.networks.get("default").id), *made])


def test_create_subnet_is_network_create_checked_first(ec2: Any, cloud: Cloud,
                                                       node: FakeNode) -> None:
    vpc = _project_vpc(cloud)
    s = subnet(ec2, vpc, "10.252.30.0/24", "backend")
    assert s["SubnetId"].startswith("subnet-") and s["VpcId"] == vpc
    assert s["AvailableIpAddressCount"] == 253 and s["DefaultForAz"] is False
    net = cloud.networks.get("backend")
    assert subnet_id(net.id) == s["SubnetId"] and net.cidr == "10.252.30.0/24"
    assert net.mode == "nat" and net.bridge in node.network.networks   # made on the host
    # no Name tag: the network is named by its id, and shows no Name tag
    s2 = subnet(ec2, vpc, "10.252.31.0/24")
    net2 = cloud.networks.get(s2["SubnetId"].replace("subnet-", "net-"))
    assert net2.name == net2.id and s2["Tags"] == []
    # a Name tag that is no network name (free text), or one taken: named by its id too
    s3 = subnet(ec2, vpc, "10.252.32.0/24", "my web tier")
    s4 = subnet(ec2, vpc, "10.252.33.0/24", "backend")
    for x, name in ((s3, "my web tier"), (s4, "backend")):
        n = cloud.networks.by_id(x["SubnetId"].replace("subnet-", "net-"))
        assert n.name == n.id and x["Tags"] == [{"Key": "Name", "Value": name}]
    # the VPC's block still covers them all
    assert ec2.describe_vpcs()["Vpcs"][0]["CidrBlock"] == "10.0.0.0/8"
    before = dict(node.network.networks)
    node.host_routes.append(("eth0", "192.168.77.0/24"))
    for cidr, code in (("10.252.30.128/25", "InvalidSubnet.Conflict"),     # overlaps backend
                       (DEFAULT_CIDR, "InvalidSubnet.Conflict"),
                       ("192.168.77.0/24", "InvalidSubnet.Conflict"),      # a host route
                       ("10.252.40.0/33", "InvalidSubnet.Range"),
                       ("10.252.40.5/24", "InvalidSubnet.Range"),
                       ("10.252.40.0/31", "InvalidSubnet.Range"),
                       ("bogus", "InvalidSubnet.Range")):
        assert code_of(ec2.create_subnet, VpcId=vpc, CidrBlock=cidr) == code, cidr
    assert code_of(ec2.create_subnet, VpcId=vpc, CidrBlock="10.252.41.0/24",
                   AvailabilityZone="elsewhere-1b") == "InvalidParameterValue"
    assert code_of(ec2.create_subnet, VpcId=vpc, CidrBlock="10.252.41.0/24",
                   DryRun=True) == "DryRunOperation"
    assert node.network.networks == before                       # nothing made
    got = {x["CidrBlock"] for x in ec2.describe_subnets()["Subnets"]}
    assert got == {DEFAULT_CIDR, "10.252.30.0/24", "10.252.31.0/24", "10.252.32.0/24",
                   "10.252.33.0/24"}
    ec2.delete_subnet(SubnetId=s2["SubnetId"])
    assert net2.bridge not in node.network.networks
    assert code_of(ec2.describe_subnets, SubnetIds=[s2["SubnetId"]]) == "InvalidSubnetID.NotFound"


def the_instance(ec2: Any, iid: str) -> dict[str, Any]:
    return ec2.describe_instances(  # type: ignore[no-any-return]
        InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def test_launch_into_a_subnet_with_a_fixed_address(ec2: Any, cloud: Cloud,
                                                   image: dict[str, Any]) -> None:
    vpc = _project_vpc(cloud)
    s = subnet(ec2, vpc, "10.252.50.0/24", "apps")
    sid = s["SubnetId"]
    r = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1, SubnetId=sid,
                          PrivateIpAddress="10.252.50.77")
    iid = r["Instances"][0]["InstanceId"]
    assert r["Instances"][0]["SubnetId"] == sid and r["Instances"][0]["VpcId"] == vpc
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    inst = the_instance(ec2, iid)
    assert (inst["VpcId"], inst["SubnetId"], inst["PrivateIpAddress"]) == (
        vpc, sid, "10.252.50.77")
    [eni] = inst["NetworkInterfaces"]
    nic = cloud.instances.get(iid).nics[0]
    assert eni["NetworkInterfaceId"] == nic.id and nic.id.startswith("eni-")
    assert (eni["SubnetId"], eni["VpcId"], eni["MacAddress"], eni["PrivateIpAddress"]) == (
        sid, vpc, nic.mac, "10.252.50.77")
    assert eni["Status"] == "in-use" and eni["Attachment"]["DeviceIndex"] == 0
    assert eni["Attachment"]["Status"] == "attached"
    assert eni["PrivateIpAddresses"][0]["Primary"] is True
    # DescribeNetworkInterfaces lists it, by each filter tooling uses
    for filters in ([{"Name": "attachment.instance-id", "Values": [iid]}],
                    [{"Name": "subnet-id", "Values": [sid]}],
                    [{"Name": "private-ip-address", "Values": ["10.252.50.77"]}],
                    [{"Name": "network-interface-id", "Values": [nic.id]}],
                    [{"Name": "vpc-id", "Values": [vpc]},
                     {"Name": "attachment.instance-id", "Values": [iid]}]):
        got = ec2.describe_network_interfaces(Filters=filters)["NetworkInterfaces"]
        assert [e["NetworkInterfaceId"] for e in got] == [nic.id], filters
    [e] = ec2.describe_network_interfaces(NetworkInterfaceIds=[nic.id])["NetworkInterfaces"]
    assert e["Attachment"]["InstanceId"] == iid and e["AvailabilityZone"] == "lxcloud-1a"
    assert e["MacAddress"] == nic.mac and e["Status"] == "in-use"
    # DescribeInstances filters by subnet and VPC
    for name, value in (("subnet-id", sid), ("vpc-id", vpc),
                        ("network-interface.network-interface-id", nic.id)):
        res = ec2.describe_instances(Filters=[{"Name": name, "Values": [value]}])["Reservations"]
        assert [i["InstanceId"] for r in res for i in r["Instances"]] == [iid], name
    # the subnet counts the address, refuses it to another, and is not deleted while in use
    assert ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]["AvailableIpAddressCount"] == 252
    assert code_of(ec2.run_instances, ImageId=image["id"], MinCount=1, MaxCount=1,
                   SubnetId=sid, PrivateIpAddress="10.252.50.77") == "InvalidIPAddress.InUse"
    for ip in ("10.252.51.3", "10.252.50.1", "10.252.50.255", "nonsense"):
        assert code_of(ec2.run_instances, ImageId=image["id"], MinCount=1, MaxCount=1,
                       SubnetId=sid, PrivateIpAddress=ip) == "InvalidParameterValue", ip
    assert code_of(ec2.run_instances, ImageId=image["id"], MinCount=2, MaxCount=2,
                   SubnetId=sid, PrivateIpAddress="10.252.50.78") == "InvalidParameterValue"
    assert code_of(ec2.delete_subnet, SubnetId=sid) == "DependencyViolation"
    ec2.terminate_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)
    gone = the_instance(ec2, iid)
    assert "NetworkInterfaces" not in gone or gone["NetworkInterfaces"] == []
    assert ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["NetworkInterfaces"] == []
    ec2.delete_subnet(SubnetId=sid)
    assert code_of(ec2.describe_subnets, SubnetIds=[sid]) == "InvalidSubnetID.NotFound"


def test_launch_with_network_interfaces(ec2: Any, cloud: Cloud, image: dict[str, Any]) -> None:
    vpc = _project_vpc(cloud)
    front = subnet(ec2, vpc, "10.252.60.0/24", "front")["SubnetId"]
    back = subnet(ec2, vpc, "10.252.61.0/24", "back")["SubnetId"]
    # given out of order: eth<DeviceIndex>
    r = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1, NetworkInterfaces=[
        {"DeviceIndex": 1, "SubnetId": back, "PrivateIpAddress": "10.252.61.9"},
        {"DeviceIndex": 0, "SubnetId": front}])
    iid = r["Instances"][0]["InstanceId"]
    nics = cloud.instances.get(iid).nics
    assert [(n.name, n.network_name) for n in nics] == [("eth0", "front"), ("eth1", "back")]
    assert nics[1].ipv4 == "10.252.61.9"
    inst = the_instance(ec2, iid)
    assert inst["SubnetId"] == front
    enis = sorted(inst["NetworkInterfaces"], key=lambda e: e["Attachment"]["DeviceIndex"])
    assert [(e["SubnetId"], e["Attachment"]["DeviceIndex"], e["NetworkInterfaceId"])
            for e in enis] == [(front, 0, nics[0].id), (back, 1, nics[1].id)]
    got = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id",
                                                    "Values": [iid]}])["NetworkInterfaces"]
    assert {e["NetworkInterfaceId"] for e in got} == {nics[0].id, nics[1].id}
    got = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.device-index",
                                                    "Values": ["1"]}])["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in got] == [nics[1].id]
    # no subnet on an interface: the default one
    r = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1,
                          NetworkInterfaces=[{"DeviceIndex": 0}])
    assert cloud.instances.get(r["Instances"][0]["InstanceId"]).nics[0].network_name == "default"


@pytest.mark.parametrize("kw, code", [
    ({"SubnetId": "SUB", "NetworkInterfaces": [{"DeviceIndex": 0}]}, "InvalidParameterCombination"),
    ({"PrivateIpAddress": "10.252.70.5", "NetworkInterfaces": [{"DeviceIndex": 0}]},
     "InvalidParameterCombination"),
    ({"NetworkInterfaces": [{"DeviceIndex": 1, "SubnetId": "SUB"}]}, "InvalidParameterValue"),
    ({"NetworkInterfaces": [{"DeviceIndex": 0}, {"DeviceIndex": 0}]}, "InvalidParameterValue"),
    ({"NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": "SUB"},
                            {"DeviceIndex": 1, "SubnetId": "SUB"}]}, "InvalidParameterValue"),
    ({"NetworkInterfaces": [{"DeviceIndex": 0, "NetworkInterfaceId": "eni-0123456789abcdef0"}]},
     "UnsupportedOperation"),
    ({"NetworkInterfaces": [{"DeviceIndex": 0, "AssociatePublicIpAddress": True}]},
     "UnsupportedOperation"),
    ({"NetworkInterfaces": [{"DeviceIndex": 0, "SecondaryPrivateIpAddressCount": 2}]},
     "UnsupportedOperation"),
    ({"SubnetId": "subnet-0123456789abcdef0"}, "InvalidSubnetID.NotFound"),
    ({"SubnetId": "subnet-bad"}, "InvalidSubnetID.Malformed"),
    ({"NetworkInterfaces": [{"DeviceIndex": 0, "SubnetId": "subnet-0123456789abcdef0"}]},
     "InvalidSubnetID.NotFound"),
])
def test_bad_launch_networks_are_refused_and_nothing_is_made(
        ec2: Any, cloud: Cloud, image: dict[str, Any], kw: dict[str, Any], code: str) -> None:
    sid = subnet(ec2, _project_vpc(cloud), "10.252.70.0/24", "launchnet")["SubnetId"]
    if kw.get("SubnetId") == "SUB":
        kw["SubnetId"] = sid
    for n in kw.get("NetworkInterfaces", []):
        if n.get("SubnetId") == "SUB":
            n["SubnetId"] = sid
    assert code_of(ec2.run_instances, ImageId=image["id"], MinCount=1, MaxCount=1, **kw) == code
    assert cloud.instances.list() == []


def test_another_projects_subnets_are_not_found(ec2: Any, cloud: Cloud, api: Any,
                                                ec2_server: str, image: dict[str, Any]) -> None:
    mine = subnet(ec2, _project_vpc(cloud), "10.252.80.0/24", "private")["SubnetId"]
    theirs, _ = _other_project(api, ec2_server)
    [their_vpc] = theirs.describe_vpcs()["Vpcs"]
    assert their_vpc["VpcId"] != _project_vpc(cloud) and their_vpc["IsDefault"]
    assert code_of(theirs.describe_vpcs, VpcIds=[_project_vpc(cloud)]) == "InvalidVpcID.NotFound"
    # the cloud's default network is theirs too (shared), as their default subnet
    got = theirs.describe_subnets()["Subnets"]
    assert [(s["CidrBlock"], s["DefaultForAz"], s["VpcId"]) for s in got] == [
        (DEFAULT_CIDR, True, their_vpc["VpcId"])]
    assert code_of(theirs.describe_subnets, SubnetIds=[mine]) == "InvalidSubnetID.NotFound"
    assert code_of(theirs.delete_subnet, SubnetId=mine) == "InvalidSubnetID.NotFound"
    assert code_of(theirs.run_instances, ImageId=image["id"], MinCount=1, MaxCount=1,
                   SubnetId=mine) == "InvalidSubnetID.NotFound"
    # a subnet of theirs may not overlap mine, and they are told only that
    err = pytest.raises(ClientError, theirs.create_subnet, VpcId=their_vpc["VpcId"],
                        CidrBlock="10.252.80.0/25").value.response["Error"]
    assert err["Code"] == "InvalidSubnet.Conflict" and "private" not in err["Message"]
    made = theirs.create_subnet(VpcId=their_vpc["VpcId"], CidrBlock="10.252.81.0/24")["Subnet"]
    assert made["VpcId"] == their_vpc["VpcId"]
    assert [s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "cidr-block", "Values": ["10.252.81.0/24"]}])["Subnets"]] == []


# --- our XML, read by botocore's own parser --------------------------------------------------------
T0 = datetime(2026, 11, 23, 2, 14, tzinfo=UTC)


def _net(**kw: Any) -> Network:
    base: dict[str, Any] = dict(id="net-0123456789abcdef0", name="default", cidr="10.99.0.0/24",
                                gateway="10.99.0.1", bridge="lxcbr0", created=T0)
    return Network(**(base | kw))


def test_vpc_blocks_hold_the_subnets() -> None:
    """A primary block (the default network's private range) and secondary ones, as AWS has."""
    default = _net(cidr="10.99.0.0/24")
    assert vpc_cidrs([]) == ["10.0.0.0/8"]
    assert vpc_cidrs([_net(id="net-1", name="a", cidr="192.168.3.0/24"), default]) == [
        "10.0.0.0/8", "192.168.0.0/16"]
    assert vpc_cidrs([_net(name="a", cidr="172.20.0.0/16"), _net(name="b", cidr="172.31.1.0/24")]
                     ) == ["172.16.0.0/12"]
    assert vpc_cidrs([default, _net(name="c", cidr="100.64.1.0/24"),
                      _net(name="d", cidr="100.64.0.0/16")]) == [
        "10.0.0.0/8", "100.64.0.0/16"]


def test_instance_and_interface_xml_parse_as_boto3_reads_them() -> None:
    ctx = _ctx()
    ctx.caller = type("C", (), {"project_id": "proj-0123456789abcdef0"})()
    nics = [Nic(network="net-0123456789abcdef0", mac="02:00:00:00:00:01", ipv4="10.99.0.5",
                id="eni-0123456789abcdef0", name="eth0"),
            Nic(network="net-00000000000000001", mac="02:00:00:00:00:02", ipv4=None,
                id="eni-00000000000000001", name="eth1")]
    inst = _instance()
    inst.nics = nics
    inst.project_id = "proj-0123456789abcdef0"
    vpc = default_vpc_id("proj-0123456789abcdef0")
    body = {"reservationSet": [{"reservationId": "r-1", "ownerId": "123456789012", "groupSet": [],
                                "instancesSet": [render_instance(ctx, inst, {})]}]}
    i = _parse("DescribeInstances", render("DescribeInstances", body, RID))[
        "Reservations"][0]["Instances"][0]
    assert (i["VpcId"], i["SubnetId"], i["PrivateIpAddress"]) == (
        vpc, "subnet-0123456789abcdef0", "10.99.0.5")
    e0, e1 = i["NetworkInterfaces"]
    assert e0["NetworkInterfaceId"] == "eni-0123456789abcdef0" and e0["Attachment"][
        "DeviceIndex"] == 0 and e0["Attachment"]["AttachTime"] == inst.launched_at
    assert e0["PrivateDnsName"] == "ip-10-99-0-5.lxcloud-1.compute.internal"
    assert e1["Attachment"]["DeviceIndex"] == 1 and "PrivateIpAddress" not in e1  # unconfigured
    assert e1["PrivateIpAddresses"] == [] and e1["SubnetId"] == "subnet-00000000000000001"
    d = _parse("DescribeNetworkInterfaces", render("DescribeNetworkInterfaces", {
        "networkInterfaceSet": [render_network_interface(ctx, inst, nics[0], [], {})]}, RID))
    [e] = d["NetworkInterfaces"]
    assert (e["Attachment"]["InstanceId"], e["AvailabilityZone"], e["MacAddress"]) == (
        inst.id, "lxcloud-1a", "02:00:00:00:00:01")
    assert e["InterfaceType"] == "interface" and e["RequesterManaged"] is False


def test_interface_groups_are_the_instances(ec2: Any, cloud: Cloud, image: dict[str, Any]) -> None:
    web = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    r = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1, NetworkInterfaces=[
        {"DeviceIndex": 0, "Groups": [web]}])
    iid = r["Instances"][0]["InstanceId"]
    inst = the_instance(ec2, iid)
    assert [g["GroupId"] for g in inst["SecurityGroups"]] == [web]
    [eni] = inst["NetworkInterfaces"]
    assert eni["Groups"] == [{"GroupId": web, "GroupName": "web"}]
    [e] = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [web]}])[
        "NetworkInterfaces"]
    assert e["Attachment"]["InstanceId"] == iid and e["Groups"][0]["GroupName"] == "web"
    # without groups named: the project's default group, on the ENI too
    r = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1)
    [eni] = the_instance(ec2, r["Instances"][0]["InstanceId"])["NetworkInterfaces"]
    assert [g["GroupName"] for g in eni["Groups"]] == ["default"]
    # instance-level groups and the interfaces' together, or interfaces naming different ones
    other = ec2.create_security_group(GroupName="db", Description="db")["GroupId"]
    sid = subnet(ec2, _project_vpc(cloud), "10.252.90.0/24", "groupsnet")["SubnetId"]
    for kw in ({"SecurityGroupIds": [web], "NetworkInterfaces": [{"DeviceIndex": 0,
                                                                  "Groups": [other]}]},
               {"NetworkInterfaces": [{"DeviceIndex": 0, "Groups": [web]},
                                      {"DeviceIndex": 1, "Groups": [other], "SubnetId": sid}]}):
        assert code_of(ec2.run_instances, ImageId=image["id"], MinCount=1, MaxCount=1,
                       **kw) == "InvalidParameterCombination"
    assert len(cloud.instances.list()) == 2


def test_tags_on_vpcs_subnets_and_interfaces(ec2: Any, cloud: Cloud, api: Any, ec2_server: str,
                                             image: dict[str, Any]) -> None:
    vpc = _project_vpc(cloud)
    made = ec2.create_subnet(VpcId=vpc, CidrBlock="10.252.95.0/24", TagSpecifications=[
        {"ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": "tagged"},
                                            {"Key": "tier", "Value": "db"}]}])["Subnet"]
    sid = made["SubnetId"]
    assert {"Key": "tier", "Value": "db"} in made["Tags"]
    iid = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1,
                            SubnetId=sid)["Instances"][0]["InstanceId"]
    eni = the_instance(ec2, iid)["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ec2.create_tags(Resources=[vpc, sid, eni], Tags=[{"Key": "env", "Value": "test"}])
    assert {"Key": "env", "Value": "test"} in ec2.describe_vpcs()["Vpcs"][0]["Tags"]
    got = ec2.describe_subnets(Filters=[{"Name": "tag:tier", "Values": ["db"]}])["Subnets"]
    assert [x["SubnetId"] for x in got] == [sid]
    assert {"Key": "env", "Value": "test"} in got[0]["Tags"]
    [e] = ec2.describe_network_interfaces(
        Filters=[{"Name": "tag:env", "Values": ["test"]}])["NetworkInterfaces"]
    assert e["NetworkInterfaceId"] == eni
    types = {t["ResourceId"]: t["ResourceType"] for t in ec2.describe_tags(
        Filters=[{"Name": "key", "Values": ["env"]}])["Tags"]}
    assert types == {vpc: "vpc", sid: "subnet", eni: "network-interface"}
    ec2.delete_tags(Resources=[sid], Tags=[{"Key": "tier"}])
    assert ec2.describe_subnets(Filters=[{"Name": "tag:tier", "Values": ["db"]}])["Subnets"] == []
    # another project's are not found, and theirs to tag are their own
    theirs, _ = _other_project(api, ec2_server)
    for rid, code in ((sid, "InvalidSubnetID.NotFound"), (vpc, "InvalidVpcID.NotFound"),
                      (eni, "InvalidNetworkInterfaceID.NotFound")):
        assert code_of(theirs.create_tags, Resources=[rid],
                       Tags=[{"Key": "x", "Value": "y"}]) == code, rid
    assert code_of(theirs.describe_network_interfaces,
                   NetworkInterfaceIds=[eni]) == "InvalidNetworkInterfaceID.NotFound"
    assert theirs.describe_network_interfaces()["NetworkInterfaces"] == []
    # a subnet's tags go with it
    ec2.terminate_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=FAST)
    ec2.delete_subnet(SubnetId=sid)
    assert sid not in {t["ResourceId"] for t in ec2.describe_tags()["Tags"]}


def test_vpc_and_subnet_attributes(ec2: Any, cloud: Cloud) -> None:
    vpc = _project_vpc(cloud)
    for attr, key, value in (("enableDnsSupport", "EnableDnsSupport", True),
                             ("enableDnsHostnames", "EnableDnsHostnames", True)):
        got = ec2.describe_vpc_attribute(VpcId=vpc, Attribute=attr)
        assert got["VpcId"] == vpc and got[key] == {"Value": value}
    assert code_of(ec2.describe_vpc_attribute, VpcId=vpc,
                   Attribute="enableDnsSupport2") == "InvalidParameterValue"
    assert code_of(ec2.describe_vpc_attribute, VpcId="vpc-0123456789abcdef0",
                   Attribute="enableDnsSupport") == "InvalidVpcID.NotFound"
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})   # as it is
    assert code_of(ec2.modify_vpc_attribute, VpcId=vpc,
                   EnableDnsSupport={"Value": False}) == "UnsupportedOperation"
    sid = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=sid, MapPublicIpOnLaunch={"Value": False})
    assert code_of(ec2.modify_subnet_attribute, SubnetId=sid,
                   MapPublicIpOnLaunch={"Value": True}) == "UnsupportedOperation"
    assert code_of(ec2.modify_subnet_attribute, SubnetId="subnet-0123456789abcdef0",
                   MapPublicIpOnLaunch={"Value": False}) == "InvalidSubnetID.NotFound"
    assert code_of(ec2.modify_subnet_attribute, SubnetId=sid) == "MissingParameter"


def test_the_vpcs_route_table_gateway_and_acl(ec2: Any, cloud: Cloud) -> None:
    """What tooling reads with a VPC (Terraform's aws_vpc: its main route table, default
    network ACL): one each, deterministic, the VPC's."""
    vpc = _project_vpc(cloud)
    [rt] = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                              {"Name": "association.main",
                                               "Values": ["true"]}])["RouteTables"]
    assert rt["RouteTableId"] == "rtb-" + vpc[4:] and rt["VpcId"] == vpc
    assert rt["Associations"][0]["Main"] is True
    [igw] = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}])["InternetGateways"]
    routes = {r["DestinationCidrBlock"]: r["GatewayId"] for r in rt["Routes"]}
    assert routes == {"10.0.0.0/8": "local", "0.0.0.0/0": igw["InternetGatewayId"]}
    assert igw["Attachments"] == [{"VpcId": vpc, "State": "available"}]
    [acl] = ec2.describe_network_acls(Filters=[{"Name": "default", "Values": ["true"]}])[
        "NetworkAcls"]
    assert acl["VpcId"] == vpc and acl["IsDefault"] is True
    assert {(e["RuleNumber"], e["RuleAction"], e["Egress"]) for e in acl["Entries"]} == {
        (100, "allow", False), (32767, "deny", False), (100, "allow", True),
        (32767, "deny", True)}
    sid = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    assert [a["SubnetId"] for a in acl["Associations"]] == [sid]
    assert ec2.describe_route_tables(RouteTableIds=[rt["RouteTableId"]])["RouteTables"]
    assert code_of(ec2.describe_route_tables,
                   RouteTableIds=["rtb-0123456789abcdef0"]) == "InvalidRouteTableID.NotFound"
    assert ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": ["vpc-1"]}])["InternetGateways"] == []


def test_the_metadata_service_names_the_asking_interface(ec2: Any, cloud: Cloud,
                                                         image: dict[str, Any]) -> None:
    """network/interfaces/macs/<mac>/ of the NIC a request comes from: its ENI, subnet and VPC
    ids and its device number (cloud-init configures NICs by it)."""
    from lxcloud.api.metadata.app import meta_data_tree
    from lxcloud.api.metadata.lookup import make_lookup

    vpc = _project_vpc(cloud)
    sid = subnet(ec2, vpc, "10.252.120.0/24", "mdnet")["SubnetId"]
    default = subnet_id(cloud.networks.get("default").id)
    iid = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1, NetworkInterfaces=[
        {"DeviceIndex": 0}, {"DeviceIndex": 1, "SubnetId": sid,
                             "PrivateIpAddress": "10.252.120.7"}])["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    nics = cloud.instances.get(iid).nics
    lookup = make_lookup(cloud)
    for nic, want_subnet, number in ((nics[0], default, 0), (nics[1], sid, 1)):
        assert nic.ipv4 is not None
        view = lookup(nic.ipv4)
        assert view is not None
        node: Any = meta_data_tree(view)
        for name in ("network", "interfaces", "macs", nic.mac):
            node = node.entries[name]
        got = {k: node.entries[k] for k in ("interface-id", "subnet-id", "vpc-id", "device-number")}
        assert got == {"interface-id": nic.id.encode(), "subnet-id": want_subnet.encode(),
                       "vpc-id": vpc.encode(), "device-number": str(number).encode()}


def test_a_subnet_outside_the_primary_block_is_a_secondary_block(ec2: Any, cloud: Cloud) -> None:
    vpc = _project_vpc(cloud)
    subnet(ec2, vpc, "192.168.201.0/24", "home")
    [v] = ec2.describe_vpcs()["Vpcs"]
    assert v["CidrBlock"] == "10.0.0.0/8"
    assert [a["CidrBlock"] for a in v["CidrBlockAssociationSet"]] == [
        "10.0.0.0/8", "192.168.0.0/16"]
    assert len({a["AssociationId"] for a in v["CidrBlockAssociationSet"]}) == 2
    assert ec2.describe_vpcs(Filters=[{"Name": "cidr-block-association.cidr-block",
                                       "Values": ["192.168.0.0/16"]}])["Vpcs"][0]["VpcId"] == vpc
    [rt] = ec2.describe_route_tables()["RouteTables"]
    assert {r["DestinationCidrBlock"] for r in rt["Routes"] if r["GatewayId"] == "local"} == {
        "10.0.0.0/8", "192.168.0.0/16"}
