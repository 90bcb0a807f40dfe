"""The one check of an instance description against what the chosen drivers can do.

Run before any row is written: a combination the drivers cannot honour is refused with one typed
error (core.errors.InvalidCombination, naming the capability), which every front-end maps
(REST 422 invalid_combination, EC2 InvalidParameterCombination). Only capabilities are asked —
never a driver's type or a literal kind.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxcloud.core.caps import ComputeCaps, NodeCaps
from lxcloud.core.errors import InvalidCombination
from lxcloud.core.instance import ROOT_DEVICE, BlockDevice, BootOptions, Disk, Kind, Nic
from lxcloud.core.instance_types import Limits
from lxcloud.core.models import Image


def compute_caps(caps: NodeCaps, kind: Kind) -> ComputeCaps:
    try:
        return caps.compute[kind]
    except KeyError:
        raise InvalidCombination(f"no host here runs {kind} instances", capability="kind",
                                 kind=str(kind)) from None


def check_limits(caps: NodeCaps, kind: Kind, limits: Limits) -> None:
    """InvalidCombination for limits no host can honour: more vCPUs than a host has CPUs (a CPU
    limit beyond them limits nothing, and the CPU weight that comes with it would starve the
    other instances)."""
    most = compute_caps(caps, kind).max_vcpus
    if most and limits.vcpus > most:
        raise InvalidCombination(f"a {kind} instance may have at most {most} vCPU(s) here (the "
                                 f"hosts' CPUs); {limits.vcpus:g} were asked for",
                                 capability="max_vcpus", max_vcpus=most)


def check_description(caps: NodeCaps, *, kind: Kind, image: Image, nics: Sequence[Nic],
                      disks: Sequence[Disk], boot: BootOptions = BootOptions(),
                      block_devices: Sequence[BlockDevice] = (),
                      limits: Limits | None = None, disk_asked: bool = False) -> None:
    """InvalidCombination for the first thing the drivers cannot do; nothing when all is well.
    `disk_asked`: the root disk's size was asked for (not the type's): a pool that cannot
    enforce it refuses it rather than ignoring it silently."""
    cc = compute_caps(caps, kind)
    what = f"a {kind} instance"
    if limits is not None:
        check_limits(caps, kind, limits)
    if image.kind != kind:
        raise InvalidCombination(f"image {image.name!r} is a {image.kind} image: {what} needs a "
                                 f"{kind} image", capability="image_kind", image=image.id)
    if image.format not in cc.image_formats:
        raise InvalidCombination(f"image {image.name!r} is a {image.format} image, which {what} "
                                 f"cannot boot (it takes {', '.join(cc.image_formats)})",
                                 capability="image_format", image=image.id)
    for given, name in ((boot.kernel_id, "a kernel"), (boot.ramdisk_id, "a ramdisk")):
        if given and not cc.kernel_boot:
            raise InvalidCombination(f"{what} cannot boot {name} ({given}): containers run on "
                                     "the host's kernel and have no boot ramdisk",
                                     capability="kernel_boot")
    features = {"cpu_options": cc.cpu_topology, "hibernation": cc.hibernation,
                "enclave": cc.enclave}
    for feature in sorted(boot.features):
        if not features.get(feature, False):
            raise InvalidCombination(f"{feature.replace('_', ' ')} applies to virtual machines, "
                                     f"not to {what}", capability=feature)
    if len(nics) > cc.max_nics:
        raise InvalidCombination(f"{what} takes at most {cc.max_nics} network interface(s)",
                                 capability="max_nics")
    for nic in nics:
        if nic.driver not in caps.network:
            raise InvalidCombination(f"no host here has the {nic.driver} network driver "
                                     f"({nic.name})", capability="network_driver")
        if (nic.ingress or nic.egress) and not caps.network[nic.driver].rate_limits:
            raise InvalidCombination(f"{nic.name} is on a {nic.driver} network: it has no host "
                                     "port to limit (--ingress/--egress)",
                                     capability="rate_limits")
    for disk in disks:
        pool = caps.storage.get(disk.pool)
        if pool is None:
            raise InvalidCombination(f"pool {disk.pool!r} does not exist on this host",
                                     capability="pool", pool=disk.pool)
        if disk.is_root and not pool.copy_on_write:
            raise InvalidCombination(f"pool {disk.pool!r} cannot make copy-on-write roots",
                                     capability="copy_on_write", pool=disk.pool)
        if disk.is_root and disk_asked and disk.size and not pool.quota:
            raise InvalidCombination(
                f"pool {disk.pool!r} cannot enforce a disk size limit"
                + (f" ({pool.quota_note})" if pool.quota_note else "")
                + ": launch without one, or on a pool with quotas", capability="quota",
                pool=disk.pool)
    for bd in block_devices:
        _check_block_device(bd, cc, caps, disks, what)


def _check_block_device(bd: BlockDevice, cc: ComputeCaps, caps: NodeCaps, disks: Sequence[Disk],
                        what: str) -> None:
    """A mapping that suppresses a device is always fine; one that sizes the root disk is the
    root's limit (checked with the pool's); anything else (more volumes, snapshots, instance store) needs a
    driver with block devices."""
    if bd.no_device:
        return
    if bd.device_name == ROOT_DEVICE and bd.snapshot_id is None and bd.virtual_name is None:
        return    # its size is the root disk's limit (see disk_asked)
    if not cc.block_devices:
        raise InvalidCombination(f"{what} cannot honour block device mapping {bd.device_name} "
                                 f"(only {ROOT_DEVICE}, or NoDevice)", capability="block_devices")
