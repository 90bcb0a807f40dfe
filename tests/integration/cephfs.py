"""A single-node Ceph with CephFS, started by the tests themselves (STACK.md, "Ceph on one machine").

One mon, one mgr, one BlueStore OSD on a sparse file (this kernel has no device-mapper, so no
LVM: the file lies outside the OSD's data dir, as BlueStore wants), one MDS, a CephFS, and
ceph-fuse mounts of it. Everything lives under one base directory (config, keyrings, daemons'
data, sockets, pid and log files) and the monitor listens on ports picked for this run, so two
runs on one machine coexist. Daemons run in the foreground as our children and are stopped by
their PIDs only.

    with CephCluster.start(base) as ceph:
        mnt = ceph.mount(base / "mnt")            # a ceph-fuse mount of the filesystem's root
        ...
    # unmounted, ceph-fuse gone, daemons stopped, base removed

`cephfs` is the session fixture over it: a cluster and one mount, shared by the tests of a
session (about 11 s to come up); each test takes its own directory inside the mount.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lxcloud.core.errors import DriverError
from lxcloud.core.proc import run
from lxcloud.core.waiting import wait_until
from lxcloud.drivers.storage import loop

OSD_SIZE = 8 << 30            # sparse: only what is written takes room
UP_TIMEOUT = 120              # each step; the whole cluster takes ~11 s on an idle machine
STOP_TIMEOUT = 30
DAEMONS = ("mon", "mgr", "osd", "mds")


def _free_port() -> int:
    """A port nobody listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conf(base: Path, fsid: str, v2: int, v1: int) -> str:
    return f"""[global]
fsid = {fsid}
mon initial members = a
mon host = [v2:127.0.0.1:{v2},v1:127.0.0.1:{v1}]
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
run dir = {base}/run
keyring = {base}/keyring/$name.keyring
log file = {base}/log/$name.log
pid file = {base}/run/$name.pid
admin socket = {base}/run/$name.asok
mon data = {base}/mon/$cluster-$id
mgr data = {base}/mgr/$cluster-$id
osd data = {base}/osd/$cluster-$id
mds data = {base}/mds/$cluster-$id
osd objectstore = bluestore
bluestore block path = {base}/block/$id.img
bluestore block create = true
bluestore block size = {OSD_SIZE}
osd memory target = 939524096
mon data avail warn = 1
mon data avail crit = 0

[client]
# several mounts at once, each its own socket and log
admin socket = {base}/run/$name.$pid.asok
log file = {base}/log/$name.$pid.log
pid file =
client quota df = true
fuse allow other = true
"""


@dataclass
class FuseMount:
    """One ceph-fuse mount (its process ours, in the foreground)."""

    path: Path
    root: str
    proc: subprocess.Popen[bytes]


