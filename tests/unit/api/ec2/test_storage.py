"""EC2 storage actions through boto3 over the services and the fake node: volumes (create,
describe with filters, attach with a device, detach, modify, delete), snapshots, images from
instances (pending, then available) and registered from a template file, tags, every error
code; and golden DescribeVolumes / DescribeSnapshots / DescribeInstances-with-a-volume
responses checked with botocore's own parser."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import update

from lxcloud.api.ec2.instances import render_instance
from lxcloud.api.ec2.storage import render_snapshot, render_volume
from lxcloud.api.ec2.xml import render
from lxcloud.core.instance import Disk
from lxcloud.core.models import Attachment, Snapshot, Volume
from lxcloud.db.tables import VolumeRow
from lxcloud.services.cloud import Cloud
from tests.unit.api.ec2.test_golden import RID, _ctx, _golden, _instance, _parse
from tests.unit.conftest import ec2_client, make_tar
from tests.unit.fakes import FakeNode
from tests.waiting import wait_for

GiB = 1024**3
FAST = {"Delay": 0.1, "MaxAttempts": 100}
MISSING_VOL = "vol-0123456789abcdef0"
MISSING_SNAP = "snap-0123456789abcdef0"


def code_of(fn: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as ei:
        fn(**kw)
    return str(ei.value.response["Error"]["Code"])


def idle(cloud: Cloud, *targets: str) -> None:
    wait_for(lambda: not any(cloud.ops.busy(t) for t in targets), 10,
             f"operations on {targets} to end")


def running(ec2: Any, image: dict[str, Any], cloud: Cloud) -> str:
    iid: str = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1)[
        "Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    idle(cloud, iid)
    return iid


def new_volume(ec2: Any, **kw: Any) -> str:
    kw.setdefault("Size", 1)
    vid: str = ec2.create_volume(AvailabilityZone="lxcloud-1a", **kw)["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
    return vid


def the_volume(ec2: Any, vid: str) -> dict[str, Any]:
    return ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]  # type: ignore[no-any-return]


def test_volume_create_attach_detach_modify_delete(ec2: Any, image: dict[str, Any],
                                                   cloud: Cloud, node: FakeNode) -> None:
    r = ec2.create_volume(AvailabilityZone="lxcloud-1a", Size=1, VolumeType="gp3",
                          TagSpecifications=[{"ResourceType": "volume", "Tags": [
                              {"Key": "Name", "Value": "data"}, {"Key": "env", "Value": "prod"}]}])
    vid = r["VolumeId"]
    assert vid.startswith("vol-") and r["Size"] == 1 and r["State"] in ("creating", "available")
    assert r["AvailabilityZone"] == "lxcloud-1a" and r["VolumeType"] == "gp3"
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
    assert node.pool.volumes[vid].size == GiB
    assert cloud.volumes.get(vid).name == "data"      # named after its Name tag
    v = the_volume(ec2, vid)
    assert v["State"] == "available" and v["Attachments"] == [] and v["Encrypted"] is False
    assert {"Key": "env", "Value": "prod"} in v["Tags"]
    other = new_volume(ec2, Size=2)
    for filters, want in (([{"Name": "size", "Values": ["2"]}], [other]),
                          ([{"Name": "tag:env", "Values": ["pr*"]}], [vid]),
                          ([{"Name": "volume-id", "Values": [vid, other]}], [vid, other]),
                          ([{"Name": "status", "Values": ["in-use"]}], [])):
        got = [x["VolumeId"] for x in ec2.describe_volumes(Filters=filters)["Volumes"]]
        assert got == want, filters
    # attached to a running instance under the device asked for, mounted at /media/<id>
    iid = running(ec2, image, cloud)
    a = ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    assert a["State"] == "attaching" and a["Device"] == "/dev/sdf" and a["InstanceId"] == iid
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[vid], WaiterConfig=FAST)
    idle(cloud, iid)
    [att] = the_volume(ec2, vid)["Attachments"]
    assert (att["Device"], att["State"], att["InstanceId"]) == ("/dev/sdf", "attached", iid)
    assert f"/media/{vid}" in node.compute.mounted(iid)
    got = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])
    assert [x["VolumeId"] for x in got["Volumes"]] == [vid]
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    [bdm] = inst["BlockDeviceMappings"]
    assert bdm["DeviceName"] == "/dev/sdf" and bdm["Ebs"]["VolumeId"] == vid
    assert bdm["Ebs"]["Status"] == "attached" and bdm["Ebs"]["AttachTime"] == att["AttachTime"]
    assert code_of(ec2.delete_volume, VolumeId=vid) == "VolumeInUse"
    assert code_of(ec2.attach_volume, VolumeId=vid, InstanceId=iid,
                   Device="/dev/sdg") == "VolumeInUse"
    assert code_of(ec2.attach_volume, VolumeId=other, InstanceId=iid,
                   Device="/dev/sdf") == "InvalidParameterValue"     # the device is taken
    assert code_of(ec2.detach_volume, VolumeId=vid, Device="/dev/sdz") == \
        "InvalidAttachment.NotFound"
    # held inside: the detach fails and nothing changes; forced, it goes
    pid = node.compute.hold(iid, f"/media/{vid}/log", "tail")
    ec2.detach_volume(VolumeId=vid)
    idle(cloud, iid)
    assert the_volume(ec2, vid)["Attachments"][0]["State"] == "attached"
    d = ec2.detach_volume(VolumeId=vid, InstanceId=iid, Force=True)
    assert d["State"] == "detaching" and d["Device"] == "/dev/sdf"
    ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
    node.compute.release(iid, pid)
    assert f"/media/{vid}" not in node.compute.mounted(iid)
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst.get("BlockDeviceMappings", []) == []
    assert code_of(ec2.detach_volume, VolumeId=vid) == "IncorrectState"
    # a shrink is refused as EC2 refuses it; a growth goes through
    m = ec2.modify_volume(VolumeId=vid, Size=3)["VolumeModification"]
    assert (m["OriginalSize"], m["TargetSize"], m["ModificationState"]) == (1, 3, "modifying")
    idle(cloud, vid)
    assert the_volume(ec2, vid)["Size"] == 3 and node.pool.volumes[vid].size == 3 * GiB
    assert code_of(ec2.modify_volume, VolumeId=vid, Size=2) == "InvalidParameterValue"
    assert code_of(ec2.modify_volume, VolumeId=vid, VolumeType="io2") == "UnsupportedOperation"
    ec2.delete_volume(VolumeId=vid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid], WaiterConfig=FAST)
    assert vid not in node.pool.volumes
    assert code_of(ec2.describe_volumes, VolumeIds=[vid]) == "InvalidVolume.NotFound"
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [vid]}])["Tags"] == []


def test_snapshots_and_volumes_from_them(ec2: Any, image: dict[str, Any], cloud: Cloud,
                                         node: FakeNode) -> None:
    vid = new_volume(ec2, Size=2)
    s = ec2.create_snapshot(VolumeId=vid, Description="nightly", TagSpecifications=[
        {"ResourceType": "snapshot", "Tags": [{"Key": "k", "Value": "v"}]}])
    sid = s["SnapshotId"]
    assert sid.startswith("snap-") and s["VolumeId"] == vid and s["VolumeSize"] == 2
    assert s["State"] in ("pending", "completed") and s["Description"] == "nightly"
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST)
    mine = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert [x["SnapshotId"] for x in mine] == [sid]
    assert mine[0]["Progress"] == "100%" and mine[0]["Tags"] == [{"Key": "k", "Value": "v"}]
    for filters, want in (([{"Name": "volume-id", "Values": [vid]}], [sid]),
                          ([{"Name": "status", "Values": ["pending"]}], []),
                          ([{"Name": "description", "Values": ["night*"]}], [sid]),
                          ([{"Name": "tag:k", "Values": ["v"]}], [sid])):
        got = [x["SnapshotId"] for x in ec2.describe_snapshots(Filters=filters)["Snapshots"]]
        assert got == want, filters
    assert ec2.describe_snapshots(OwnerIds=["000000000000"])["Snapshots"] == []
    # a volume from the snapshot: its size by default, larger when asked, never smaller
    copy = ec2.create_volume(AvailabilityZone="lxcloud-1a", SnapshotId=sid)
    assert copy["SnapshotId"] == sid and copy["Size"] == 2
    ec2.get_waiter("volume_available").wait(VolumeIds=[copy["VolumeId"]], WaiterConfig=FAST)
    assert code_of(ec2.create_volume, AvailabilityZone="lxcloud-1a", SnapshotId=sid,
                   Size=1) == "InvalidParameterValue"
    got = ec2.describe_volumes(Filters=[{"Name": "snapshot-id", "Values": [sid]}])["Volumes"]
    assert [x["VolumeId"] for x in got] == [copy["VolumeId"]]
    # a deleted volume's snapshot outlives it (as on EC2)
    ec2.delete_volume(VolumeId=vid)
    ec2.get_waiter("volume_deleted").wait(VolumeIds=[vid], WaiterConfig=FAST)
    assert ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["VolumeId"] == vid
    ec2.delete_snapshot(SnapshotId=sid)
    wait_for(lambda: not cloud.snapshots.list(ids=[sid]), 10, "the snapshot to go")
    assert code_of(ec2.describe_snapshots, SnapshotIds=[sid]) == "InvalidSnapshot.NotFound"
    assert code_of(ec2.delete_snapshot, SnapshotId=sid) == "InvalidSnapshot.NotFound"
    # a root snapshot is no EBS snapshot: not seen here
    iid = running(ec2, image, cloud)
    from lxcloud.drivers.storage.base import SnapshotOf

    root, _ = cloud.snapshots.create(SnapshotOf.ROOT, iid)
    idle(cloud, iid)
    assert root.id not in [x["SnapshotId"] for x in ec2.describe_snapshots()["Snapshots"]]
    assert code_of(ec2.describe_snapshots, SnapshotIds=[root.id]) == "InvalidSnapshot.NotFound"


def test_create_image_is_pending_then_available_and_launches(
        ec2: Any, image: dict[str, Any], cloud: Cloud, node: FakeNode,
        monkeypatch: pytest.MonkeyPatch) -> None:
    iid = running(ec2, image, cloud)
    gate = threading.Event()
    export = node.export_root

    def slow_export(*a: Any, **kw: Any) -> int:
        gate.wait(10)
        return export(*a, **kw)

    monkeypatch.setattr(node, "export_root", slow_export)
    ami = ec2.create_image(InstanceId=iid, Name="golden", Description="made here",
                           NoReboot=True, TagSpecifications=[
                               {"ResourceType": "image", "Tags": [{"Key": "v", "Value": "1"}]}])[
        "ImageId"]
    try:
        [img] = ec2.describe_images(ImageIds=[ami])["Images"]
        assert img["State"] == "pending" and img["Name"] == "golden"
        pend = ec2.describe_images(Filters=[{"Name": "state", "Values": ["pending"]}])["Images"]
        assert [i["ImageId"] for i in pend] == [ami]
        assert code_of(ec2.run_instances, ImageId=ami, MinCount=1, MaxCount=1) == \
            "InvalidAMIID.NotFound"
    finally:
        gate.set()
    ec2.get_waiter("image_available").wait(ImageIds=[ami], WaiterConfig=FAST)
    [img] = ec2.describe_images(ImageIds=[ami])["Images"]
    assert img["State"] == "available" and img["Description"] == "made here"
    assert img["Tags"] == [{"Key": "v", "Value": "1"}]
    new = running_from(ec2, ami)
    assert ec2.describe_instances(InstanceIds=[new])["Reservations"][0]["Instances"][0][
        "ImageId"] == ami
    assert code_of(ec2.create_image, InstanceId=iid, Name="golden") == "InvalidAMIName.Duplicate"
    assert code_of(ec2.create_image, InstanceId="i-0123456789abcdef0", Name="xyz") == \
        "InvalidInstanceID.NotFound"
    assert code_of(ec2.create_image, InstanceId=iid, Name="bad name!") == "InvalidParameterValue"
    # tags on images, volumes and snapshots alike
    vid = new_volume(ec2)
    sid = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
    ec2.create_tags(Resources=[ami, vid, sid], Tags=[{"Key": "team", "Value": "blue"}])
    tags = ec2.describe_tags(Filters=[{"Name": "key", "Values": ["team"]}])["Tags"]
    assert sorted((t["ResourceId"], t["ResourceType"]) for t in tags) == sorted(
        [(ami, "image"), (vid, "volume"), (sid, "snapshot")])
    assert the_volume(ec2, vid)["Tags"] == [{"Key": "team", "Value": "blue"}]
    ec2.delete_tags(Resources=[vid, sid], Tags=[{"Key": "team"}])
    tags = ec2.describe_tags(Filters=[{"Name": "key", "Values": ["team"]}])["Tags"]
    assert [t["ResourceId"] for t in tags] == [ami]
    assert code_of(ec2.create_tags, Resources=[MISSING_VOL], Tags=[{"Key": "a", "Value": "b"}]) \
        == "InvalidVolume.NotFound"
    assert code_of(ec2.create_tags, Resources=[MISSING_SNAP], Tags=[{"Key": "a", "Value": "b"}]) \
        == "InvalidSnapshot.NotFound"


def test_a_failed_create_image_leaves_nothing(ec2: Any, image: dict[str, Any], cloud: Cloud,
                                              node: FakeNode,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from lxcloud.core.errors import DriverError

    iid = running(ec2, image, cloud)

    def broken_export(*a: Any, **kw: Any) -> int:
        raise DriverError("the disk is on fire")

    monkeypatch.setattr(node, "export_root", broken_export)
    ami = ec2.create_image(InstanceId=iid, Name="doomed", TagSpecifications=[
        {"ResourceType": "image", "Tags": [{"Key": "v", "Value": "1"}]}])["ImageId"]
    idle(cloud, iid)
    assert code_of(ec2.describe_images, ImageIds=[ami]) == "InvalidAMIID.NotFound"
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [ami]}])["Tags"] == []
    assert not list(cloud.images.store.dir.glob(f"{ami}*"))


def running_from(ec2: Any, ami: str) -> str:
    iid: str = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    return iid


def test_register_image_from_a_template_file(ec2: Any, cloud: Cloud, ec2_server: str,
                                             tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "t.tar")
    ami = ec2.register_image(Name="from-file", ImageLocation=str(tar), Description="registered",
                             TagSpecifications=[{"ResourceType": "image", "Tags": [
                                 {"Key": "src", "Value": "file"}]}])["ImageId"]
    [img] = ec2.describe_images(ImageIds=[ami])["Images"]
    assert img["State"] == "available" and img["Description"] == "registered"
    assert img["Tags"] == [{"Key": "src", "Value": "file"}]
    assert code_of(ec2.register_image, Name="badtags", ImageLocation=str(tar), TagSpecifications=[
        {"ResourceType": "image", "Tags": [{"Key": "aws:x", "Value": "y"}]}]) == \
        "InvalidParameterValue"
    assert ec2.describe_images(Filters=[{"Name": "name", "Values": ["badtags"]}])["Images"] == []
    assert tar.exists()          # the file is left as it was
    hostile = tmp_path / "evil.tar"
    make_tar(hostile, {"../../etc/evil": b"x"})
    assert code_of(ec2.register_image, Name="evil", ImageLocation=str(hostile)) == \
        "InvalidParameterValue"
    assert code_of(ec2.register_image, Name="rel", ImageLocation="t.tar") == \
        "InvalidParameterValue"
    assert code_of(ec2.register_image, Name="none", ImageLocation=str(tmp_path / "no.tar")) == \
        "InvalidParameterValue"
    assert code_of(ec2.register_image, Name="nolocation") == "MissingParameter"
    assert [i["Name"] for i in ec2.describe_images()["Images"]].count("evil") == 0
    # admins only
    cloud.accounts.create_project("p1")
    user, _token = cloud.accounts.create_user("bob", "p1")
    key = cloud.accounts.credentials("bob")
    bob = ec2_client(ec2_server, key.access_key_id, key.secret_access_key)
    assert code_of(bob.register_image, Name="bobs", ImageLocation=str(tar)) == \
        "UnauthorizedOperation"


def test_storage_error_codes(ec2: Any, image: dict[str, Any], cloud: Cloud) -> None:
    for fn, kw in ((ec2.describe_volumes, {"VolumeIds": ["vol-xyz"]}),
                   (ec2.delete_volume, {"VolumeId": "vol-1"}),
                   (ec2.attach_volume, {"VolumeId": "volume-1", "InstanceId": "i-0123456789abcdef0",
                                        "Device": "/dev/sdf"}),
                   (ec2.create_snapshot, {"VolumeId": "vol-XYZ"})):
        assert code_of(fn, **kw) == "InvalidVolumeID.Malformed", kw
    assert code_of(ec2.describe_snapshots, SnapshotIds=["snap-1"]) == "InvalidSnapshotID.Malformed"
    assert code_of(ec2.create_volume, AvailabilityZone="lxcloud-1a", SnapshotId="snap-q") == \
        "InvalidSnapshotID.Malformed"
    assert code_of(ec2.create_image, InstanceId="i-bad", Name="xyz") == \
        "InvalidInstanceID.Malformed"
    assert code_of(ec2.describe_volumes, VolumeIds=[MISSING_VOL]) == "InvalidVolume.NotFound"
    assert code_of(ec2.create_snapshot, VolumeId=MISSING_VOL) == "InvalidVolume.NotFound"
    assert code_of(ec2.create_volume, AvailabilityZone="lxcloud-1a", SnapshotId=MISSING_SNAP) == \
        "InvalidSnapshot.NotFound"
    assert code_of(ec2.create_volume, AvailabilityZone="mars-1a", Size=1) == \
        "InvalidParameterValue"
    assert code_of(ec2.create_volume, AvailabilityZone="lxcloud-1a") == "MissingParameter"
    assert code_of(ec2.create_volume, AvailabilityZone="lxcloud-1a", Size=1,
                   VolumeType="floppy") == "InvalidParameterValue"
    assert code_of(ec2.create_volume, AvailabilityZone="lxcloud-1a", Size=1,
                   DryRun=True) == "DryRunOperation"
    assert code_of(ec2.describe_volumes, Filters=[{"Name": "colour", "Values": ["x"]}]) == \
        "InvalidParameterValue"
    assert ec2.describe_volumes()["Volumes"] == []     # nothing made by any of the above
    vid = new_volume(ec2)
    iid = running(ec2, image, cloud)
    assert code_of(ec2.attach_volume, VolumeId=vid, InstanceId="i-0123456789abcdef0",
                   Device="/dev/sdf") == "InvalidInstanceID.NotFound"
    assert code_of(ec2.attach_volume, VolumeId=vid, InstanceId=iid, Device="sdf!") == \
        "InvalidParameterValue"
    assert code_of(ec2.attach_volume, VolumeId=vid, InstanceId=iid, Device="/dev/sdf",
                   DryRun=True) == "DryRunOperation"
    with cloud.db.session() as s:    # a volume of another zone than the instance's
        s.execute(update(VolumeRow).where(VolumeRow.id == vid).values(zone="lxcloud-1b"))
    assert code_of(ec2.attach_volume, VolumeId=vid, InstanceId=iid, Device="/dev/sdf") == \
        "InvalidVolume.ZoneMismatch"
    assert the_volume(ec2, vid)["State"] == "available"


def test_a_volume_busy_or_not_ready_is_incorrect_state(ec2: Any, image: dict[str, Any],
                                                       cloud: Cloud, node: FakeNode,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    iid = running(ec2, image, cloud)
    gate = threading.Event()
    make, snap = node.create_volume, node.create_snapshot

    def slow_make(*a: Any, **kw: Any) -> Any:
        gate.wait(10)
        return make(*a, **kw)

    def slow_snap(*a: Any, **kw: Any) -> Any:
        gate.wait(10)
        return snap(*a, **kw)

    monkeypatch.setattr(node, "create_volume", slow_make)
    monkeypatch.setattr(node, "create_snapshot", slow_snap)
    try:
        vid = ec2.create_volume(AvailabilityZone="lxcloud-1a", Size=1)["VolumeId"]
        assert the_volume(ec2, vid)["State"] == "creating"
        assert code_of(ec2.attach_volume, VolumeId=vid, InstanceId=iid, Device="/dev/sdf") == \
            "IncorrectState"
        assert code_of(ec2.delete_volume, VolumeId=vid) == "IncorrectState"
        gate.set()
        ec2.get_waiter("volume_available").wait(VolumeIds=[vid], WaiterConfig=FAST)
        gate.clear()
        sid = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
        assert code_of(ec2.delete_volume, VolumeId=vid) == "IncorrectState"   # being snapshotted
        assert code_of(ec2.delete_snapshot, SnapshotId=sid) == "IncorrectState"
    finally:
        gate.set()
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[sid], WaiterConfig=FAST)


# --- golden responses
T0 = datetime(2026, 11, 23, 2, 14, 0, 123000, tzinfo=UTC)
VID = "vol-0123456789abcdef0"
IID = "i-0abcdef1234567890"


def _volume() -> Volume:
    return Volume(id=VID, name="data", project_id="proj-0123456789abcdef0", pool="default",
                  size=8 * GiB, state="in-use", shared=False, zone="lxcloud-1a",
                  volume_type="gp3", created=T0, updated=T0, snapshot_id="snap-0fedcba9876543210",
                  attachments=[Attachment(volume_id=VID, instance_id=IID, path=f"/media/{VID}",
                                          device="/dev/sdf", state="attached", created=T0)])


def _bodies() -> dict[str, tuple[str, dict[str, Any]]]:
    snap = Snapshot(id="snap-0fedcba9876543210", name="snap0", of_kind="volume", target_id=VID,
                    pool="default", project_id="proj-0123456789abcdef0", size=8 * GiB,
                    state="completed", description="nightly", created=T0)
    inst = _instance()
    inst.disks = [Disk(pool="default"), Disk(pool="default", name=VID, size=8 * GiB,
                                             path=f"/media/{VID}", device="/dev/sdf")]
    ctx = _ctx()
    ctx.caller = None
    ctx.cloud.volumes = type("V", (), {"list": staticmethod(lambda caller: [_volume()])})
    return {
        "DescribeVolumes": ("DescribeVolumes", {"volumeSet": [
            render_volume(_volume(), {"Name": "data"})]}),
        "DescribeSnapshots": ("DescribeSnapshots", {"snapshotSet": [
            render_snapshot(snap, {"k": "v"})]}),
        "DescribeInstancesWithVolume": ("DescribeInstances", {"reservationSet": [
            {"reservationId": "r-0123456789abcdef0", "ownerId": "123456789012", "groupSet": [],
             "instancesSet": [render_instance(ctx, inst, {})]}]}),
    }


@pytest.mark.parametrize("name", sorted(_bodies()))
def test_golden_storage_response(name: str) -> None:
    action, body = _bodies()[name]
    data = render(action, body, RID)
    assert data == _golden(name, data), f"{name} changed: rerun with LXCLOUD_REGEN_GOLDEN=1 if meant"
    assert _parse(action, data)["ResponseMetadata"]["RequestId"] == RID


def test_golden_storage_parses_into_what_boto3_users_read() -> None:
    b = _bodies()
    [v] = _parse("DescribeVolumes", render("DescribeVolumes", b["DescribeVolumes"][1], RID))[
        "Volumes"]
    assert v["VolumeId"] == VID and v["Size"] == 8 and v["State"] == "in-use"
    assert v["CreateTime"] == T0 and v["MultiAttachEnabled"] is False
    assert v["Attachments"] == [{"VolumeId": VID, "InstanceId": IID, "Device": "/dev/sdf",
                                 "State": "attached", "AttachTime": T0,
                                 "DeleteOnTermination": False}]
    [s] = _parse("DescribeSnapshots", render("DescribeSnapshots", b["DescribeSnapshots"][1],
                                             RID))["Snapshots"]
    assert s["State"] == "completed" and s["VolumeSize"] == 8 and s["StartTime"] == T0
    assert s["Tags"] == [{"Key": "k", "Value": "v"}] and len(s["OwnerId"]) == 12
    d = _parse("DescribeInstances", render("DescribeInstances",
                                           b["DescribeInstancesWithVolume"][1], RID))
    [bdm] = d["Reservations"][0]["Instances"][0]["BlockDeviceMappings"]
    assert bdm == {"DeviceName": "/dev/sdf", "Ebs": {"VolumeId": VID, "Status": "attached",
                                                     "DeleteOnTermination": False,
                                                     "AttachTime": T0}}
