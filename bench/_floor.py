"""The floors lxcloud's launch is measured against, in the same run, on the same base rootfs.

SameWorkFloor does by hand exactly what lxcloud's host work is — the config lxcloud renders (its
own render_config: the same limits, id map, lxcfs mounts, capabilities, devices, NIC with a static
address on a bridge), the same root layout (an overlay upper and work dir over the same base, the
files lxcloud writes into it) — started with lxc-start -d, reached with lxc-attach — and nothing
more: no lxc-copy, no stock hooks lxcloud skips, no API, no database.

BareFloor is a stock container for scale: common.conf with its stock hooks, privileged, cloned with
lxc-copy -s (overlay snapshot) from a base definition over the same rootfs.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lxcloud.config import IDMAP_BASE, IDMAP_COUNT, Settings
from lxcloud.core.instance import Disk, ImageRef, InstanceSpec, Kind, Nic
from lxcloud.core.instance_types import Limits
from lxcloud.drivers.compute.base import IdMap, RootfsSpec
from lxcloud.drivers.compute.lxc import LxcDriver, render_config, write_into_root
from lxcloud.drivers.storage.base import StorageDriver


def _run(argv: Sequence[str]) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, stdin=subprocess.DEVNULL)


class _Bridge:
    """A bridge of the floor's own on a /24 the tests don't use."""

    def __init__(self, prefix: int = 24) -> None:
        self.name = f"lxfl{random.randrange(16**6):06x}"
        self.net = "10.248.199" if prefix == 16 else f"10.249.{random.randrange(0, 250)}"
        self.prefix = prefix
        self.gateway = f"{self.net}.1"
        _run(["ip", "link", "add", self.name, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", self.name])
        _run(["ip", "link", "set", self.name, "up"])

    def address(self, i: int) -> str:
        if self.prefix == 24:
            return f"{self.net}.{i + 2}"
        return f"{self.net.rsplit('.', 1)[0]}.{200 + i // 250}.{i % 250 + 2}"

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.name], capture_output=True)


def _remove(lxcpath: Path, names: Sequence[str], bridge: _Bridge, tmp: Path, *,
            destroy: bool) -> None:
    """A floor's containers killed (and lxc-destroyed, for lxc-copy's), its bridge and files gone."""
    for name in names:
        subprocess.run(["lxc-stop", "-k", "-P", str(lxcpath), "-n", name], capture_output=True)
        if destroy:
            subprocess.run(["lxc-destroy", "-P", str(lxcpath), "-n", name], capture_output=True)
    bridge.close()
    shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Steps:
    """Milliseconds per step of one launch."""

    ms: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.ms[name] = self.ms.get(name, 0.0) + (now - t0) * 1000
        return now

    @property
    def total(self) -> float:
        return sum(self.ms.values())


class SameWorkFloor:
    def __init__(self, base: Path, *, halt_signal: str, limits: Limits, first_exec: Sequence[str],
                 settings: Settings | None = None, prefix: int = 24,
                 pool: StorageDriver | None = None, image_id: str = "") -> None:
        """`pool` (lxcloud's own pool, with `image_id`'s base in it): roots are made as lxcloud
        makes them there (with the disk limit: on a pool with quotas, a disk of its own), by the
        pool's own code; without it, an upper and a work dir over `base`."""
        self.base = base
        self.pool = pool
        self.image_id = image_id
        self.halt_signal = halt_signal
        self.limits = limits
        self.first_exec = list(first_exec)
        self.settings = settings or Settings()
        self.tmp = Path(tempfile.mkdtemp(prefix="lxc-samework-", dir="/tmp"))
        self.tmp.chmod(0o711)
        self.lxcpath = self.tmp / "lxc"
        self.pooldir = self.tmp / "pool"
        self.lxcpath.mkdir(mode=0o711)
        self.pooldir.mkdir(mode=0o711)
        self.bridge = _Bridge(prefix)
        self.idmap = IdMap(IDMAP_BASE, IDMAP_BASE, IDMAP_COUNT)
        self.names: list[str] = []
        # the driver's own port naming, so the rendered config is byte for byte lxcloud's shape
        self._ports = LxcDriver(self.lxcpath, idmap=self.idmap, veth_prefix="lxfl")

    def launch(self, i: int, attach: bool = True) -> Steps:
        steps = Steps()
        name = f"i-floor{i:012x}"
        self.names.append(name)
        ip = self.bridge.address(i)
        t = time.perf_counter()
        if self.pool is not None:
            root = self.pool.create_root(name, Disk(pool="floor", size=self.limits.disk,
                                                    source=self.image_id),
                                         self.idmap.host_uid, self.idmap.host_gid)
            upper = root.path
            t = steps.add("root (the pool's create_root)", t)
        else:
            inst = self.pooldir / name
            upper, work = inst / "upper", inst / "work"
            inst.mkdir(mode=0o711)
            for d in (upper, work):
                d.mkdir(mode=0o755)
                os.chown(d, self.idmap.host_uid, self.idmap.host_gid)
            upper.chmod(self.base.stat().st_mode & 0o7777)
            root = RootfsSpec(kind="overlay", path=upper, lower=self.base)
            t = steps.add("mkdir upper+work", t)
        nic = Nic(network="floor", mac=f"02:f1:00:00:{i >> 8 & 255:02x}:{i & 255:02x}", ipv4=ip,
                  prefix=self.bridge.prefix, gateway=self.bridge.gateway, link=self.bridge.name,
                  nameservers=(self.bridge.gateway,))
        spec = InstanceSpec(
            id=name, name=f"floor{i}", kind=Kind.CONTAINER,
            image=ImageRef(id="floor", template="", halt_signal=self.halt_signal),
            limits=self.limits, disks=(Disk(pool="floor", source="floor"),), nics=(nic,))
        cdir = self.lxcpath / name
        cdir.mkdir(mode=0o750)
        config = render_config(spec, root, lxcpath=self.lxcpath, veth=[self._ports.port_name(name)],
                               idmap=self.idmap, lxcfs_dir=self.settings.lxcfs_dir)
        (cdir / "config").write_text(config)
        for path, content in (("/etc/hostname", f"{spec.name}\n".encode()),
                              ("/etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {spec.name}\n".encode()),
                              ("/etc/resolv.conf", f"nameserver {self.bridge.gateway}\n".encode())):
            write_into_root(upper, root.lower, path, content, uid=self.idmap.host_uid,
                            gid=self.idmap.host_gid)
        t = steps.add("write config + files", t)
        _run(["lxc-start", "-P", str(self.lxcpath), "-n", name, "-d"])
        t = steps.add("lxc-start -d", t)
        if attach:
            _run(["lxc-attach", "-P", str(self.lxcpath), "-n", name, "--", *self.first_exec])
            steps.add("lxc-attach (first exec)", t)
        return steps

    def close(self) -> None:
        _remove(self.lxcpath, self.names, self.bridge, self.tmp, destroy=False)
        if self.pool is not None:
            for name in self.names:
                self.pool.delete_root(name)


