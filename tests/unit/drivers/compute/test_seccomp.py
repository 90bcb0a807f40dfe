"""The LXC driver's seccomp profile: liblxc's common rules kept, btrfs subvolume ioctls refused."""

from __future__ import annotations

from pathlib import Path

from lxcloud.core.instance import Disk, ImageRef, InstanceSpec, Kind
from lxcloud.core.instance_types import Limits
from lxcloud.drivers.compute.base import RootfsSpec
from lxcloud.drivers.compute.lxc import BTRFS_SUBVOL_IOCTLS, SECCOMP_FILE, render_config, render_seccomp

COMMON = "2\ndenylist\nreject_force_umount\n[all]\nkexec_load errno 1\n"


def test_profile_keeps_the_common_rules_and_refuses_subvolume_ioctls() -> None:
    text = render_seccomp(COMMON)
    assert text.startswith(COMMON)
    for nr in (0x50009401, 0x5000940E, 0x50009417, 0x50009418):   # linux/btrfs.h
        assert f"ioctl errno 1 [1,{nr:#x},SCMP_CMP_EQ]" in text
    assert len(BTRFS_SUBVOL_IOCTLS) == 4
    assert render_seccomp("").startswith("2\ndenylist\n")          # no common profile installed


def test_config_names_the_profile_after_common_conf() -> None:
    spec = InstanceSpec(id="i-1", name="h", kind=Kind.CONTAINER,
                        image=ImageRef(id="ami-1", template=""),
                        limits=Limits(vcpus=1, memory=64 << 20, swap=0, pids=64, disk=0),
                        disks=(Disk(pool="p", source="ami-1"),))
    lines = render_config(spec, RootfsSpec(kind="dir", path=Path("/pool/instances/i-1")),
                          lxcpath=Path("/lxc"), veth=(), idmap=None, cgroup=2, lxcfs_dir=None,
                          cpus=(0,)).splitlines()
    profile = lines.index(f"lxc.seccomp.profile = /lxc/i-1/{SECCOMP_FILE}")
    assert profile > max(i for i, ln in enumerate(lines) if ln.startswith("lxc.include"))