@dataclass
class CephCluster:
    base: Path
    conf: Path
    fsid: str
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    mounts: list[FuseMount] = field(default_factory=list)

    # --- commands
    def ceph(self, *args: str, timeout: float = 60) -> str:
        return run(["ceph", "--conf", str(self.conf), *args], timeout=timeout).stdout.decode()

    def ceph_json(self, *args: str) -> Any:
        return json.loads(self.ceph(*args, "--format", "json"))

    @property
    def env(self) -> dict[str, str]:
        """What a Ceph client (ceph-fuse, setfattr aside) needs to reach this cluster."""
        return {**os.environ, "CEPH_CONF": str(self.conf)}

    # --- start
    @classmethod
    def start(cls, base: Path) -> CephCluster:
        """Make and start the cluster under `base` (empty or missing); on failure everything
        started is stopped again and the error raised."""
        base.mkdir(parents=True, exist_ok=True)
        for d in ("run", "log", "keyring", "mon", "mgr", "osd", "mds", "block"):
            (base / d).mkdir(exist_ok=True)
        fsid = str(uuid.uuid4())
        conf = base / "ceph.conf"
        conf.write_text(_conf(base, fsid, _free_port(), _free_port()))
        c = cls(base=base, conf=conf, fsid=fsid)
        try:
            c._bootstrap()
        except BaseException:
            c.stop()
            raise
        return c

    def _spawn(self, kind: str, ident: str, *extra: str) -> None:
        log = open(self.base / "log" / f"{kind}.{ident}.out", "ab")
        try:
            self.daemons[kind] = subprocess.Popen(
                [f"ceph-{kind}", "--conf", str(self.conf), "-i", ident, "-f", *extra],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()

    def _wait(self, cond: Any, what: str) -> Any:
        def check() -> Any:
            for kind, p in self.daemons.items():
                if p.poll() is not None:
                    raise DriverError(f"ceph-{kind} exited ({p.returncode}) while waiting for "
                                      f"{what}; see {self.base}/log")
            return cond()
        return wait_until(check, UP_TIMEOUT, what, first=0.05, most=0.5)

    def _bootstrap(self) -> None:
        b, k = self.base, self.base / "keyring"
        mon_keyring = k / "mon..keyring"
        auth = "ceph-authtool"
        run([auth, "--create-keyring", str(mon_keyring), "--gen-key", "-n", "mon.",
             "--cap", "mon", "allow *"])
        run([auth, "--create-keyring", str(k / "client.admin.keyring"), "--gen-key",
             "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *",
             "--cap", "mds", "allow *", "--cap", "mgr", "allow *"])
        run([auth, "--create-keyring", str(k / "mgr.x.keyring"), "--gen-key", "-n", "mgr.x",
             "--cap", "mon", "allow profile mgr", "--cap", "osd", "allow *",
             "--cap", "mds", "allow *"])
        run([auth, "--create-keyring", str(k / "mds.a.keyring"), "--gen-key", "-n", "mds.a",
             "--cap", "mon", "allow profile mds", "--cap", "osd", "allow *",
             "--cap", "mds", "allow *", "--cap", "mgr", "allow profile mds"])
        for name in ("client.admin", "mgr.x", "mds.a"):
            run([auth, str(mon_keyring), "--import-keyring", str(k / f"{name}.keyring")])
        conf = self.conf.read_text()
        mon_host = conf.split("mon host = ", 1)[1].split("\n", 1)[0]
        run(["monmaptool", "--create", "--fsid", self.fsid, "--addv", "a", mon_host,
             str(b / "monmap")])
        run(["ceph-mon", "--conf", str(self.conf), "--mkfs", "-i", "a", "--monmap",
             str(b / "monmap"), "--keyring", str(mon_keyring)])
        self._spawn("mon", "a")
        self._wait(lambda: self._quorum(), "the monitor's quorum")
        self._spawn("mgr", "x")
        osd_uuid, secret = str(uuid.uuid4()), run([auth, "--gen-print-key"]).stdout.decode().strip()
        osd_id = run(["ceph", "--conf", str(self.conf), "osd", "new", osd_uuid, "-i", "-"],
                     input=json.dumps({"cephx_secret": secret}).encode()).stdout.decode().strip()
        run([auth, "--create-keyring", str(k / f"osd.{osd_id}.keyring"), "-n", f"osd.{osd_id}",
             "--add-key", secret])
        (b / "osd" / f"ceph-{osd_id}").mkdir()
        run(["ceph-osd", "--conf", str(self.conf), "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid],
            timeout=UP_TIMEOUT)
        self._spawn("osd", osd_id)
        self._wait(lambda: self.ceph_json("osd", "stat").get("num_up_osds") == 1, "the OSD up")
        self.ceph("osd", "pool", "create", "cephfs_metadata", "8")
        self.ceph("osd", "pool", "create", "cephfs_data", "16")
        self.ceph("fs", "new", "cephfs", "cephfs_metadata", "cephfs_data")
        self._spawn("mds", "a")
        self._wait(self._mds_active, "the MDS up:active")

    def _quorum(self) -> bool:
        try:
            return bool(self.ceph_json("quorum_status").get("quorum_names"))
        except DriverError:
            return False

    def _mds_active(self) -> bool:
        fs = self.ceph_json("fs", "dump")
        for f in fs.get("filesystems", []):
            if any(i.get("state") == "up:active" for i in f["mdsmap"]["info"].values()):
                return True
        return False

    # --- mounts
    def mount(self, path: Path, root: str = "/") -> Path:
        """A ceph-fuse mount of the filesystem's `root` at `path` (made), up when it returns."""
        path.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "log" / f"fuse-{len(self.mounts)}.out", "ab")
        try:
            proc = subprocess.Popen(
                ["ceph-fuse", "--conf", str(self.conf), "-f", "-r", root, str(path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        m = FuseMount(path, root, proc)
        self.mounts.append(m)

        def up() -> bool:
            if proc.poll() is not None:
                raise DriverError(f"ceph-fuse for {path} exited ({proc.returncode})")
            return loop.is_mounted(path)
        wait_until(up, UP_TIMEOUT, f"the ceph-fuse mount at {path}", first=0.02, most=0.25)
        return path

    def unmount(self, path: Path) -> None:
        """Unmount (lazily if busy) and wait for its ceph-fuse to exit."""
        for m in [m for m in self.mounts if m.path == path]:
            if loop.is_mounted(path):
                if run(["umount", str(path)], check=False).returncode != 0:
                    run(["umount", "-l", str(path)], check=False)
            try:
                m.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(STOP_TIMEOUT)
            self.mounts.remove(m)

    # --- stop
    def stop(self) -> None:
        """Unmount every mount, let ceph-fuse exit, then stop the daemons (mds, osd, mgr, mon)
        by their PIDs; remove the base directory."""
        for m in list(self.mounts):
            self.unmount(m.path)
        for kind in reversed(DAEMONS):
            p = self.daemons.pop(kind, None)
            if p is None:
                continue
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(STOP_TIMEOUT)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> CephCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class CephFS:
    """The session's cluster and its main mount (the filesystem's root)."""

    cluster: CephCluster
    mount: Path

    def fresh_dir(self, prefix: str) -> Path:
        """A new directory of the filesystem, for one test."""
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.mount))


@pytest.fixture(scope="session", name="cephfs")
def cephfs_session() -> Iterator[CephFS]:
    """A module using it imports `cephfs_session` and asks for `cephfs`."""
    for tool in ("ceph-mon", "ceph-osd", "ceph-mds", "ceph-mgr", "ceph-fuse", "setfattr"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make deps installs Ceph)")
    base = Path(tempfile.mkdtemp(prefix="lxcloud-ceph-", dir="/var/tmp"))
    base.chmod(0o711)
    with CephCluster.start(base / "cluster") as cluster:
        mnt = cluster.mount(base / "mnt")
        try:
            yield CephFS(cluster, mnt)
        finally:
            cluster.stop()
    shutil.rmtree(base, ignore_errors=True)
