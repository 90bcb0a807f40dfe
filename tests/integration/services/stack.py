"""The whole stack in-process for integration tests: a real Cloud (services + the real local node:
LXC, overlayfs, pools, bridge, nftables, dnsmasq) over a data dir of its own, with the busybox
image built, removed with everything it made afterwards; and the few calls the tests share."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lxcloud.config import Settings
from lxcloud.core.caller import SYSTEM
from lxcloud.drivers.storage import loop
from lxcloud.node.agent import NodeAgent
from lxcloud.services.cloud import Cloud
from lxcloud.services.images import BuildRequest
from tests.subnets import free_subnet


def wait(cloud: Cloud, op_id: str, timeout: float = 180) -> dict[str, object]:
    """The operation's result once it has succeeded (the test fails otherwise)."""
    op = cloud.ops.wait(op_id, timeout)
    assert op.status == "success", (op.status, op.error)
    return op.result or {}


def failed(cloud: Cloud, op_id: str, timeout: float = 180) -> str:
    """The error of an operation that must fail."""
    op = cloud.ops.wait(op_id, timeout)
    assert op.status == "failure", (op.status, op.result)
    return op.error or ""


def sh(cloud: Cloud, name: str, script: str, timeout: float = 60) -> tuple[int, str]:
    r = cloud.instances.exec(name, ["sh", "-c", script], timeout=timeout)
    return r.exit_code, r.stdout.decode() + r.stderr.decode()


def ok(cloud: Cloud, name: str, script: str) -> str:
    code, out = sh(cloud, name, script)
    assert code == 0, out
    return out


def df_kib(cloud: Cloud, name: str, path: str = "/") -> int:
    """The size `df` shows inside for `path`, in KiB."""
    return int(ok(cloud, name, f"df -kP {path} | tail -n 1").split()[1])


class Stack:
    def __init__(self, base: Path, **settings: object) -> None:
        self.base = base
        self.settings = Settings.load(base / "data", default_network_cidr=free_subnet(),
                                      reconcile_interval=0, **settings)
        self.node = NodeAgent.local(self.settings)
        self.cloud = Cloud(self.settings, self.node)
        self.cloud.startup(reconcile_loop=False)

    def restart_controller(self) -> Cloud:
        """The controller goes away and comes back on the same data dir and host."""
        self.cloud.close()
        self.cloud = Cloud(self.settings, self.node)
        self.cloud.startup(reconcile_loop=False)
        return self.cloud

    def remove_all(self) -> None:
        """Instances, volumes, pools, the network and every file and mount of this stack."""
        c = self.cloud
        for inst in c.instances.list():
            try:
                c.ops.wait(c.instances.delete(inst.id, force=True).id, 60)
            except Exception:
                pass
        for vol in c.volumes.list():
            try:
                c.ops.wait(c.volumes.delete(vol.id).id, 60)
            except Exception:
                pass
        pools = c.pools.list(with_usage=False)
        for p in pools:
            if not p.default:
                try:
                    c.pools.delete(p.name)
                except Exception:
                    pass
        nets = c.networks.list(SYSTEM, all_projects=True)
        public, _, _ = c.addresses.desired()
        c.close()
        self.node.teardown_public(public)
        for net in sorted(nets, key=lambda n: n.name == "default" and n.project_id is None):
            self.node.teardown_network(c.networks.spec(net))
        for name in self.node.list_instances():
            self.node.destroy(name)
        for p in pools:
            try:
                self.node.delete_pool(p.name)
            except Exception:
                pass
        for m in loop.mounts_under(self.base):
            loop.umount(m, lazy=True)
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def running_stack(prefix: str, **settings: object) -> Iterator[Stack]:
    """A Stack in a new directory under /var/tmp (traversable by the containers' root) with the
    busybox image built; everything it made is removed afterwards, whatever the tests did."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    base.chmod(0o755)
    st = Stack(base, **settings)
    try:
        wait(st.cloud, st.cloud.images.build(BuildRequest(builder="busybox")).id)
        yield st
    finally:
        st.remove_all()