class BareFloor:
    """A stock privileged container: lxc-copy -s + lxc-start + lxc-attach."""

    def __init__(self, base: Path, *, halt_signal: str, first_exec: Sequence[str],
                 prefix: int = 24, idmap: bool = False) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="lxc-bare-", dir="/tmp"))
        self.tmp.chmod(0o755)   # a mapped root must traverse it
        self.bridge = _Bridge(prefix)
        self.first_exec = list(first_exec)
        self.names: list[str] = []
        self.lxcpath = self.tmp / "lxc"
        (self.lxcpath / "base").mkdir(parents=True)
        mapped = ("lxc.include = /usr/share/lxc/config/userns.conf\n"
                  f"lxc.idmap = u 0 {IDMAP_BASE} {IDMAP_COUNT}\n"
                  f"lxc.idmap = g 0 {IDMAP_BASE} {IDMAP_COUNT}\n") if idmap else ""
        (self.lxcpath / "base" / "config").write_text(f"""
lxc.include = /usr/share/lxc/config/common.conf
{mapped}lxc.rootfs.path = dir:{base}
lxc.uts.name = base
lxc.signal.halt = {halt_signal}
lxc.net.0.type = veth
lxc.net.0.link = {self.bridge.name}
lxc.net.0.flags = up
lxc.net.0.ipv4.gateway = {self.bridge.gateway}
""")

    def launch(self, i: int, attach: bool = True) -> Steps:
        steps = Steps()
        name = f"c{i}"
        self.names.append(name)
        P = str(self.lxcpath)
        t = time.perf_counter()
        _run(["lxc-copy", "-P", P, "-n", "base", "-N", name, "-s", "-B", "overlay"])
        t = steps.add("lxc-copy -s", t)
        _run(["lxc-start", "-P", P, "-n", name, "-d", "-s",
              f"lxc.net.0.ipv4.address={self.bridge.address(i)}/{self.bridge.prefix}"])
        t = steps.add("lxc-start -d", t)
        if attach:
            _run(["lxc-attach", "-P", P, "-n", name, "--", *self.first_exec])
            steps.add("lxc-attach (first exec)", t)
        return steps

    def close(self) -> None:
        _remove(self.lxcpath, self.names, self.bridge, self.tmp, destroy=True)
