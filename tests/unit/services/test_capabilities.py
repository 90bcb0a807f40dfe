"""The one check of a description against the drivers' declared capabilities."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lxcloud.core.caps import ComputeCaps, NetworkCaps, NodeCaps, StorageCaps
from lxcloud.core.errors import InvalidCombination
from lxcloud.core.instance import ROOT_DEVICE, BlockDevice, BootOptions, Disk, Kind, Nic
from lxcloud.core.models import Image
from lxcloud.services.capabilities import check_description

CAPS = NodeCaps(compute={Kind.CONTAINER: ComputeCaps()}, storage={"default": StorageCaps()},
                network={"bridge": NetworkCaps()})
NIC = Nic(network="net-1", mac="", ipv4=None)
ROOT = Disk(pool="default", source="ami-1")


def image(**kw: object) -> Image:
    base: dict[str, object] = dict(id="ami-1", name="bb", os="busybox", release="1.35",
                                   architecture="amd64", format="tar", size=1, sha256="0" * 64,
                                   created=datetime.now(UTC))
    base.update(kw)
    return Image(**base)  # type: ignore[arg-type]


def check(**kw: object) -> None:
    args: dict[str, object] = dict(kind=Kind.CONTAINER, image=image(), nics=[NIC], disks=[ROOT])
    args.update(kw)
    check_description(CAPS, **args)  # type: ignore[arg-type]


def test_a_plain_container_passes() -> None:
    check()
    check(block_devices=[BlockDevice(device_name="/dev/sdb", no_device=True),
                         BlockDevice(device_name=ROOT_DEVICE)])


@pytest.mark.parametrize("kw, capability", [
    ({"boot": BootOptions(kernel_id="aki-1")}, "kernel_boot"),
    ({"boot": BootOptions(ramdisk_id="ari-1")}, "kernel_boot"),
    ({"boot": BootOptions(features=frozenset({"hibernation"}))}, "hibernation"),
    ({"boot": BootOptions(features=frozenset({"cpu_options"}))}, "cpu_options"),
    ({"kind": Kind.VM}, "kind"),
    ({"image": image(kind=Kind.VM)}, "image_kind"),
    ({"image": image(format="qcow2")}, "image_format"),
    ({"nics": [NIC, NIC]}, "max_nics"),
    ({"nics": [Nic(network="n", mac="", ipv4=None, driver="ovs")]}, "network_driver"),
    ({"disks": [Disk(pool="fast", source="ami-1")]}, "pool"),
    ({"block_devices": [BlockDevice(device_name="/dev/sdf", size=1 << 30)]}, "block_devices"),
    ({"disks": [Disk(pool="default", size=8 << 30, source="ami-1")], "disk_asked": True}, "quota"),
])
def test_what_the_drivers_cannot_do_is_refused_naming_the_capability(kw: dict[str, object],
                                                                       capability: str) -> None:
    with pytest.raises(InvalidCombination) as ei:
        check(**kw)
    assert ei.value.details["capability"] == capability


def test_a_pool_with_quotas_honours_a_root_size() -> None:
    caps = NodeCaps(compute=CAPS.compute, network=CAPS.network,
                    storage={"default": StorageCaps(quota=True)})
    check_description(caps, kind=Kind.CONTAINER, image=image(), nics=[NIC],
                      disks=[Disk(pool="default", size=8 << 30, source="ami-1")], disk_asked=True,
                      block_devices=[BlockDevice(device_name=ROOT_DEVICE, size=8 << 30)])
    # the type's own limit on a pool that cannot enforce it is no request: it passes
    check(disks=[Disk(pool="default", size=8 << 30, source="ami-1")])


def test_more_vcpus_than_a_host_has_cpus_is_refused() -> None:
    from lxcloud.core.instance_types import get_type, resolve_limits
    from lxcloud.services.capabilities import check_limits

    caps = NodeCaps(compute={Kind.CONTAINER: ComputeCaps(max_vcpus=2)})
    check_limits(caps, Kind.CONTAINER, resolve_limits(get_type("t3.micro"), vcpus=2))
    with pytest.raises(InvalidCombination, match="at most 2 vCPU") as ei:
        check_limits(caps, Kind.CONTAINER, resolve_limits(get_type("t3.micro"), vcpus=2.5))
    assert ei.value.details["capability"] == "max_vcpus"
    # a driver that declares no bound (0) takes any count
    check_limits(CAPS, Kind.CONTAINER, resolve_limits(get_type("t3.micro"), vcpus=64))
