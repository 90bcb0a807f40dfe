"""boto3 and the aws CLI drive storage on a real `lxcloud up`: a volume made, hot-attached to a
running container under /dev/sdf (its files seen inside at /media/<vol-id>), snapshotted,
detached, a volume made from the snapshot holding the data, volumes deleted; an image made from
a running instance (pending, then available) and launched; tags on volumes, snapshots and images;
the error codes of bad and unknown ids."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import LXCLOUD, Cloud, running_cloud
from tests.waiting import wait_for

AWS = str(Path(LXCLOUD).parent / "aws")
WAIT = {"Delay": 0.5, "MaxAttempts": 240}


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    # a small default pool: volumes need one that enforces sizes, and this one is ours alone
    with running_cloud("lxcloud-ec2st-", {"default_pool_size": "4GiB"}) as c:
        c.cli("image", "build", "busybox")
        yield c


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
    """A shell script run inside the instance through lxcloud's exec (REST)."""
    return cloud.cli("exec", iid, "--", "sh", "-c", script, check=check)


def code_of(fn: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as ei:
        fn(**kw)
    return str(ei.value.response["Error"]["Code"])


def attached(ec2: Any, vid: str) -> bool:
    atts = ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["Attachments"]
    return bool(atts) and atts[0]["State"] == "attached"


def launch(aws: Any, ec2: Any, ami: str, name: str) -> str:
    res = aws("run-instances", "--image-id", ami, "--instance-type", "t3.nano", "--count", "1",
              "--tag-specifications", f"ResourceType=instance,Tags=[{{Key=Name,Value={name}}}]")
    iid = str(res["Instances"][0]["InstanceId"])
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=WAIT)
    return iid


def test_volume_attach_snapshot_restore_delete(aws: Any, ec2: Any, cloud: Cloud) -> None:
    ami = aws("describe-images", "--owners", "self",
              "--filters", "Name=name,Values=busybox")["Images"][0]["ImageId"]
    iid = launch(aws, ec2, ami, "vol-host")
    made: list[str] = []
    try:
        vol = aws("create-volume", "--size", "1", "--availability-zone", "lxcloud-1a",
                  "--volume-type", "gp3", "--tag-specifications",
                  "ResourceType=volume,Tags=[{Key=Name,Value=data1},{Key=env,Value=e2e}]")
        vid = vol["VolumeId"]
        made.append(vid)
        assert vol["Size"] == 1 and vol["AvailabilityZone"] == "lxcloud-1a"
        ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=WAIT)
        # hot attach to the running container, under the device name asked for
        a = ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
        assert a["Device"] == "/dev/sdf" and a["State"] == "attaching"
        wait_for(lambda: attached(ec2, vid), 60, f"{vid} attached")
        inside(cloud, iid, f"echo kept-data > /media/{vid}/file && sync")
        assert inside(cloud, iid, f"cat /media/{vid}/file").stdout == "kept-data\n"
        got = aws("describe-volumes", "--filters", f"Name=attachment.instance-id,Values={iid}")
        [v] = got["Volumes"]
        assert v["VolumeId"] == vid and v["State"] == "in-use"
        assert v["Attachments"][0]["Device"] == "/dev/sdf"
        inst = aws("describe-instances", "--instance-ids", iid)["Reservations"][0]["Instances"][0]
        assert [(m["DeviceName"], m["Ebs"]["VolumeId"]) for m in inst["BlockDeviceMappings"]] == \
            [("/dev/sdf", vid)]
        err = aws("delete-volume", "--volume-id", vid, check=False)
        assert "VolumeInUse" in err.stderr
        # a snapshot of it, while attached (the instance is frozen for the moment)
        snap = aws("create-snapshot", "--volume-id", vid, "--description", "e2e")
        sid = snap["SnapshotId"]
        ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=WAIT)
        [s] = aws("describe-snapshots", "--owner-ids", "self",
                  "--filters", f"Name=volume-id,Values={vid}")["Snapshots"]
        assert s["SnapshotId"] == sid and s["State"] == "completed" and s["VolumeSize"] == 1
        # detached: gone from inside
        d = aws("detach-volume", "--volume-id", vid)
        assert d["State"] == "detaching"
        ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=WAIT)
        assert inside(cloud, iid, f"test -e /media/{vid}/file", check=False).returncode != 0
        assert aws("describe-instances", "--instance-ids", iid)["Reservations"][0][
            "Instances"][0].get("BlockDeviceMappings", []) == []
        # a new volume from the snapshot holds the data
        v2 = ec2.create_volume(AvailabilityZone="lxcloud-1a", SnapshotId=sid)["VolumeId"]
        made.append(v2)
        ec2.get_waiter("volume_available").wait(VolumeIds=[v2], WaiterConfig=WAIT)
        assert ec2.describe_volumes(VolumeIds=[v2])["Volumes"][0]["SnapshotId"] == sid
        ec2.attach_volume(VolumeId=v2, InstanceId=iid, Device="/dev/sdg")
        wait_for(lambda: attached(ec2, v2), 60, f"{v2} attached")
        assert inside(cloud, iid, f"cat /media/{v2}/file").stdout == "kept-data\n"
        # grown (a shrink is refused as on EC2)
        m = ec2.modify_volume(VolumeId=vid, Size=2)["VolumeModification"]
        assert m["TargetSize"] == 2
        wait_for(lambda: ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]["Size"] == 2, 60,
                 "the volume grown")
        err = aws("modify-volume", "--volume-id", vid, "--size", "1", check=False)
        assert "InvalidParameterValue" in err.stderr
        # tags on volumes and snapshots, by both clients
        aws("create-tags", "--resources", v2, sid, "--tags", "Key=team,Value=storage")
        tags = ec2.describe_tags(Filters=[{"Name": "key", "Values": ["team"]}])["Tags"]
        assert sorted((t["ResourceId"], t["ResourceType"]) for t in tags) == \
            sorted([(v2, "volume"), (sid, "snapshot")])
        aws("delete-tags", "--resources", sid, "--tags", "Key=team")
        assert [t["ResourceId"] for t in aws("describe-tags", "--filters",
                                             "Name=key,Values=team")["Tags"]] == [v2]
        # detach with Force, delete everything
        ec2.detach_volume(VolumeId=v2, Force=True)
        ec2.get_waiter("volume_available").wait(VolumeIds=[v2], WaiterConfig=WAIT)
        for v in (vid, v2):
            aws("delete-volume", "--volume-id", v)
        ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid, v2], WaiterConfig=WAIT)
        made.clear()
        aws("delete-snapshot", "--snapshot-id", sid)
        wait_for(lambda: not ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"], 60,
                 "the snapshot deleted")
    finally:
        for v in made:
            try:
                if ec2.describe_volumes(VolumeIds=[v])["Volumes"][0]["Attachments"]:
                    ec2.detach_volume(VolumeId=v, Force=True)
                    ec2.get_waiter("volume_available").wait(VolumeIds=[v], WaiterConfig=WAIT)
                ec2.delete_volume(VolumeId=v)
            except ClientError:
                pass
        ec2.terminate_instances(InstanceIds=[iid])
        ec2.get_waiter("instance_terminated").wait(InstanceIds=[iid], WaiterConfig=WAIT)


