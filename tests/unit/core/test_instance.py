"""The instance description: its devices, and its wire form on the node protocol."""

from __future__ import annotations

import json

import pytest

from lxcloud.core.errors import InvalidInput
from lxcloud.core.instance import Disk, File, ImageRef, InstanceSpec, Kind, Nic, nic_from_dict, nic_to_dict
from lxcloud.core.instance_types import Limits, MiB


def spec() -> InstanceSpec:
    return InstanceSpec(
        id="i-0123456789abcdef0", name="web", kind=Kind.CONTAINER,
        image=ImageRef(id="ami-0123456789abcdef0", template="/t/ami.tar.zst", format="tar.zst",
                       halt_signal="SIGUSR1", init="/sbin/init"),
        limits=Limits(vcpus=0.5, memory=64 * MiB, swap=0, pids=128, disk=1 << 30),
        nics=(Nic(network="net-1", mac="02:00:00:00:00:01", ipv4="10.1.2.3", prefix=20,
                  gateway="10.1.0.1", link="lxcbr1", nameservers=("10.1.0.1",)),),
        disks=(Disk(pool="default", size=1 << 30, source="ami-0123456789abcdef0"),),
        first_boot=(File("/root/.ssh/authorized_keys", b"ssh-ed25519 AAAA\n\x00\xff", 0o600),))


def test_wire_form_round_trips_through_json() -> None:
    s = spec()
    wire = json.loads(json.dumps(s.to_dict()))
    assert InstanceSpec.from_dict(wire) == s


def test_nic_address_forms() -> None:
    n = spec().nics[0]
    assert n.interface == "10.1.2.3/20" and n.broadcast == "10.1.15.255"
    bare = Nic(network="net-1", mac="", ipv4=None)
    assert bare.interface is None and bare.broadcast is None
    assert nic_from_dict({**nic_to_dict(n), "unknown": 1}) == n


def test_root_disk() -> None:
    s = spec()
    assert s.root.is_root and s.root.path == "/"
    with pytest.raises(InvalidInput):
        _ = InstanceSpec(id="i-1", name="x", kind=Kind.CONTAINER, image=s.image, limits=s.limits).root
