"""boto3 and the aws CLI drive the default VPC on a real `lxcloud up`: the default VPC and its
subnet looked up as configuration tools do, a subnet made (a real bridge network), a real busybox
container launched into it with a fixed PrivateIpAddress (seen inside, and by the metadata
service), a second one with two network interfaces reaching it by ping over the subnet, their ENIs
in DescribeNetworkInterfaces and DescribeInstances, DeleteSubnet refused while in use, then
allowed (the bridge gone); and the README's VPC section run as written."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import LXCLOUD, Cloud, free_port, run_readme
from tests.e2e.test_readme_walkthrough import blocks
from tests.subnets import free_subnet

AWS = str(Path(LXCLOUD).parent / "aws")
WAIT = {"Delay": 0.5, "MaxAttempts": 240}
SECTION = "## EC2: the default VPC, its subnets and network interfaces"


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    base = Path(tempfile.mkdtemp(prefix="lxcloud-ec2vpc-", dir="/tmp"))
    os.chmod(base, 0o755)
    c = Cloud(data_dir=base / "data", port=free_port())
    c.data_dir.mkdir()
    (c.data_dir / "config.json").write_text(json.dumps({"default_pool_size": "2GiB"}))
    try:
        c.start()
        c.cli("image", "build", "busybox")
        yield c
    finally:
        c.stop()
        subprocess.run([LXCLOUD, "purge", "--yes"], env=c.env, capture_output=True, timeout=300)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def creds(cloud: Cloud) -> dict[str, str]:
    return cloud.json("user", "credentials", "admin")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def ec2(creds: dict[str, str]) -> Any:
    return boto3.client("ec2", endpoint_url=creds["endpoint_url"], region_name=creds["region"],
                        aws_access_key_id=creds["access_key_id"],
                        aws_secret_access_key=creds["secret_access_key"])


@pytest.fixture(scope="module")
def aws(creds: dict[str, str]) -> Iterator[Any]:
    """The aws CLI with a profile in files, as a user would configure it."""
    home = Path(tempfile.mkdtemp(prefix="awscfg-"))
    (home / "credentials").write_text(
        f"[lx]\naws_access_key_id = {creds['access_key_id']}\n"
        f"aws_secret_access_key = {creds['secret_access_key']}\n")
    (home / "config").write_text(f"[profile lx]\nregion = {creds['region']}\noutput = json\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
               AWS_CONFIG_FILE=str(home / "config"))

    def run(*args: str, check: bool = True) -> Any:
        cp = subprocess.run([AWS, "--profile", "lx", "--endpoint-url", creds["endpoint_url"],
                             "ec2", *args], env=env, capture_output=True, text=True, timeout=120)
        if check and cp.returncode != 0:
            raise AssertionError(f"aws ec2 {' '.join(args)}: {cp.stderr}")
        return json.loads(cp.stdout) if cp.returncode == 0 and cp.stdout.strip() else cp
    yield run
    shutil.rmtree(home, ignore_errors=True)


def inside(cloud: Cloud, iid: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cloud.cli("exec", iid, "--", "sh", "-c", script, check=check)


def code_of(fn: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as ei:
        fn(**kw)
    return str(ei.value.response["Error"]["Code"])


def bridge_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def test_default_vpc_subnet_launch_enis_and_delete(aws: Any, ec2: Any, cloud: Cloud) -> None:
    # what tooling looks up before it launches: the account's default VPC, its default subnet
    attrs = aws("describe-account-attributes")["AccountAttributes"]
    values = {a["AttributeName"]: [v["AttributeValue"] for v in a["AttributeValues"]]
              for a in attrs}
    assert values["supported-platforms"] == ["VPC"]
    [vpc] = values["default-vpc"]
    [v] = aws("describe-vpcs", "--filters", "Name=isDefault,Values=true")["Vpcs"]
    assert v["VpcId"] == vpc and v["IsDefault"] is True and v["State"] == "available"
    [default] = aws("describe-subnets", "--filters", f"Name=vpc-id,Values={vpc}",
                    "Name=default-for-az,Values=true")["Subnets"]
    default_net = cloud.json("network", "show", "default")
    assert isinstance(default_net, dict)
    assert default["CidrBlock"] == default_net["subnet"]
    assert default["SubnetId"] == "subnet-" + default_net["id"].split("-", 1)[1]
    assert ipaddress.ip_network(default["CidrBlock"]).subnet_of(
        ipaddress.ip_network(v["CidrBlock"]))                           # type: ignore[arg-type]
    assert default["AvailabilityZone"] == "lxcloud-1a" and default["State"] == "available"
    dns = aws("describe-vpc-attribute", "--vpc-id", vpc, "--attribute", "enableDnsSupport")
    assert dns["EnableDnsSupport"] == {"Value": True}
    [main] = aws("describe-route-tables", "--filters", f"Name=vpc-id,Values={vpc}",
                 "Name=association.main,Values=true")["RouteTables"]
    assert {"DestinationCidrBlock": v["CidrBlock"], "GatewayId": "local", "State": "active",
            "Origin": "CreateRouteTable"} in main["Routes"]

    # a subnet of its own: a real network, its bridge on the host
    cidr = free_subnet()
    net = ipaddress.ip_network(cidr)
    fixed = str(net.network_address + 10)
    made = aws("create-subnet", "--vpc-id", vpc, "--cidr-block", cidr, "--tag-specifications",
               "ResourceType=subnet,Tags=[{Key=Name,Value=e2e-apps}]")["Subnet"]
    sid = made["SubnetId"]
    aws("wait", "subnet-available", "--subnet-ids", sid)       # the CLI's own waiters
    aws("wait", "vpc-available", "--vpc-ids", vpc)
    shown = cloud.json("network", "show", "e2e-apps")
    assert isinstance(shown, dict) and shown["subnet"] == cidr
    assert bridge_exists(shown["bridge"])
    assert made["AvailableIpAddressCount"] == 253 and made["DefaultForAz"] is False
    assert code_of(ec2.create_subnet, VpcId=vpc, CidrBlock=cidr) == "InvalidSubnet.Conflict"
    assert code_of(ec2.create_subnet, VpcId=vpc, CidrBlock="10.0.0.0/33") == "InvalidSubnet.Range"

    ami = aws("describe-images", "--owners", "self",
              "--filters", "Name=name,Values=busybox")["Images"][0]["ImageId"]
    a = aws("run-instances", "--image-id", ami, "--instance-type", "t3.nano", "--count", "1",
            "--subnet-id", sid, "--private-ip-address", fixed)["Instances"][0]["InstanceId"]
    # a second with two interfaces: the default subnet (eth0) and this one (eth1)
    b = ec2.run_instances(ImageId=ami, InstanceType="t3.nano", MinCount=1, MaxCount=1,
                          NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": default["SubnetId"]},
                                             {"DeviceIndex": 1, "SubnetId": sid}]
                          )["Instances"][0]["InstanceId"]
    try:
        ec2.get_waiter("instance_running").wait(InstanceIds=[a, b], WaiterConfig=WAIT)
        ia = aws("describe-instances", "--instance-ids", a)["Reservations"][0]["Instances"][0]
        assert (ia["VpcId"], ia["SubnetId"], ia["PrivateIpAddress"]) == (vpc, sid, fixed)
        [eni_a] = ia["NetworkInterfaces"]
        assert eni_a["SubnetId"] == sid and eni_a["PrivateIpAddress"] == fixed
        assert eni_a["Attachment"]["DeviceIndex"] == 0 and eni_a["Status"] == "in-use"
        # the address and MAC are the container's own, and the metadata service says so
        mac = inside(cloud, a, "cat /sys/class/net/eth0/address").stdout.strip()
        assert mac == eni_a["MacAddress"]
        assert f"inet {fixed}/24" in inside(cloud, a, "ip -4 addr show eth0").stdout
        md = inside(cloud, a, "wget -qO- http://169.254.169.254/latest/meta-data/local-ipv4")
        assert md.stdout.strip() == fixed
        base = f"http://169.254.169.254/latest/meta-data/network/interfaces/macs/{mac}"
        for key, want in (("subnet-id", sid), ("vpc-id", vpc),
                          ("interface-id", eni_a["NetworkInterfaceId"])):
            assert inside(cloud, a, f"wget -qO- {base}/{key}").stdout.strip() == want, key
        # b's eth1 is on the subnet and reaches a there with real packets
        ib = ec2.describe_instances(InstanceIds=[b])["Reservations"][0]["Instances"][0]
        enis_b = {e["Attachment"]["DeviceIndex"]: e for e in ib["NetworkInterfaces"]}
        assert enis_b[0]["SubnetId"] == default["SubnetId"] and enis_b[1]["SubnetId"] == sid
        b_ip = enis_b[1]["PrivateIpAddress"]
        assert ipaddress.ip_address(b_ip) in net and ib["SubnetId"] == default["SubnetId"]
        assert f"inet {b_ip}/24" in inside(cloud, b, "ip -4 addr show eth1").stdout
        assert inside(cloud, b, f"ping -c 2 -W 2 -I eth1 {fixed}", check=False).returncode == 0
        # DescribeNetworkInterfaces lists the three ENIs, by instance, subnet and address
        got = aws("describe-network-interfaces", "--filters",
                  f"Name=subnet-id,Values={sid}")["NetworkInterfaces"]
        assert sorted(e["Attachment"]["InstanceId"] for e in got) == sorted([a, b])
        got = aws("describe-network-interfaces", "--filters",
                  f"Name=attachment.instance-id,Values={b}")["NetworkInterfaces"]
        assert {e["NetworkInterfaceId"] for e in got} == {e["NetworkInterfaceId"]
                                                          for e in enis_b.values()}
        [by_ip] = ec2.describe_network_interfaces(Filters=[
            {"Name": "private-ip-address", "Values": [fixed]}])["NetworkInterfaces"]
        assert by_ip["NetworkInterfaceId"] == eni_a["NetworkInterfaceId"]
        [by_id] = ec2.describe_network_interfaces(
            NetworkInterfaceIds=[eni_a["NetworkInterfaceId"]])["NetworkInterfaces"]
        assert by_id["Attachment"]["InstanceId"] == a and by_id["MacAddress"] == mac
        assert code_of(ec2.run_instances, ImageId=ami, MinCount=1, MaxCount=1, SubnetId=sid,
                       PrivateIpAddress=fixed) == "InvalidIPAddress.InUse"
        free = aws("describe-subnets", "--subnet-ids", sid)["Subnets"][0]
        assert free["AvailableIpAddressCount"] == 251
        # in use: refused, and nothing changes
        err = aws("delete-subnet", "--subnet-id", sid, check=False)
        assert "DependencyViolation" in err.stderr
        assert bridge_exists(shown["bridge"])
    finally:
        ec2.terminate_instances(InstanceIds=[a, b])
        ec2.get_waiter("instance_terminated").wait(InstanceIds=[a, b], WaiterConfig=WAIT)
    aws("delete-subnet", "--subnet-id", sid)
    assert not bridge_exists(shown["bridge"])
    assert "InvalidSubnetID.NotFound" in aws("describe-subnets", "--subnet-ids", sid,
                                             check=False).stderr
    assert [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]] == [default["SubnetId"]]


def test_readme_vpc_section_runs_as_written(cloud: Cloud, home: Path) -> None:
    (script,) = blocks("sh", SECTION)
    for step in ("describe-vpcs", "default-for-az", "create-subnet", "--private-ip-address",
                 "describe-network-interfaces", "delete-subnet"):
        assert step in script, step
    cidr = re.search(r"--cidr-block (\S+)", script)
    assert cidr is not None
    from lxcloud.drivers.network.bridge import host_networks
    wanted = ipaddress.ip_network(cidr.group(1))
    assert not any(wanted.overlaps(ipaddress.ip_network(n, strict=False))
                   for n in host_networks()), f"{wanted} is used on this host"
    sh = run_readme(script, cloud, home, timeout=600)
    said = f"exit {sh.returncode}\n{sh.stdout}\n{sh.stderr}"
    assert sh.returncode == 0, said
    assert re.search(r"\bvpc-[0-9a-f]{17}\b", sh.stdout) and "VPC" in sh.stdout, said
    fixed = str(wanted.network_address + 10)
    assert f"inet {fixed}/" in sh.stdout, said                      # seen inside
    assert re.search(rf"^eni-[0-9a-f]{{17}}\s+subnet-[0-9a-f]{{17}}\s+{re.escape(fixed)}\s",
                     sh.stdout, re.M), said
    assert "DependencyViolation" in sh.stderr, said                 # refused while in use
    # it cleaned up after itself
    assert cloud.json("list") == []
    assert [n["name"] for n in cloud.json("network", "list")] == ["default"]  # type: ignore[union-attr,index]
