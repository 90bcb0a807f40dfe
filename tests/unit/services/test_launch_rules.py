"""A launch's rules live once, in the instance service: REST and EC2 get the same answers (in
their own words), and nothing is written when a rule refuses."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient

from lxcloud.services.cloud import Cloud
from tests.unit.conftest import make_tar
from tests.unit.fakes import FakeNode

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def ec2_code(fn: Any, **kw: Any) -> str:
    with pytest.raises(ClientError) as ei:
        fn(**kw)
    return str(ei.value.response["Error"]["Code"])


def rows(cloud: Cloud) -> int:
    return len(cloud.instances.list(include_terminated=True))


@pytest.mark.parametrize("extra, what", [
    ({"KernelId": "aki-12345678"}, "kernel"),
    ({"RamdiskId": "ari-12345678"}, "ramdisk"),
    ({"BlockDeviceMapping": [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 8}}]}, "/dev/sdf"),
    ({"HibernationOptions": {"Configured": True}}, "hibernation"),
])
def test_what_a_container_cannot_honour_is_refused_before_anything_is_written(
        ec2: Any, image: dict[str, Any], cloud: Cloud, extra: dict[str, Any], what: str) -> None:
    kw = {"BlockDeviceMappings" if k == "BlockDeviceMapping" else k: v for k, v in extra.items()}
    with pytest.raises(ClientError) as ei:
        ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1, **kw)
    err = ei.value.response["Error"]
    assert err["Code"] == "InvalidParameterCombination" and what in err["Message"]
    assert rows(cloud) == 0


def test_a_root_mapping_sizes_the_root_disk_where_the_pool_enforces_it(
        ec2: Any, image: dict[str, Any], cloud: Cloud, node: FakeNode) -> None:
    import dataclasses

    bdm = [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 3}}]
    r = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1, BlockDeviceMappings=bdm)
    iid = r["Instances"][0]["InstanceId"]
    assert cloud.instances.get(iid).limits.disk == 3 << 30
    node.pool.caps = dataclasses.replace(node.pool.caps, quota=False, quota_note="no quotas here")
    cloud.instances.forget_caps()
    with pytest.raises(ClientError) as ei:
        ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1, BlockDeviceMappings=bdm)
    err = ei.value.response["Error"]
    assert err["Code"] == "InvalidParameterCombination" and "size" in err["Message"]
    assert rows(cloud) == 1


def test_a_mapping_that_only_suppresses_a_device_is_fine(ec2: Any, image: dict[str, Any]) -> None:
    r = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1,
                          BlockDeviceMappings=[{"DeviceName": "/dev/sdb", "NoDevice": ""}])
    assert r["Instances"][0]["State"]["Name"] == "pending"


def test_the_least_memory_comes_from_the_image_metadata(api: TestClient, ec2: Any,
                                                        tmp_path: Any, cloud: Cloud) -> None:
    tar = make_tar(tmp_path / "big.tar")
    r = api.post("/api/v1/images", params={"name": "big", "min_memory": "512MiB"},
                 content=tar.read_bytes())
    assert r.status_code == 201 and r.json()["min_memory"] == 512 << 20
    small = api.post("/api/v1/instances", json={"image": "big", "limits": {"memory": "256MiB"}})
    assert small.status_code == 400 and "needs at least 512 MiB" in small.json()["error"]
    assert ec2_code(ec2.run_instances, ImageId=r.json()["id"], MinCount=1, MaxCount=1,
                    InstanceType="t3.micro") == "InvalidParameterCombination"
    assert rows(cloud) == 0
    ok = api.post("/api/v1/instances", json={"image": "big", "instance_type": "t3.small"})
    assert ok.status_code == 202, ok.text


def test_the_quota_holds_for_every_front_end(api: TestClient, ec2: Any, image: dict[str, Any],
                                             cloud: Cloud) -> None:
    cloud.settings.max_instances_per_project = 2
    assert api.post("/api/v1/instances", json={"image": "bb"}).status_code == 202
    assert ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=5)["Instances"]
    r = api.post("/api/v1/instances", json={"image": "bb"})
    assert r.status_code == 429 and r.json()["code"] == "quota_exceeded"
    assert ec2_code(ec2.run_instances, ImageId=image["id"], MinCount=1,
                    MaxCount=1) == "InstanceLimitExceeded"
    assert rows(cloud) == 2


def test_a_taken_name_tag_names_the_instance_by_its_id_even_when_racing(
        ec2: Any, image: dict[str, Any], api: TestClient, node: FakeNode) -> None:
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]}]
    node.gate = threading.Event()
    results: list[dict[str, Any]] = []

    def one() -> None:
        results.append(ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1,
                                         TagSpecifications=tags)["Instances"][0])

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    node.gate.set()
    names = sorted(api.get(f"/api/v1/instances/{i['InstanceId']}").json()["name"] for i in results)
    ids = sorted(i["InstanceId"] for i in results)
    assert len(results) == 4 and names.count("web") == 1
    assert [n for n in names if n != "web"] == [i for i in ids if i in names]
    # REST's own names are strict: a taken one is a conflict
    assert api.post("/api/v1/instances", json={"image": "bb", "name": "web"}).status_code == 409


def test_one_limits_name_and_zoned_timestamps_in_every_answer(api: TestClient, image: Any) -> None:
    made = api.post("/api/v1/instances", json={"image": "bb", "name": "ts",
                                               "limits": {"cpus": 0.5, "memory": "64MiB"}})
    assert made.status_code == 202
    op = api.get(f"/api/v1/operations/{made.json()['operation']['id']}", params={"wait": 5}).json()
    assert op["status"] == "success"
    got = api.get("/api/v1/instances/ts").json()
    listed = api.get("/api/v1/instances").json()[0]
    for inst in (made.json()["instance"], got, listed):
        assert inst["limits"]["cpus"] == 0.5 and "vcpus" not in inst["limits"]
        assert inst["limits"]["memory"] == 64 << 20
        assert ISO_Z.match(inst["created"]), inst["created"]
    assert ISO_Z.match(got["launched_at"]) and got["kind"] == "container"
    assert got["nics"][0]["ipv4"] == got["ipv4"] and got["disks"][0]["name"] == "root"
    op = api.get(f"/api/v1/operations/{got['operation']}").json()
    assert ISO_Z.match(op["created"]) and ISO_Z.match(op["updated"])
    # the launch says where its time went, step by step
    assert {"api.checks", "database.launch", "operation.handoff", "network.dns", "storage.root",
            "compute.define", "compute.start"} <= set(op["result"]["timings"])


def test_the_description_goes_unchanged_to_the_host_and_back_on_modify(
        api: TestClient, image: Any, node: FakeNode, cloud: Cloud) -> None:
    out = api.post("/api/v1/instances", json={"image": "bb", "name": "m", "user_data": "#!/bin/sh\n"}
                   ).json()
    iid = out["instance"]["id"]
    api.get(f"/api/v1/operations/{out['operation']['id']}", params={"wait": 5})
    first = node.requests[iid]
    assert [f.path for f in first.first_boot] == ["/var/lib/lxcloud/user-data"]
    op = api.post(f"/api/v1/instances/{iid}/actions/stop").json()["operation"]
    api.get(f"/api/v1/operations/{op['id']}", params={"wait": 5})
    cloud.instances.modify(iid, instance_type="t3.small")
    again = node.requests[iid]
    assert again.limits.memory == 512 << 20
    assert (again.nics, again.disks, again.first_boot, again.image) == \
        (first.nics, first.disks, first.first_boot, first.image)


def test_launch_and_actions_can_answer_once_their_operation_has_ended(api: TestClient,
                                                                      image: Any) -> None:
    r = api.post("/api/v1/instances", params={"wait": 10}, json={"image": "bb", "name": "w1"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["operation"]["status"] == "success" and body["instance"]["state"] == "running"
    assert body["operation"]["result"]["ipv4"] == body["instance"]["ipv4"]
    iid = body["instance"]["id"]
    stop = api.post(f"/api/v1/instances/{iid}/actions/stop", params={"wait": 10}).json()
    assert stop["operation"]["status"] == "success" and stop["instance"]["state"] == "stopped"
    gone = api.delete(f"/api/v1/instances/{iid}", params={"wait": 10}).json()
    assert gone["operation"]["status"] == "success" and gone["instance"]["state"] == "terminated"
    # without wait: at once, the operation still pending or running
    r = api.post("/api/v1/instances", json={"image": "bb", "name": "w2"}).json()
    assert r["instance"]["state"] == "pending"
    assert api.post("/api/v1/instances", params={"wait": -1},
                    json={"image": "bb"}).status_code == 400


def test_a_waited_answer_shows_the_instance_as_its_operation_left_it(api: TestClient,
                                                                     image: Any) -> None:
    r = api.post("/api/v1/instances", params={"wait": 10}, json={"image": "bb", "name": "a1"})
    body = r.json()
    assert body["instance"] == api.get(f"/api/v1/instances/{body['instance']['id']}").json()
    iid = body["instance"]["id"]
    stop = api.post(f"/api/v1/instances/{iid}/actions/stop", params={"wait": 10}).json()
    assert stop["instance"] == api.get(f"/api/v1/instances/{iid}").json()
    assert stop["instance"]["operation"] == stop["operation"]["id"]


def test_a_listed_instance_is_shown_as_its_own_get_shows_it(api: TestClient, image: Any) -> None:
    for n in ("l1", "l2"):
        api.post("/api/v1/instances", params={"wait": 10}, json={"image": "bb", "name": n})
    listed = api.get("/api/v1/instances").json()
    assert [i["name"] for i in listed] == ["l1", "l2"]
    for item in listed:
        assert item == api.get(f"/api/v1/instances/{item['id']}").json()


def test_more_vcpus_than_the_hosts_have_is_refused_by_every_front_end(
        api: TestClient, ec2: Any, image: dict[str, Any], cloud: Cloud, node: FakeNode) -> None:
    import dataclasses

    node.compute.caps = dataclasses.replace(node.compute.caps, max_vcpus=2)
    cloud.instances._caps = None     # asked again of the node
    r = api.post("/api/v1/instances", json={"image": "bb", "limits": {"cpus": 3}})
    assert r.status_code == 422 and r.json()["code"] == "invalid_combination", r.text
    assert "at most 2 vCPU" in r.json()["error"]
    assert ec2_code(ec2.run_instances, ImageId=image["id"], MinCount=1, MaxCount=1,
                    InstanceType="t3.xlarge") == "InvalidParameterCombination"
    assert rows(cloud) == 0
    # a type within the hosts' CPUs launches; changed to one beyond them, it is refused
    iid = ec2.run_instances(ImageId=image["id"], MinCount=1, MaxCount=1,
                            InstanceType="t3.medium")["Instances"][0]["InstanceId"]
    cloud.ops.wait(cloud.instances.get(iid).operation_id or "", 10)
    ec2.stop_instances(InstanceIds=[iid])
    cloud.ops.wait(cloud.instances.get(iid).operation_id or "", 10)
    assert ec2_code(ec2.modify_instance_attribute, InstanceId=iid,
                    InstanceType={"Value": "t3.xlarge"}) == "InvalidParameterCombination"
    assert cloud.instances.get(iid).instance_type == "t3.medium"