def test_image_from_a_running_instance_launches(aws: Any, ec2: Any, cloud: Cloud) -> None:
    ami = ec2.describe_images(Filters=[{"Name": "name", "Values": ["busybox"]}])[
        "Images"][0]["ImageId"]
    src = launch(aws, ec2, ami, "img-src")
    made: list[str] = [src]
    new_ami = None
    try:
        inside(cloud, src, "echo from-the-source > /marker && sync")
        new_ami = aws("create-image", "--instance-id", src, "--name", "bb-marked",
                      "--description", "busybox with a marker")["ImageId"]
        [img] = ec2.describe_images(ImageIds=[new_ami])["Images"]
        assert img["State"] in ("pending", "available") and img["Name"] == "bb-marked"
        ec2.get_waiter("image_available").wait(ImageIds=[new_ami], WaiterConfig=WAIT)
        assert aws("describe-images", "--image-ids", new_ami)["Images"][0]["Description"] == \
            "busybox with a marker"
        aws("create-tags", "--resources", new_ami, "--tags", "Key=made,Value=e2e")
        got = aws("describe-images", "--filters", "Name=tag:made,Values=e2e")["Images"]
        assert [i["ImageId"] for i in got] == [new_ami]
        clone = launch(aws, ec2, new_ami, "img-clone")
        made.append(clone)
        assert inside(cloud, clone, "cat /marker").stdout == "from-the-source\n"
        err = aws("create-image", "--instance-id", src, "--name", "bb-marked", check=False)
        assert "InvalidAMIName.Duplicate" in err.stderr
    finally:
        ec2.terminate_instances(InstanceIds=made)
        ec2.get_waiter("instance_terminated").wait(InstanceIds=made, WaiterConfig=WAIT)
        if new_ami:
            ec2.deregister_image(ImageId=new_ami)


def test_storage_error_codes(aws: Any, ec2: Any) -> None:
    for args, code in ((("describe-volumes", "--volume-ids", "vol-xyz"), "InvalidVolumeID.Malformed"),
                       (("describe-volumes", "--volume-ids", "vol-0123456789abcdef0"),
                        "InvalidVolume.NotFound"),
                       (("describe-snapshots", "--snapshot-ids", "snap-nope"),
                        "InvalidSnapshotID.Malformed"),
                       (("delete-snapshot", "--snapshot-id", "snap-0123456789abcdef0"),
                        "InvalidSnapshot.NotFound"),
                       (("create-volume", "--size", "1", "--availability-zone", "mars-1a"),
                        "InvalidParameterValue"),
                       (("create-image", "--instance-id", "i-0123456789abcdef0", "--name", "nope"),
                        "InvalidInstanceID.NotFound"),
                       (("describe-images", "--image-ids", "ami-0123456789abcdef0"),
                        "InvalidAMIID.NotFound")):
        err = aws(*args, check=False)
        assert err.returncode != 0 and code in err.stderr, (args, err.stderr)
    assert code_of(ec2.attach_volume, VolumeId="vol-0123456789abcdef0",
                   InstanceId="i-0123456789abcdef0", Device="/dev/sdf") == "InvalidVolume.NotFound"
    assert code_of(ec2.create_snapshot, VolumeId="vol-1") == "InvalidVolumeID.Malformed"
    assert ec2.describe_volumes()["Volumes"] == []
