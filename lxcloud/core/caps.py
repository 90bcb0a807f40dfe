"""What drivers can do, declared as typed values (never discovered by isinstance or a name).

A host's agent reports the capabilities of the drivers it runs (`NodeCaps`); the services check
an instance description against them before any row is written (services/capabilities.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxcloud.core.instance import Kind


@dataclass(frozen=True)
class ComputeCaps:
    kind: Kind = Kind.CONTAINER
    image_formats: tuple[str, ...] = ("tar", "tar.gz", "tar.xz", "tar.zst")
    kernel_boot: bool = False        # an EC2 kernel / ramdisk can be booted
    block_devices: bool = False      # block device mappings beyond the root disk
    cpu_topology: bool = False       # EC2 CpuOptions (cores, threads per core)
    hibernation: bool = False
    enclave: bool = False
    freeze: bool = True
    console: bool = True
    exec: bool = True
    snapshots: bool = False
    live_migration: bool = False
    hotplug_nic: bool = False
    hotplug_disk: bool = False       # a volume attaches to and detaches from a running instance
    max_nics: int = 1
    max_vcpus: int = 0               # the most vCPUs one instance may have here (0: no bound)


@dataclass(frozen=True)
class StorageCaps:
    copy_on_write: bool = True       # an instance root is a layer over the image's base
    quota: bool = False              # a disk size limit is enforced (roots and volumes)
    quota_note: str = ""             # why not, when it is not ("ext4 without the project feature")
    quota_visible: bool = False      # `df` inside shows the limit, not the pool's filesystem
    online_resize: bool = False      # a limit changes while the instance runs
    snapshots: bool = False
    cow_snapshots: bool = False      # snapshots share blocks with what they were taken of
    volumes: bool = False
    remote: bool = False             # every host sees the same data (an instance can move)


@dataclass(frozen=True)
class NetworkCaps:
    nat: bool = True
    dhcp: bool = False
    overlay: bool = False
    static_addresses: bool = True    # the database's allocation is set on the NIC
    # What needs a host-side port (a veth on our bridge) to be enforced: without one (macvlan,
    # where the instance sits directly on the parent's segment) these cannot be promised.
    security_groups: bool = True     # nftables rules on the instance's host-side interface
    anti_spoofing: bool = True       # the port guard (an instance sends from its address only)
    rate_limits: bool = True         # tc on the host-side interface (ingress and egress)
    host_reachable: bool = True      # the host reaches its instances (and they reach it)
    hotplug: bool = True             # a NIC on such a network attaches to a running instance


@dataclass(frozen=True)
class NodeCaps:
    """One host's drivers: compute by kind, storage by pool name, network by driver name."""

    compute: dict[Kind, ComputeCaps] = field(default_factory=dict)
    storage: dict[str, StorageCaps] = field(default_factory=dict)
    network: dict[str, NetworkCaps] = field(default_factory=dict)
