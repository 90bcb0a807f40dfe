"""boto3 and the aws CLI drive a real `lxcloud up` unchanged: a profile, run, describe, tag,
filter, stop, start, reboot, console output, terminate; key pairs and a real ssh login into a Debian
instance; user data that runs; the metadata service answering from inside."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import LXCLOUD, Cloud, free_port
from tests.waiting import wait_for

AWS = str(Path(LXCLOUD).parent / "aws")
DEBIAN_CACHE = Path("/var/cache/lxcloud-test")


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    base = Path(tempfile.mkdtemp(prefix="lxcloud-ec2-", dir="/tmp"))
    os.chmod(base, 0o755)
    c = Cloud(data_dir=base / "data", port=free_port())
    # the periodic reconciler is what sees an instance halt itself: run it often here
    c.data_dir.mkdir()
    (c.data_dir / "config.json").write_text(json.dumps({"reconcile_interval": 2}))
    try:
        c.start()
        c.cli("image", "build", "busybox")
        cached = sorted(DEBIAN_CACHE.glob("debian-bookworm-amd64-base-*.tar*"),
                        key=lambda p: p.stat().st_mtime)
        if cached:
            c.cli("image", "import", str(cached[-1]), "--name", "debian", timeout=600)
        else:
            c.cli("image", "build", "debian", "--name", "debian", timeout=1800)
        yield c
    finally:
        c.stop()
        subprocess.run([LXCLOUD, "purge", "--yes"], env=c.env, capture_output=True, timeout=300)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def creds(cloud: Cloud) -> dict[str, str]:
    return cloud.json("user", "credentials", "admin")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def ec2(cloud: Cloud, creds: dict[str, str]) -> Any:
    return boto3.client("ec2", endpoint_url=creds["endpoint_url"], region_name=creds["region"],
                        aws_access_key_id=creds["access_key_id"],
                        aws_secret_access_key=creds["secret_access_key"])


@pytest.fixture(scope="module")
def aws(cloud: Cloud, creds: dict[str, str]) -> Any:
    """The aws CLI with a profile configured as a user would (files, not environment keys)."""
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


def image_id(ec2: Any, name: str) -> str:
    imgs = ec2.describe_images(Filters=[{"Name": "name", "Values": [name]}])["Images"]
    return str(imgs[0]["ImageId"])


def test_aws_cli_full_cycle(aws: Any, ec2: Any) -> None:
    ami = aws("describe-images", "--owners", "self",
              "--filters", "Name=name,Values=busybox")["Images"][0]["ImageId"]
    res = aws("run-instances", "--image-id", ami, "--instance-type", "t3.nano", "--count", "1",
              "--tag-specifications", "ResourceType=instance,Tags=[{Key=Name,Value=cli-one}]")
    iid = res["Instances"][0]["InstanceId"]
    subprocess.run([AWS, "--version"], check=True, capture_output=True)
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 0.5})
    aws("create-tags", "--resources", iid, "--tags", "Key=stage,Value=test")
    got = aws("describe-instances", "--filters", "Name=tag:stage,Values=test")
    assert [i["InstanceId"] for r in got["Reservations"] for i in r["Instances"]] == [iid]
    assert aws("describe-tags", "--filters", f"Name=resource-id,Values={iid}")["Tags"]
    aws("stop-instances", "--instance-ids", iid)
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig={"Delay": 0.5})
    aws("start-instances", "--instance-ids", iid)
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 0.5})
    aws("reboot-instances", "--instance-ids", iid)
    out = wait_for(lambda: aws("get-console-output", "--instance-id", iid).get("Output"), 30,
                   "console output")
    assert "lxcloud-busybox" in out or out.strip()
    err = aws("start-instances", "--instance-ids", "i-0123456789abcdef0", check=False)
    assert "InvalidInstanceID.NotFound" in err.stderr
    aws("terminate-instances", "--instance-ids", iid)
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig={"Delay": 0.5})
    state = aws("describe-instances", "--instance-ids", iid)["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] == "terminated"


def test_termination_protection_and_shutdown_behaviour(aws: Any, ec2: Any, cloud: Cloud) -> None:
    """Termination protection refuses the aws CLI and lxcloud's own CLI alike; an instance whose
    shutdown behaviour is `terminate` is terminated when its own init halts it, protection or not
    (as on EC2)."""
    ami = image_id(ec2, "busybox")
    res = aws("run-instances", "--image-id", ami, "--instance-type", "t3.nano", "--count", "1",
              "--disable-api-termination",
              "--tag-specifications", "ResourceType=instance,Tags=[{Key=Name,Value=guarded}]")
    iid = res["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 0.5})
    got = aws("describe-instance-attribute", "--instance-id", iid, "--attribute",
              "disableApiTermination")
    assert got["DisableApiTermination"] == {"Value": True}
    err = aws("terminate-instances", "--instance-ids", iid, check=False)
    assert err.returncode != 0 and "OperationNotPermitted" in err.stderr and iid in err.stderr
    refused = cloud.cli("delete", "guarded", "--force", check=False)
    assert refused.returncode != 0 and "may not be terminated" in refused.stdout + refused.stderr
    assert cloud.json("show", "guarded")["state"] == "running"   # type: ignore[index]
    assert aws("get-password-data", "--instance-id", iid)["PasswordData"] == ""
    aws("modify-instance-attribute", "--instance-id", iid,
        "--instance-initiated-shutdown-behavior", "terminate")
    # the instance halts itself; the reconciler sees it and terminates it
    # (poweroff's own exit status means nothing: the halt may kill it before it exits)
    cloud.cli("exec", "guarded", "--", "poweroff", check=False)
    ec2.get_waiter("instance_terminated").wait(
        InstanceIds=[iid], WaiterConfig={"Delay": 0.5, "MaxAttempts": 120})
    gone = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert gone["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
    assert iid not in subprocess.run(["lxc-ls", "-P", str(cloud.data_dir / "containers")],
                                     capture_output=True, text=True).stdout
    # protection off: terminate works again
    other = aws("run-instances", "--image-id", ami, "--instance-type", "t3.nano",
                "--disable-api-termination")["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[other], WaiterConfig={"Delay": 0.5})
    aws("modify-instance-attribute", "--instance-id", other, "--no-disable-api-termination")
    aws("terminate-instances", "--instance-ids", other)
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[other], WaiterConfig={"Delay": 0.5})
    bad = aws("run-instances", "--image-id", "ami-zzz", "--count", "1", check=False)
    assert "InvalidAMIID.Malformed" in bad.stderr


def test_boto3_user_data_metadata_and_errors(ec2: Any, cloud: Cloud) -> None:
    ami = image_id(ec2, "busybox")
    script = "#!/bin/sh\necho hello-$((6*7))\n"
    r = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.nano",
                          UserData=script,
                          TagSpecifications=[{"ResourceType": "instance",
                                              "Tags": [{"Key": "Name", "Value": "ud"}]}])
    iid = r["Instances"][0]["InstanceId"]
    assert r["Instances"][0]["State"]["Name"] in ("pending", "running")
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 0.5})
    # the user data ran once at first boot, its output in the console log
    wait_for(lambda: "hello-42" in (ec2.get_console_output(InstanceId=iid).get("Output") or ""),
             30, "user data output in the console")
    # the metadata service answers, for this instance only
    def meta(path: str) -> str:
        res = cloud.cli("exec", "ud", "--", "wget", "-qO-", f"http://169.254.169.254/latest/{path}",
                        check=False)
        return res.stdout if res.returncode == 0 else ""
    assert wait_for(lambda: meta("meta-data/instance-id"), 20, "metadata") == iid
    desc = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert meta("meta-data/local-ipv4") == desc["PrivateIpAddress"]
    assert meta("meta-data/instance-type") == "t3.nano"
    assert meta("meta-data/ami-id") == ami
    assert meta("meta-data/placement/availability-zone") == "lxcloud-1a"
    assert meta("user-data") == script
    # error codes as a boto3 user meets them
    for call, kw, code in [
        (ec2.describe_instances, {"InstanceIds": ["i-0123456789abcdef0"]}, "InvalidInstanceID.NotFound"),
        (ec2.describe_instances, {"InstanceIds": ["i-123"]}, "InvalidInstanceID.Malformed"),
        (ec2.run_instances, {"ImageId": "ami-0123456789abcdef0", "MinCount": 1, "MaxCount": 1},
         "InvalidAMIID.NotFound"),
        (ec2.run_instances, {"ImageId": ami, "MinCount": 1, "MaxCount": 1, "KernelId": "aki-1"},
         "InvalidParameterCombination"),
        (ec2.run_instances, {"ImageId": image_id(ec2, "debian"), "MinCount": 1, "MaxCount": 1,
                             "InstanceType": "t3.nano"}, "InvalidParameterCombination"),
        (ec2.modify_instance_attribute, {"InstanceId": iid, "InstanceType": {"Value": "t3.micro"}},
         "IncorrectInstanceState"),
        (ec2.copy_snapshot, {"SourceRegion": "lxcloud-1",
                             "SourceSnapshotId": "snap-0123456789abcdef0"}, "UnsupportedOperation"),
        (ec2.run_instances, {"ImageId": ami, "MinCount": 1, "MaxCount": 1, "DryRun": True},
         "DryRunOperation"),
    ]:
        with pytest.raises(ClientError) as ei:
            call(**kw)
        assert ei.value.response["Error"]["Code"] == code, (call, kw)
    ec2.terminate_instances(InstanceIds=[iid])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def test_ssh_into_debian_with_a_created_key_pair(ec2: Any, tmp_path: Path) -> None:
    key = ec2.create_key_pair(KeyName="e2e-key")
    pem = tmp_path / "key.pem"
    pem.write_text(key["KeyMaterial"])
    pem.chmod(0o600)
    with pytest.raises(ClientError) as ei:
        ec2.create_key_pair(KeyName="e2e-key")
    assert ei.value.response["Error"]["Code"] == "InvalidKeyPair.Duplicate"
    r = ec2.run_instances(ImageId=image_id(ec2, "debian"), MinCount=1, MaxCount=1,
                          InstanceType="t3.micro", KeyName="e2e-key")
    iid = r["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig={"Delay": 0.5})
    ip = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
        "PrivateIpAddress"]
    wait_for(lambda: _port_open(ip, 22), 60, "sshd in the Debian instance")
    ssh = ["ssh", "-i", str(pem), "-o", "StrictHostKeyChecking=no", "-o",
           "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
           f"root@{ip}"]
    out = subprocess.run([*ssh, "cat /proc/1/comm; id -u"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["systemd", "0"]
    # another key is refused
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    bad = subprocess.run(["ssh", "-i", str(other), *ssh[3:], "true"], capture_output=True,
                         timeout=60)
    assert bad.returncode != 0
    ec2.terminate_instances(InstanceIds=[iid])
    ec2.delete_key_pair(KeyName="e2e-key")


def test_cli_accounts_and_isolation(cloud: Cloud, ec2: Any, creds: dict[str, str]) -> None:
    cloud.cli("project", "create", "teal")
    made = cloud.json("user", "create", "tess", "--project", "teal")
    assert made["user"]["project"] == "teal" and made["token"]  # type: ignore[index]
    text = cloud.cli("user", "credentials", "tess").stdout
    assert "aws_access_key_id" in text and "[profile tess]" in text
    theirs = cloud.json("user", "credentials", "tess")
    tess = boto3.client("ec2", endpoint_url=creds["endpoint_url"], region_name=creds["region"],
                        aws_access_key_id=theirs["access_key_id"],  # type: ignore[index]
                        aws_secret_access_key=theirs["secret_access_key"])  # type: ignore[index]
    ami = image_id(ec2, "busybox")     # the admin's images are public
    mine = tess.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.nano")
    tid = mine["Instances"][0]["InstanceId"]
    admin_ids = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"]
                 for i in r["Instances"]]
    assert tid not in admin_ids
    for call, kw in [(tess.describe_instances, {"InstanceIds": admin_ids[:1]}),
                     (tess.terminate_instances, {"InstanceIds": admin_ids[:1]})]:
        if not admin_ids:
            break
        with pytest.raises(ClientError) as ei:
            call(**kw)
        assert ei.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    # her REST token works with the CLI and sees only her project
    env_token = made["token"]  # type: ignore[index]
    listed = subprocess.run([LXCLOUD, "--token", env_token, "list", "--json"], env=cloud.env,
                            capture_output=True, text=True, check=True).stdout
    assert [i["id"] for i in json.loads(listed)] == [tid]
    tess.terminate_instances(InstanceIds=[tid])
